#!/usr/bin/env bash
# The base image the offline images build on, made from Debian's own package mirror because no
# image registry is reachable here (no `FROM debian`, `python`, `postgres`...):
#   deploy/compose/base-image.sh [image]     default shopify-prima-base:bookworm
# `debootstrap --variant=minbase bookworm` into a temporary directory, then `docker import`.
# Cached: nothing is done when the engine already holds the image (remove it to rebuild).
# DEBIAN_MIRROR (default http://deb.debian.org/debian) and DEBIAN_SECURITY_MIRROR are the
# images' apt sources.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../local/common.sh"

IMAGE="${1:-shopify-prima-base:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE: cached ($(docker image inspect -f '{{.Created}}' "$IMAGE"))"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  [[ $EUID -eq 0 ]] || die "debootstrap is missing; install it (apt-get install -y debootstrap)"
  log "installing debootstrap (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q debootstrap >&2
fi

root="$(mktemp -d "${TMPDIR:-/tmp}/shopify-prima-rootfs.XXXXXX")"
trap 'rm -rf "$root"' EXIT
log "debootstrap --variant=minbase $SUITE from $MIRROR"
started=$SECONDS
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 \
  || { show_tail "$root.log"; rm -f "$root.log"; die "debootstrap failed (log above)"; }
rm -f "$root.log"

# As Debian's own images: no services started by package installs inside a build, no
# recommended packages, no documentation; apt sources with the updates and security suites.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/90shopify-prima"
printf 'path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\npath-exclude=/usr/share/info/*\n' \
  >"$root/etc/dpkg/dpkg.cfg.d/90shopify-prima-nodoc"
printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
  "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SECURITY_MIRROR" "$SUITE" >"$root/etc/apt/sources.list"
# The host's own certificate authorities (EXTRA_CA_DIR, default /usr/local/share/ca-certificates)
# are trusted in the images too: where egress goes through a TLS-inspecting proxy, pip and mvn
# inside a build reach PyPI and Maven Central only with them. Nothing else of the host is copied.
extra_ca="${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"
if compgen -G "$extra_ca/*.crt" >/dev/null; then
  cp "$extra_ca"/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
  log "trusting the host's extra certificate authorities: $(cd "$extra_ca" && echo *.crt)"
fi
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* "$root"/usr/share/man/*
# Java's postinst links its man page there (update-alternatives fails if the directory is missing).
mkdir -p "$root/usr/share/man/man1"

tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  --change 'CMD ["bash"]' \
  --message "debootstrap --variant=minbase $SUITE $MIRROR" - "$IMAGE" >/dev/null
log "$IMAGE: imported in $((SECONDS - started))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec))"
