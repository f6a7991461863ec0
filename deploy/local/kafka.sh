#!/usr/bin/env bash
# A real Apache Kafka broker for the local stack: KRaft, one node acting as broker and controller.
#   deploy/local/kafka.sh {start|stop|status}
# and Kafka's own command-line tools against it (kafka-tools, the broker's version; any option of the
# tool passes through, --bootstrap-server defaults to the local broker):
#   deploy/local/kafka.sh topics --list | --describe [--topic T]
#   deploy/local/kafka.sh console-consumer --topic T [--from-beginning] [--max-messages N] ...
#   deploy/local/kafka.sh consumer-groups --list | --describe --group G
# Listens on 127.0.0.1:${KAFKA_PORT:-19092} (controller ${KAFKA_CONTROLLER_PORT:-19093}).
# Jars come from Maven Central through mvn (deploy/local/kafka/pom.xml, cached in ~/.m2) because
# these machines have no Docker and no network beyond the package registries.
# State under ${SHOPIFY_PRIMA_STATE_DIR:-<repo>/.run}: kafka/{lib,tools,data,server.properties,kafka.pid},
# logs/kafka.log (log4j) and logs/kafka.out (JVM stdout/stderr).
# A second instance is another state directory and other ports: the tests' own broker is
#   SHOPIFY_PRIMA_STATE_DIR=.run/test-kafka KAFKA_PORT=29092 KAFKA_CONTROLLER_PORT=29093 kafka.sh start
# (the Makefile's TEST_KAFKA, tests/support.py); it shares nothing with the stack's broker.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HEAP="${KAFKA_HEAP:-768m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"

CONF_DIR="$REPO_ROOT/deploy/local/kafka"
POM="$CONF_DIR/pom.xml"
TOOLS_POM="$CONF_DIR/tools/pom.xml"
LOG4J_CONF="$CONF_DIR/log4j2.properties"
TOOLS_LOG4J_CONF="$CONF_DIR/tools-log4j2.properties"
KAFKA_DIR="$STATE_DIR/kafka"
LIB_DIR="$KAFKA_DIR/lib"
TOOLS_DIR="$KAFKA_DIR/tools"
DATA_DIR="$KAFKA_DIR/data"
PROPS="$KAFKA_DIR/server.properties"
PIDFILE="$KAFKA_DIR/kafka.pid"
CLUSTER_ID_FILE="$KAFKA_DIR/cluster.id"
KAFKA_LOG="$LOG_DIR/kafka.log"
KAFKA_OUT="$LOG_DIR/kafka.out"

