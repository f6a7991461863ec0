#!/usr/bin/env bash
# Builds every image of the offline compose stack (deploy/compose/offline.yml), with no image
# registry: the base image from Debian's mirror (base-image.sh), the Python base on it, then
# `docker compose build` (the app image once for every Python service, Kafka, PostgreSQL,
# Prometheus). Package installs reach Debian, PyPI and Maven Central over the host network.
#   deploy/compose/build.sh
# Uses the engine of DOCKER_HOST and the compose command of COMPOSE_BIN (else compose-bin.sh).
# Layers are cached by the engine: a second run rebuilds only what changed (the app's code
# layers when only code changed). Output: <state>/compose/build.log.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../local/common.sh"
cd "$REPO_ROOT"

# The names deploy/compose/offline.yml passes as BASE_IMAGE build arguments.
BASE_IMAGE_NAME=shopify-prima-base:bookworm
PYTHON_IMAGE=shopify-prima-offline/python:local
BUILD_LOG="$STATE_DIR/compose/build.log"
mkdir -p "$(dirname "$BUILD_LOG")"
: >"$BUILD_LOG"

read -ra compose <<<"${COMPOSE_BIN:-$("$HERE/compose-bin.sh")}"
files=(-f docker-compose.yml -f deploy/compose/offline.yml)

step() {
  local what="$1" started=$SECONDS
  shift
  if ! "$@" >>"$BUILD_LOG" 2>&1; then
    TAIL_LINES=60 show_tail "$BUILD_LOG"
    die "$what failed (log above; whole log in $BUILD_LOG)"
  fi
  log "$what: $((SECONDS - started))s"
}

"$HERE/base-image.sh" "$BASE_IMAGE_NAME"
step "Python base image $PYTHON_IMAGE" \
  docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE_NAME" -t "$PYTHON_IMAGE" \
  -f deploy/compose/python/Dockerfile deploy/compose
step "docker compose build (app, kafka, postgres, prometheus)" "${compose[@]}" "${files[@]}" build
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep -E '^shopify-prima' | sed 's/^/  /' >&2
