#!/bin/bash
# As Kafka's own script (docker-compose.yml's health check runs it): the broker's API versions.
exec java ${KAFKA_TOOLS_HEAP_OPTS:--Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC} \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  -cp "/opt/kafka/libs/*" org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
