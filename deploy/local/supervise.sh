#!/usr/bin/env bash
# Keeps one process of the local stack running, as docker compose's `restart: unless-stopped`
# does: when the process exits (a crash, kill -9) it is started again after a backoff (1 s,
# doubling up to 30 s; back to 1 s once it has stayed up for 60 s). SIGTERM or SIGINT stop the
# process and this loop for good.
#   deploy/local/supervise.sh <name> <python> <module>
# Started by services.sh (under setsid, output to the process's log); every restart is logged.
set -uo pipefail

name="$1" python="$2" module="$3"
child=""
stopping=0

stop() {
  stopping=1
  [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null
}
trap stop TERM INT

backoff=1
restarts=0
while ((stopping == 0)); do
  started=$SECONDS
  printf '===== %s: starting %s -m %s (restarts so far: %d) =====\n' "$(date -Is)" "$python" "$module" "$restarts"
  "$python" -m "$module" </dev/null &
  child=$!
  wait "$child"
  rc=$?
  # `wait` returns early when a trapped signal arrives: wait for the child itself to end
  while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
  child=""
  ((stopping == 1)) && break
  if ((SECONDS - started >= 60)); then backoff=1; fi
  restarts=$((restarts + 1))
  printf '===== %s: %s exited with status %d; restarting in %ds =====\n' "$(date -Is)" "$name" "$rc" "$backoff"
  sleep "$backoff" &
  wait $! 2>/dev/null
  backoff=$((backoff * 2 > 30 ? 30 : backoff * 2))
done
printf '===== %s: %s stopped =====\n' "$(date -Is)" "$name"
