# Shared helpers for deploy/local/*.sh. Sourced, not executed.
# Every script keeps its runtime state (data, pid files, logs) under one directory so that
# a clone can be wiped by removing it; override with SHOPIFY_PRIMA_STATE_DIR.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE_DIR="${SHOPIFY_PRIMA_STATE_DIR:-$REPO_ROOT/.run}"
LOG_DIR="$STATE_DIR/logs"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Which process listens on 127.0.0.1:$1 (for error messages only).
port_owner() {
  ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -1
}

# True if the pid in file $1 is alive.
pid_alive() {
  local pid
  [[ -s "$1" ]] || return 1
  pid="$(cat "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# Stop the process whose pid is in file $1: TERM, then KILL after $2 seconds.
stop_pidfile() {
  local pidfile="$1" grace="${2:-15}" name="${3:-process}" pid target i
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    return 0
  fi
  pid="$(cat "$pidfile")"
  # Our scripts start processes with setsid: signal the whole group so children go too.
  target="$pid"
  [[ "$(ps -o pgid= -p "$pid" | tr -d ' ')" == "$pid" ]] && target="-$pid"
  kill -TERM -- "$target" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored TERM for ${grace}s; sending KILL"
    kill -KILL -- "$target" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
}

# Print the last lines of each given log file that exists.
show_tail() {
  local f
  for f in "$@"; do
    [[ -f "$f" ]] || continue
    printf '%s\n' "----- last ${TAIL_LINES:-30} lines of $f -----" >&2
    tail -n "${TAIL_LINES:-30}" "$f" >&2
    printf '%s\n' "-----" >&2
  done
}
