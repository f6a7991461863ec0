#!/usr/bin/env bash
# A Docker engine for `make test-compose` on machines that have none running.
#   deploy/compose/engine.sh start   prints the DOCKER_HOST to use (stdout), logs to stderr
#   deploy/compose/engine.sh stop    stops the engine only if `start` started it
#   deploy/compose/engine.sh status
# An engine that already answers (DOCKER_HOST, else the default socket) is used as it is and
# never stopped. Otherwise Debian's docker.io is installed if missing (apt-get, as root) and a
# dockerd of our own is started on a private socket, ENGINE_SOCKET (default
# /run/shopify-prima-docker/docker.sock), not /var/run/docker.sock: processes that look for the
# default engine (testcontainers in a concurrent pytest, another user's docker CLI) do not see it.
# Images and layers stay in DOCKER_DATA_ROOT (default /var/lib/docker) between runs: that is
# the build cache. State: ${SHOPIFY_PRIMA_STATE_DIR:-<repo>/.run}/docker/{dockerd.pid,started},
# log: docker/dockerd.log.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../local/common.sh"

ENGINE_DIR="$STATE_DIR/docker"
PIDFILE="$ENGINE_DIR/dockerd.pid"
# Written when this script started the engine: `stop` stops nothing else.
STARTED="$ENGINE_DIR/started"
EXEC_ROOT="${ENGINE_EXEC_ROOT:-/run/shopify-prima-docker}"
ENGINE_SOCKET="${ENGINE_SOCKET:-$EXEC_ROOT/docker.sock}"
DOCKER_DATA_ROOT="${DOCKER_DATA_ROOT:-/var/lib/docker}"
ENGINE_START_TIMEOUT="${ENGINE_START_TIMEOUT:-60}"
DOCKERD_LOG="$ENGINE_DIR/dockerd.log"

answers() { timeout 15 docker "$@" info >/dev/null 2>&1; }

ensure_installed() {
  command -v dockerd >/dev/null && command -v docker >/dev/null && return 0
  [[ $EUID -eq 0 ]] || die "no Docker engine here; install one (apt-get install -y docker.io) or run as root"
  log "installing Debian's docker.io (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q docker.io >&2
}

cmd_start() {
  if [[ -f "$STARTED" ]] && pid_alive "$PIDFILE" && answers -H "unix://$ENGINE_SOCKET"; then
    log "our engine is running (pid $(cat "$PIDFILE"), unix://$ENGINE_SOCKET)"
    echo "unix://$ENGINE_SOCKET"
    return 0
  fi
  if command -v docker >/dev/null && answers; then
    log "using the running engine (${DOCKER_HOST:-default socket}); it is left running"
    echo "${DOCKER_HOST:-unix:///var/run/docker.sock}"
    return 0
  fi
  ensure_installed
  [[ $EUID -eq 0 ]] || die "dockerd must run as root"
  mkdir -p "$ENGINE_DIR" "$EXEC_ROOT"
  log "starting dockerd on unix://$ENGINE_SOCKET (data root $DOCKER_DATA_ROOT, log $DOCKERD_LOG)"
  # setsid: the engine is not hit by a Ctrl-C aimed at make; `stop` signals its group.
  # Published ports bound to 127.0.0.1 are served by docker-proxy; the loopback traffic of
  # other processes (the local stack) is untouched by Docker's iptables rules.
  setsid dockerd --host "unix://$ENGINE_SOCKET" --pidfile "$PIDFILE.dockerd" --exec-root "$EXEC_ROOT" \
    --data-root "$DOCKER_DATA_ROOT" --storage-driver overlay2 \
    >>"$DOCKERD_LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  touch "$STARTED"
  local deadline=$((SECONDS + ENGINE_START_TIMEOUT))
  until answers -H "unix://$ENGINE_SOCKET"; do
    if ! pid_alive "$PIDFILE"; then
      rm -f "$STARTED"
      show_tail "$DOCKERD_LOG"
      die "dockerd exited during start-up (log above)"
    fi
    ((SECONDS < deadline)) || { show_tail "$DOCKERD_LOG"; die "dockerd did not answer within ${ENGINE_START_TIMEOUT}s"; }
    sleep 0.5
  done
  log "engine ready (pid $(cat "$PIDFILE"))"
  echo "unix://$ENGINE_SOCKET"
}

cmd_stop() {
  if [[ ! -f "$STARTED" ]]; then
    log "no engine of ours to stop"
    return 0
  fi
  log "stopping our dockerd (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'))"
  # dockerd stops its containers and its containerd on TERM; give it time before KILL.
  stop_pidfile "$PIDFILE" 60 dockerd
  rm -f "$STARTED" "$PIDFILE.dockerd"
}

cmd_status() {
  if [[ -f "$STARTED" ]] && pid_alive "$PIDFILE"; then
    echo "docker engine: ours, running (pid $(cat "$PIDFILE"), unix://$ENGINE_SOCKET)"
  elif command -v docker >/dev/null && answers; then
    echo "docker engine: running (${DOCKER_HOST:-default socket}), not ours"
  else
    echo "docker engine: none"
    return 3
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
