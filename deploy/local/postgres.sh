#!/usr/bin/env bash
# A private PostgreSQL cluster for the local stack, from the OS package (no Docker here).
#   deploy/local/postgres.sh {start|stop|status}
# Data:   ${SHOPIFY_PRIMA_STATE_DIR:-<repo>/.run}/pgdata
# Listen: 127.0.0.1:${PGPORT:-55432} only; Unix socket in <state>/pgsock (trust, owner only).
# Login:  postgresql://shopify_prima:shopify_prima@127.0.0.1:55432/shopify_prima
# Durability settings are PostgreSQL's defaults (fsync and synchronous_commit on), so what the
# tests see about "durably recorded" is what production sees; only max_connections is raised.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PGPORT="${PGPORT:-55432}"
PGDATA_DIR="$STATE_DIR/pgdata"
SOCK_DIR="$STATE_DIR/pgsock"
PG_LOG="$LOG_DIR/postgres.log"
APP_ROLE=shopify_prima
APP_DB=shopify_prima

# Unix socket paths are limited to ~107 bytes; a deep clone path would break the server start.
if (( ${#SOCK_DIR} + 20 > 100 )); then
  SOCK_DIR="/tmp/shopify-prima-pgsock-$(printf '%s' "$STATE_DIR" | md5sum | cut -c1-12)"
fi

# The server binaries: newest /usr/lib/postgresql/*/bin; install the OS package if missing.
find_pgbin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  [[ -n "$d" && -x "$d/postgres" ]] && printf '%s\n' "$d"
}

ensure_server_installed() {
  PGBIN="$(find_pgbin || true)"
  [[ -n "$PGBIN" ]] && return 0
  [[ $EUID -eq 0 ]] || die "PostgreSQL server not installed; run: sudo apt-get install -y postgresql"
  log "PostgreSQL server not found; installing the OS package (apt-get)"
  # Do not let the package create and start Debian's default cluster on port 5432: we run our own.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/shopify-prima.conf
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    postgresql >&2
  PGBIN="$(find_pgbin || true)"
  [[ -n "$PGBIN" ]] || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/postgres"
}

# The server refuses to run as root, so as root everything runs as the `postgres` OS user.
if [[ $EUID -eq 0 ]]; then
  PG_USER=postgres
  as_pg() { (cd / && runuser -u "$PG_USER" -- "$@"); }
else
  PG_USER="$(id -un)"
  as_pg() { "$@"; }
fi

# The postgres user must be able to reach the state dir; CI may clone into a private folder.
# Adding search (x) permission to the ancestors lets it pass through without listing them.
make_traversable() {
  [[ $EUID -eq 0 ]] || return 0
  id "$PG_USER" >/dev/null 2>&1 || die "OS user '$PG_USER' missing (it comes with the postgresql package)"
  as_pg test -x "$STATE_DIR" && return 0
  local d="$STATE_DIR"
  while [[ "$d" != "/" ]]; do
    if [[ -d "$d" ]] && (( (8#$(stat -c %a "$d") & 1) == 0 )); then
      log "granting search permission (o+x) on $d so that user $PG_USER can reach $STATE_DIR"
      chmod o+x "$d"
    fi
    d="$(dirname "$d")"
  done
  as_pg test -x "$STATE_DIR" || die "user $PG_USER still cannot reach $STATE_DIR"
}

prepare_dirs() {
  mkdir -p "$STATE_DIR" "$LOG_DIR"
  make_traversable
  mkdir -p "$PGDATA_DIR" "$SOCK_DIR"
  touch "$PG_LOG"
  if [[ $EUID -eq 0 ]]; then
    chown "$PG_USER": "$PGDATA_DIR" "$SOCK_DIR" "$PG_LOG"
  fi
  chmod 700 "$PGDATA_DIR" "$SOCK_DIR"
}

init_cluster() {
  [[ -f "$PGDATA_DIR/PG_VERSION" ]] && return 0
  log "initialising a new cluster in $PGDATA_DIR"
  # Socket logins are trusted (the socket dir is private); TCP logins need the password.
  as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 >>"$PG_LOG" 2>&1 \
    || { show_tail "$PG_LOG"; die "initdb failed"; }
  cat >>"$PGDATA_DIR/postgresql.conf" <<'CONF'

# --- shopify-prima local stack (deploy/local/postgres.sh) ---
# Port and socket directory are passed on the command line at each start (PGPORT may change).
listen_addresses = '127.0.0.1'
max_connections = 200
CONF
}

psql_admin() {
  as_pg "$PGBIN/psql" -X -q -h "$SOCK_DIR" -p "$PGPORT" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 "$@"
}

ensure_role_and_db() {
  if [[ "$(psql_admin -tAc "select 1 from pg_roles where rolname = '$APP_ROLE'")" != 1 ]]; then
    log "creating role $APP_ROLE"
    # Superuser: the local stack's setup creates schemas and extensions freely.
    psql_admin -c "create role $APP_ROLE login superuser password '$APP_ROLE'"
  fi
  if [[ "$(psql_admin -tAc "select 1 from pg_database where datname = '$APP_DB'")" != 1 ]]; then
    log "creating database $APP_DB"
    psql_admin -c "create database $APP_DB owner $APP_ROLE"
  fi
}

is_running() {
  [[ -f "$PGDATA_DIR/PG_VERSION" ]] && as_pg "$PGBIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1
}

cmd_start() {
  ensure_server_installed
  prepare_dirs
  init_cluster
  if is_running; then
    log "already running (data $PGDATA_DIR)"
  else
    if port_open "$PGPORT"; then
      die "port 127.0.0.1:$PGPORT is taken by another process ($(port_owner "$PGPORT")); stop it or set PGPORT"
    fi
    log "starting on 127.0.0.1:$PGPORT (log $PG_LOG)"
    as_pg "$PGBIN/pg_ctl" start -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 60 -s \
      -o "-p $PGPORT -k '$SOCK_DIR'" \
      || { show_tail "$PG_LOG"; die "PostgreSQL did not start"; }
  fi
  ensure_role_and_db
  log "ready: postgresql://$APP_ROLE:$APP_ROLE@127.0.0.1:$PGPORT/$APP_DB"
}

cmd_stop() {
  PGBIN="$(find_pgbin || true)"
  if [[ -z "$PGBIN" ]] || ! is_running; then
    log "not running"
    return 0
  fi
  log "stopping"
  as_pg "$PGBIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t 60 -s
}

cmd_status() {
  PGBIN="$(find_pgbin || true)"
  if [[ -n "$PGBIN" ]] && is_running; then
    echo "postgres: running (pid $(head -n 1 "$PGDATA_DIR/postmaster.pid"), 127.0.0.1:$PGPORT, data $PGDATA_DIR)"
  else
    echo "postgres: stopped"
    return 3
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
