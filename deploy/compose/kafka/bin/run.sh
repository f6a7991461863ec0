#!/bin/bash
# The offline Kafka image's entrypoint: server.properties from the environment, as the public
# apache/kafka image does it (KAFKA_LOG_DIRS -> log.dirs; `__` stands for `_`, `___` for `-`),
# storage formatted with CLUSTER_ID on the first start, then the broker in the foreground.
set -euo pipefail
props=/opt/kafka/config/server.properties
: >"$props"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS) continue ;;
  esac
  key="${name#KAFKA_}"
  key="${key,,}"
  key="${key//___/-}"
  key="${key//__/@}"
  key="${key//_/.}"
  key="${key//@/_}"
  printf '%s=%s\n' "$key" "$value" >>"$props"
done < <(env | grep -E '^KAFKA_[A-Z0-9_]+=' | sort)

log_dirs="$(sed -n 's/^log\.dirs=//p' "$props")"
log_dirs="${log_dirs:-/var/lib/kafka/data}"
java_opts=(-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -Djava.awt.headless=true)
if [[ ! -f "${log_dirs%%,*}/meta.properties" ]]; then
  [[ -n "${CLUSTER_ID:-}" ]] || { echo "CLUSTER_ID is not set" >&2; exit 1; }
  java "${java_opts[@]}" -cp "/opt/kafka/libs/*" kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$props"
fi
# shellcheck disable=SC2086  # the options are word lists, as in Kafka's own scripts
exec java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms512m} -XX:+UseG1GC ${KAFKA_JVM_PERFORMANCE_OPTS:-} ${KAFKA_OPTS:-} \
  "${java_opts[@]}" -cp "/opt/kafka/libs/*" kafka.Kafka "$props"
