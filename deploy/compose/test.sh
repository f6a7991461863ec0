#!/usr/bin/env bash
# `make test-compose`: the stack as Docker users run it, for real (docs/docker.md).
#   1. a Docker engine: the running one, else Debian's docker.io started for this run (engine.sh);
#   2. Docker Compose v2 (compose-bin.sh: the plugin, else built from source once and cached);
#   3. the images, offline (build.sh: Debian base, PyPI, Maven Central; layers cached);
#   4. `docker compose up --wait` with docker-compose.yml + deploy/compose/offline.yml: every
#      health check passes and the setup service completes;
#   5. pytest tests/compose: orders and stock through the published ports, a crashed and a
#      killed container, Prometheus's scrape of the stack against the dashboard and the alert
#      rules, `promtool test rules`;
#   6. `docker compose down -v`, and the engine stopped if step 1 started it.
# The stack is a compose project of its own (COMPOSE_PROJECT_NAME, default shopify-prima-test)
# and publishes its ports on 127.0.0.1 on other numbers than `make up` (below), so that it runs
# beside a running local stack. Exit code: pytest's, or 1 if a step before it failed.
# Output: timings and versions at the end; <state>/compose/{build.log,up.log,compose-logs.txt,summary.txt,
# exitcode}.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../local/common.sh"
cd "$REPO_ROOT"

OUT_DIR="$STATE_DIR/compose"
SUMMARY="$OUT_DIR/summary.txt"
# The exit code, for .ci/run (make itself only ever exits 0 or 2).
EXIT_CODE_FILE="$OUT_DIR/exitcode"
mkdir -p "$OUT_DIR"
: >"$SUMMARY"
rm -f "$EXIT_CODE_FILE"
PY="${PY:-$REPO_ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || die "no venv at $REPO_ROOT/.venv (make venv)"

export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-shopify-prima-test}"
export COMPOSE_FILE="docker-compose.yml:deploy/compose/offline.yml"
UP_TIMEOUT="${COMPOSE_UP_TIMEOUT:-300}"

# Host ports of the test stack (docker-compose.yml's *_HOST_PORT variables): 3xxxx by default;
# one that is taken is replaced by a free one, and the tests read the values from the environment.
declare -A DEFAULT_PORTS=(
  [OPS_API_HOST_PORT]=38080 [INGEST_HOST_PORT]=38081 [PRIMA_SANDBOX_HOST_PORT]=38090
  [SHOPIFY_SANDBOX_HOST_PORT]=38091 [KAFKA_HOST_PORT]=39092 [POSTGRES_HOST_PORT]=35432
  [PROMETHEUS_HOST_PORT]=39090 [GRAFANA_HOST_PORT]=33000
)
free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
for var in "${!DEFAULT_PORTS[@]}"; do
  port="${!var:-${DEFAULT_PORTS[$var]}}"
  if port_open "$port"; then
    [[ -z "${!var:-}" ]] || die "$var=$port is taken ($(port_owner "$port"))"
    port="$(free_port)"
    log "port ${DEFAULT_PORTS[$var]} is taken: $var=$port"
  fi
  export "$var=$port"
done

# -------------------------------------------------------------------------- timings
declare -a TIMINGS=()
RUN_STARTED=$SECONDS
phase_started=$SECONDS
phase_done() {
  TIMINGS+=("$(printf '%-34s %4ss' "$1" "$((SECONDS - phase_started))")")
  phase_started=$SECONDS
}
report() {
  {
    echo
    echo "make test-compose: ${1}"
    echo "  engine:  ${ENGINE_VERSION:-?}"
    echo "  compose: ${COMPOSE_VERSION_LINE:-?}"
    echo "  project: $COMPOSE_PROJECT_NAME (COMPOSE_FILE=$COMPOSE_FILE)"
    echo "  ports:   ops API $OPS_API_HOST_PORT, webhooks $INGEST_HOST_PORT, Prima sandbox $PRIMA_SANDBOX_HOST_PORT," \
      "Shopify sandbox $SHOPIFY_SANDBOX_HOST_PORT, Kafka $KAFKA_HOST_PORT, PostgreSQL $POSTGRES_HOST_PORT," \
      "Prometheus $PROMETHEUS_HOST_PORT (all on 127.0.0.1)"
    echo "  time:"
    printf '    %s\n' "${TIMINGS[@]}"
    printf '    %-34s %4ss\n' "total" "$((SECONDS - RUN_STARTED))"
  } | tee -a "$SUMMARY" >&2
}

