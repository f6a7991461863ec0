#!/usr/bin/env bash
# The project's own processes (docs/architecture.md, "Processes and ports"), run from the venv.
#   deploy/local/services.sh {start|stop|status|pids}
# Each runs in the background under deploy/local/supervise.sh, which starts it again when it exits
# (as compose's restart policy does), with <state>/logs/<name>.pid (the supervisor's pid) and
# <name>.log. `start` waits until the HTTP ones answer /health and the workers answer /metrics.
# `pids` prints each process's current pid (what `make chaos` kills). Kafka and PostgreSQL are
# separate (kafka.sh, postgres.sh); `make up` runs them all in order.
# Environment:
#   SERVICES="prima_sandbox ops_api ..."   only these (default: all, in the order below)
#   SERVICES_START_TIMEOUT=60              seconds to wait for every process to answer
#   SHOPIFY_PRIMA_*_PORT                   a process's port, read by the process itself (see the
#                                          table below) and by this script to check it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# The stack's configuration (stack.env): each variable unless the environment already sets it.
STACK_ENV="${STACK_ENV:-$REPO_ROOT/deploy/local/stack.env}"
if [[ -f "$STACK_ENV" ]]; then
  while IFS= read -r line; do
    [[ "$line" =~ ^([A-Z_][A-Z0-9_]*)=(.*)$ ]] || continue
    [[ -n "${!BASH_REMATCH[1]+x}" ]] || export "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
  done <"$STACK_ENV"
fi

# Not SHOPIFY_PRIMA_*: services/platform/settings.py refuses unknown variables with that prefix.
PYTHON="${SERVICES_PYTHON:-$REPO_ROOT/.venv/bin/python}"
START_TIMEOUT="${SERVICES_START_TIMEOUT:-60}"
STOP_GRACE="${SERVICES_STOP_GRACE:-15}"

# name | module | port setting (services/platform/settings.py or the sandbox) | default | path that
# answers 200 once the process is up. Sandboxes first: the gateway calls Prima from the start.
PROCESS_TABLE="
prima_sandbox    sandboxes.prima          SHOPIFY_PRIMA_PRIMA_SANDBOX_PORT          8090 /health
shopify_sandbox  sandboxes.shopify        SHOPIFY_PRIMA_SHOPIFY_SANDBOX_PORT        8091 /health
order_decider    services.orders.decider         SHOPIFY_PRIMA_ORDER_DECIDER_METRICS_PORT   9101 /metrics
outbox_relay     services.outbox_relay           SHOPIFY_PRIMA_OUTBOX_RELAY_METRICS_PORT    9102 /metrics
prima_gateway    services.prima.gateway          SHOPIFY_PRIMA_PRIMA_GATEWAY_METRICS_PORT   9103 /metrics
projector        services.projector              SHOPIFY_PRIMA_PROJECTOR_METRICS_PORT       9104 /metrics
stock_decider    services.inventory.decider      SHOPIFY_PRIMA_STOCK_DECIDER_METRICS_PORT   9105 /metrics
shopify_gateway  services.shopify.gateway        SHOPIFY_PRIMA_SHOPIFY_GATEWAY_METRICS_PORT 9106 /metrics
prima_ingest     services.prima.poller           SHOPIFY_PRIMA_PRIMA_INGEST_METRICS_PORT    9107 /metrics
catalog_reader   services.shopify.catalog_reader SHOPIFY_PRIMA_CATALOG_READER_METRICS_PORT  9108 /metrics
reconciler       services.shopify.reconciler     SHOPIFY_PRIMA_RECONCILER_METRICS_PORT      9111 /metrics
payout_ingest    services.payouts.ingest         SHOPIFY_PRIMA_PAYOUT_INGEST_METRICS_PORT   9112 /metrics
payout_decider   services.payouts.decider        SHOPIFY_PRIMA_PAYOUT_DECIDER_METRICS_PORT  9113 /metrics
fulfilment_decider services.fulfilment.decider   SHOPIFY_PRIMA_FULFILMENT_DECIDER_METRICS_PORT 9114 /metrics
shopify_ingest   services.shopify.ingest         SHOPIFY_PRIMA_INGEST_PORT                  8081 /health
ops_api          services.ops.api                SHOPIFY_PRIMA_OPS_API_PORT                 8080 /health
"

declare -A MODULE PORT CHECK
# Where this `start` reads a process's log from: a process already running (restarted earlier by
# its supervisor, e.g. after a chaos run's kill -9) is judged by what it logs from now on only.
declare -A FROM=()
ALL=()
while read -r name module port_var port path; do
  [[ -n "$name" ]] || continue
  ALL+=("$name")
  MODULE[$name]="$module"
  # The processes read the same variable, so an override moves both the process and the check.
  PORT[$name]="${!port_var:-$port}"
  CHECK[$name]="$path"
done <<<"$PROCESS_TABLE"

SELECTED=("${ALL[@]}")
if [[ -n "${SERVICES:-}" ]]; then
  read -r -a SELECTED <<<"$SERVICES"
  for name in "${SELECTED[@]}"; do
    [[ -n "${MODULE[$name]:-}" ]] || die "unknown service '$name' (known: ${ALL[*]})"
  done
fi

pidfile() { printf '%s/%s.pid' "$LOG_DIR" "$1"; }
logfile() { printf '%s/%s.log' "$LOG_DIR" "$1"; }
url() { printf 'http://127.0.0.1:%s%s' "${PORT[$1]}" "${CHECK[$1]}"; }