# java and mvn come with the machine image; install them from Debian if a new machine lacks them.
ensure_tools() {
  local missing=()
  command -v java >/dev/null || missing+=(default-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  ((${#missing[@]} == 0)) && return 0
  [[ $EUID -eq 0 ]] || die "missing ${missing[*]}; install them (apt-get install -y ${missing[*]})"
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q "${missing[@]}" >&2
}

# Copy the runtime jars of a pom into a directory unless they are already there for these very
# poms: ensure_jars <dir> <jar glob that must be there> <pom> [<parent pom>].
ensure_jars() {
  local dir="$1" marker="$2" pom="$3" want have=""
  want="$(cat "${@:3}" | sha256sum | cut -d' ' -f1)"
  [[ -f "$dir/.pom.sha256" ]] && have="$(cat "$dir/.pom.sha256")"
  if [[ "$want" == "$have" ]] && compgen -G "$dir/$marker" >/dev/null; then
    return 0
  fi
  log "fetching Kafka jars with mvn into $dir"
  rm -rf "$dir.tmp"
  # Into a temporary dir first, so that an interrupted fetch never looks complete.
  local mvn_log="$KAFKA_DIR/mvn.log" attempt quiet=(-q)
  # Up to three attempts: a fetch has failed once in CI with no output at all (a transient
  # failure); the later attempts log everything mvn says, so a real failure shows its cause.
  for attempt in 1 2 3; do
    if (cd "$(dirname "$pom")" && mvn "${quiet[@]}" -B -Dstyle.color=never dependency:copy-dependencies \
      -DoutputDirectory="$dir.tmp" -DincludeScope=runtime) >"$mvn_log" 2>&1; then
      break
    fi
    if ((attempt == 3)); then
      show_tail "$mvn_log"
      die "mvn could not fetch the Kafka jars in 3 attempts (output above)"
    fi
    log "mvn failed to fetch the Kafka jars (attempt $attempt; its output: $mvn_log); trying again"
    quiet=()
    rm -rf "$dir.tmp"
    sleep 3
  done
  echo "$want" >"$dir.tmp/.pom.sha256"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
}

# Kafka's command-line tools: their own directory, never the running broker's lib/ (fetched at
# `start`, so a new machine has them after `make up`; or at first use). One fetch at a time.
ensure_tool_jars() {
  mkdir -p "$KAFKA_DIR"
  (
    flock 9
    ensure_jars "$TOOLS_DIR" "kafka-tools-*.jar" "$TOOLS_POM" "$POM"
  ) 9>"$KAFKA_DIR/tools.lock"
}

# Run a kafka-tools command line tool (class $1) against the local broker unless told otherwise.
run_tool() {
  local class="$1"
  shift
  ensure_tools
  ensure_tool_jars
  local bootstrap=(--bootstrap-server "127.0.0.1:$KAFKA_PORT") arg
  for arg in "$@"; do
    [[ "$arg" == --bootstrap-server || "$arg" == --bootstrap-server=* ]] && bootstrap=()
  done
  exec java -Xmx256m -Djava.awt.headless=true -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONF" \
    -cp "$TOOLS_DIR/*" "$class" "${bootstrap[@]}" "$@"
}

# Regenerated at every start so that port overrides take effect; storage keeps the cluster id.
write_props() {
  cat >"$PROPS" <<EOF
# Generated by deploy/local/kafka.sh; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR

# One node: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Tests start and stop consumers often; do not wait for more members to join.
group.initial.rebalance.delay.ms=0

# Topics are created explicitly by services.setup, with their own retention settings.
num.partitions=3
auto.create.topics.enable=false
EOF
}

format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    java -cp "$LIB_DIR/*" kafka.tools.StorageTool random-uuid 2>>"$KAFKA_OUT" | tail -n 1 >"$CLUSTER_ID_FILE"
  fi
  log "formatting storage in $DATA_DIR (cluster id $(cat "$CLUSTER_ID_FILE"))"
  # Static quorum (controller.quorum.voters), hence no --standalone.
  java -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" -cp "$LIB_DIR/*" \
    kafka.tools.StorageTool format -t "$(cat "$CLUSTER_ID_FILE")" -c "$PROPS" >>"$KAFKA_OUT" 2>&1 \
    || { show_tail "$KAFKA_OUT"; die "kafka storage format failed"; }
}

# Our broker: the pid file names a live java process started with our properties file.
kafka_running() {
  pid_alive "$PIDFILE" || return 1
  grep -qF "$PROPS" "/proc/$(cat "$PIDFILE")/cmdline" 2>/dev/null
}

# A metadata round trip through the Kafka protocol, when the project venv is there to do it.
broker_answers() {
  local py="$REPO_ROOT/.venv/bin/python"
  [[ -x "$py" ]] && "$py" -c 'import aiokafka' 2>/dev/null || return 0
  "$py" - "127.0.0.1:$KAFKA_PORT" <<'PY' >/dev/null 2>&1
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient

async def main() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()

asyncio.run(asyncio.wait_for(main(), 10))
PY
}

wait_ready() {
  local log_offset="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kafka_running; then
      show_tail "$KAFKA_OUT" "$KAFKA_LOG"
      die "the Kafka broker exited during start-up (logs above)"
    fi
    if port_open "$KAFKA_PORT" &&
      tail -c "+$((log_offset + 1))" "$KAFKA_LOG" 2>/dev/null | grep -q 'Kafka Server started'; then
      broker_answers && return 0
    fi
    sleep 0.5
  done
  show_tail "$KAFKA_OUT" "$KAFKA_LOG"
  die "the Kafka broker did not become ready on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s (logs above)"
}

cmd_start() {
  if kafka_running; then
    log "already running (pid $(cat "$PIDFILE"), 127.0.0.1:$KAFKA_PORT)"
    return 0
  fi
  local port
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$port"; then
      die "port 127.0.0.1:$port is taken by another process ($(port_owner "$port")); stop it or set KAFKA_PORT/KAFKA_CONTROLLER_PORT"
    fi
  done
  ensure_tools
  mkdir -p "$KAFKA_DIR" "$DATA_DIR" "$LOG_DIR"
  ensure_jars "$LIB_DIR" "kafka_2.13-*.jar" "$POM"
  ensure_tool_jars
  write_props
  format_storage
  local log_offset=0
  [[ -f "$KAFKA_LOG" ]] && log_offset="$(stat -c %s "$KAFKA_LOG")"
  log "starting on 127.0.0.1:$KAFKA_PORT (log $KAFKA_LOG)"
  # setsid: the broker outlives this script and is not hit by a Ctrl-C aimed at make.
  setsid java "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONF" -Dkafka.logs.dir="$LOG_DIR" \
    -cp "$LIB_DIR/*" kafka.Kafka "$PROPS" >>"$KAFKA_OUT" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  wait_ready "$log_offset"
  log "ready: bootstrap 127.0.0.1:$KAFKA_PORT (pid $(cat "$PIDFILE"))"
}

cmd_stop() {
  if ! kafka_running; then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  log "stopping (pid $(cat "$PIDFILE"))"
  # A single KRaft node shuts down cleanly in a few seconds; give it 30 before KILL.
  stop_pidfile "$PIDFILE" 30 kafka
}

cmd_status() {
  if kafka_running && port_open "$KAFKA_PORT"; then
    echo "kafka: running (pid $(cat "$PIDFILE"), bootstrap 127.0.0.1:$KAFKA_PORT)"
  elif kafka_running; then
    echo "kafka: starting or unhealthy (pid $(cat "$PIDFILE"), port $KAFKA_PORT closed)"
    return 1
  else
    echo "kafka: stopped"
    return 3
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  topics) shift; run_tool org.apache.kafka.tools.TopicCommand "$@" ;;
  console-consumer) shift; run_tool org.apache.kafka.tools.consumer.ConsoleConsumer "$@" ;;
  consumer-groups) shift; run_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@" ;;
  *) echo "usage: $0 {start|stop|status|topics|console-consumer|consumer-groups} [tool options]" >&2; exit 2 ;;
esac