# -------------------------------------------------------------------------- cleanup
STACK_UP=0
ENGINE_STARTED_HERE=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if ((STACK_UP)); then
    "${COMPOSE[@]}" logs --no-color --timestamps >"$OUT_DIR/compose-logs.txt" 2>&1
    phase_started=$SECONDS
    log "docker compose down -v"
    "${COMPOSE[@]}" down -v --remove-orphans --timeout 20 >&2
    phase_done "docker compose down -v"
  fi
  if ((ENGINE_STARTED_HERE)); then
    phase_started=$SECONDS
    "$HERE/engine.sh" stop
    phase_done "engine stop"
  fi
  if ((rc == 0)); then report "passed"; else report "FAILED (exit $rc)"; fi
  echo "$rc" >"$EXIT_CODE_FILE"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -------------------------------------------------------------------------- 1. engine
# An engine that answers before this run is left running; one this run starts is stopped.
ENGINE_STARTED_HERE=0
"$HERE/engine.sh" status >/dev/null 2>&1 || ENGINE_STARTED_HERE=1
DOCKER_HOST="$("$HERE/engine.sh" start)"
export DOCKER_HOST
ENGINE_VERSION="Docker Engine $(docker version -f '{{.Server.Version}} (API {{.Server.APIVersion}}, containerd {{range .Server.Components}}{{if eq .Name "containerd"}}{{.Version}}{{end}}{{end}})'), CLI $(docker version -f '{{.Client.Version}}')"
log "$ENGINE_VERSION at $DOCKER_HOST"
phase_done "engine"

# -------------------------------------------------------------------------- 2. compose
read -ra COMPOSE <<<"$("$HERE/compose-bin.sh")"
COMPOSE_VERSION_LINE="$("${COMPOSE[@]}" version) (${COMPOSE[*]})"
log "$COMPOSE_VERSION_LINE"
# A stack left by an interrupted run of the same project goes first, volumes included.
"${COMPOSE[@]}" down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
phase_done "compose"

# -------------------------------------------------------------------------- 3. images
COMPOSE_BIN="${COMPOSE[*]}" "$HERE/build.sh"
phase_done "images (build.sh)"

# -------------------------------------------------------------------------- 4. up
log "docker compose up --wait (every health check, up to ${UP_TIMEOUT}s)"
STACK_UP=1
if ! "${COMPOSE[@]}" up -d --no-build --wait --wait-timeout "$UP_TIMEOUT" >"$OUT_DIR/up.log" 2>&1; then
  show_tail "$OUT_DIR/up.log"
  "${COMPOSE[@]}" ps -a >&2 || true
  "${COMPOSE[@]}" logs --no-color --tail 30 >&2 || true
  die "the stack did not become healthy"
fi
"${COMPOSE[@]}" ps -a --format 'table {{.Service}}\t{{.Status}}\t{{.Ports}}' >&2
phase_done "docker compose up --wait"

# -------------------------------------------------------------------------- 5. tests
# TEST_COMPOSE_STACK makes tests/compose collect its tests (tests/compose/conftest.py).
log "pytest tests/compose"
rc=0
TEST_COMPOSE_STACK=1 TEST_COMPOSE_CMD="${COMPOSE[*]}" \
  "$PY" -m pytest -ra -p no:cacheprovider tests/compose ${COMPOSE_PYTEST_ARGS:-} || rc=$?
phase_done "pytest tests/compose"
exit "$rc"