# Ours and alive: the pid file names a live supervisor of this process.
running() {
  local pf
  pf="$(pidfile "$1")"
  pid_alive "$pf" || return 1
  tr '\0' ' ' <"/proc/$(cat "$pf")/cmdline" 2>/dev/null | grep -qF -- "supervise.sh $1 "
}

# The supervised process's own pid (empty while it is being restarted).
child_pid() {
  pgrep -P "$(cat "$(pidfile "$1")")" -f -- "-m ${MODULE[$1]}" 2>/dev/null | head -n 1
}

# The line where the latest `services.sh start` of this process begins in its log.
start_line() {
  local n
  n="$(grep -n '^===== .*: starting .*(restarts so far: 0)' "$(logfile "$1")" 2>/dev/null | tail -n 1 | cut -d: -f1)"
  echo "${n:-1}"
}

# The log of the latest start only: the file keeps earlier runs, separated by a marker line.
run_tail() {
  local lf n
  lf="$(logfile "$1")"
  [[ -f "$lf" ]] || return 0
  n="$(grep -n '^===== .*: starting ' "$lf" | tail -n 1 | cut -d: -f1)"
  printf '%s\n' "----- $lf (this run, last ${TAIL_LINES:-40} lines) -----" >&2
  tail -n "+${n:-1}" "$lf" | tail -n "${TAIL_LINES:-40}" >&2
  printf '%s\n' "-----" >&2
}

answers() { curl -fsS -o /dev/null --max-time 2 "$(url "$1")" 2>/dev/null; }

start_one() {
  local name="$1" pf lf
  pf="$(pidfile "$name")"
  lf="$(logfile "$name")"
  if running "$name"; then
    log "$name already running (pid $(cat "$pf"))"
    FROM[$name]=$(( $(wc -l <"$lf" 2>/dev/null || echo 0) + 1 ))
    return 0
  fi
  if port_open "${PORT[$name]}"; then
    die "$name: port 127.0.0.1:${PORT[$name]} is taken by another process ($(port_owner "${PORT[$name]}"))"
  fi
  # setsid: the supervisor and its process outlive this script and a Ctrl-C aimed at make.
  (
    cd "$REPO_ROOT"
    export PYTHONUNBUFFERED=1
    exec setsid "$REPO_ROOT/deploy/local/supervise.sh" "$name" "$PYTHON" "${MODULE[$name]}" >>"$lf" 2>&1 </dev/null
  ) &
  echo $! >"$pf"
  log "$name started (supervisor pid $!, python -m ${MODULE[$name]}, log $lf)"
}

wait_all() {
  local deadline=$((SECONDS + START_TIMEOUT)) pending=("$@") still name
  while ((${#pending[@]} > 0)); do
    still=()
    for name in "${pending[@]}"; do
      if ! running "$name" || [[ -n "$(sed -n "${FROM[$name]:-$(start_line "$name")},\$p" "$(logfile "$name")" | grep -m1 ' exited with status ')" ]]; then
        run_tail "$name"
        die "$name (python -m ${MODULE[$name]}) exited during start-up (log above)"
      fi
      if answers "$name"; then
        log "$name ready: $(url "$name")"
      else
        still+=("$name")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    ((${#pending[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      for name in "${pending[@]}"; do run_tail "$name"; done
      die "not answering after ${START_TIMEOUT}s: ${pending[*]} (logs above)"
    fi
    sleep 0.5
  done
}

cmd_start() {
  [[ -x "$PYTHON" ]] || die "$PYTHON not found; run 'make venv' first"
  mkdir -p "$LOG_DIR"
  local name
  for name in "${SELECTED[@]}"; do start_one "$name"; done
  wait_all "${SELECTED[@]}"
}

cmd_stop() {
  local name pid i alive=()
  # TERM every process first, so they shut down in parallel, then KILL whatever is left.
  for ((i = ${#SELECTED[@]} - 1; i >= 0; i--)); do
    name="${SELECTED[$i]}"
    if running "$name"; then
      pid="$(cat "$(pidfile "$name")")"
      log "stopping $name (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      alive+=("$name")
    else
      rm -f "$(pidfile "$name")"
    fi
  done
  for name in "${alive[@]+"${alive[@]}"}"; do
    stop_pidfile "$(pidfile "$name")" "$STOP_GRACE" "$name"
  done
  ((${#alive[@]} > 0)) || log "no service was running"
}

restarts() {
  grep -c ': .* exited with status ' "$(logfile "$1")" 2>/dev/null || true
}

cmd_status() {
  local name rc=0
  for name in "${SELECTED[@]}"; do
    if running "$name" && answers "$name"; then
      printf '%-16s running  pid %-7s %s  (restarts in its log: %s)\n' "$name" "$(child_pid "$name")" "$(url "$name")" \
        "$(restarts "$name")"
    elif running "$name"; then
      printf '%-16s FAILING  pid %-7s %s does not answer (restarts in its log: %s)\n' "$name" "$(child_pid "$name")" \
        "$(url "$name")" "$(restarts "$name")"
      rc=1
    else
      printf '%-16s stopped\n' "$name"
      rc=3
    fi
  done
  return "$rc"
}

cmd_pids() {
  local name
  for name in "${SELECTED[@]}"; do
    running "$name" && printf '%s %s\n' "$name" "$(child_pid "$name")"
  done
  return 0
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  pids) cmd_pids ;;
  *) echo "usage: $0 {start|stop|status|pids}" >&2; exit 2 ;;
esac
