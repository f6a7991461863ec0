#!/usr/bin/env bash
# Prints the Docker Compose v2 command to run (stdout), finding or making one:
#   1. COMPOSE_BIN if set (a path, or "docker compose");
#   2. the docker CLI's compose plugin (`docker compose`), as Docker's own packages install it;
#   3. Compose COMPOSE_VERSION built from source earlier, in the cache directory;
#   4. otherwise it builds that one from source with the machine's Go toolchain: Debian 12 does
#      not package Compose v2 (its docker-compose is v1.29, which lacks `up --wait`).
# Cache: ${SHOPIFY_PRIMA_CACHE_DIR:-~/.cache/shopify-prima}/docker-compose-<version>.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../local/common.sh"

COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
CACHE_DIR="${SHOPIFY_PRIMA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shopify-prima}"
BIN="$CACHE_DIR/docker-compose-$COMPOSE_VERSION"

if [[ -n "${COMPOSE_BIN:-}" ]]; then
  echo "$COMPOSE_BIN"
  exit 0
fi
if docker compose version >/dev/null 2>&1; then
  echo "docker compose"
  exit 0
fi
if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi

go="$(command -v go || true)"
[[ -z "$go" && -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go
[[ -n "$go" ]] || die "no Docker Compose v2 and no Go toolchain to build one;" \
  "install the compose plugin or Go, or set COMPOSE_BIN"

log "building Docker Compose $COMPOSE_VERSION from source with $("$go" version | cut -d' ' -f3)" \
  "(once; cached in $CACHE_DIR)"
started=$SECONDS
mkdir -p "$CACHE_DIR"
module="github.com/docker/compose/v2"
src="$("$go" mod download -json "$module@$COMPOSE_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
[[ -d "$src" ]] || die "go mod download $module@$COMPOSE_VERSION failed"
(cd "$src" && CGO_ENABLED=0 "$go" build -trimpath \
  -ldflags "-s -w -X $module/internal.Version=$COMPOSE_VERSION" -o "$BIN.tmp" ./cmd) >&2
mv "$BIN.tmp" "$BIN"
log "built $("$BIN" version) in $((SECONDS - started))s"
echo "$BIN"
