#!/usr/bin/env bash
# Build stand-in base images without a container registry.
#
#   local/debian:bookworm     debootstrap --variant=minbase, imported with `docker import`
#   local/python:3.11-slim    Debian's python3 + python3-venv (stands in for python:3.12-slim)
#   local/nginx:bookworm      Debian's nginx-light (stands in for nginxinc/nginx-unprivileged)
#
# Idempotent: an image that already exists in the target engine is skipped.
# The engine is whatever `docker` talks to, so DOCKER_HOST selects it; seeding a
# second engine costs seconds because the debootstrap rootfs tarball is cached
# under $MOORAGE_CACHE_DIR (default /var/cache/moorage).
#
# Usage: scripts/base-images.sh            (needs root for debootstrap on first run)
#        DOCKER_HOST=unix:///tmp/d2/docker.sock scripts/base-images.sh
# Then:  export MOORAGE_PYTHON_IMAGE=local/python:3.11-slim MOORAGE_NGINX_IMAGE=local/nginx:bookworm
set -euo pipefail

SUITE=bookworm
# Plain http on purpose: containers do not trust a TLS-inspecting proxy's CA,
# and apt verifies packages by their signed Release files anyway.
MIRROR="${MOORAGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE_DIR="${MOORAGE_CACHE_DIR:-/var/cache/moorage}"
ROOTFS_TAR="$CACHE_DIR/debian-$SUITE-minbase-slim.tar"

DEBIAN_IMAGE=local/debian:bookworm
PYTHON_IMAGE=local/python:3.11-slim
NGINX_IMAGE=local/nginx:bookworm

log() { printf 'base-images: %s\n' "$*" >&2; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

rootfs_tarball() {
    if [[ -s "$ROOTFS_TAR" ]]; then
        log "using cached rootfs $ROOTFS_TAR"
        return
    fi
    command -v debootstrap >/dev/null || {
        log "debootstrap is missing: apt-get install -y debootstrap"
        exit 2
    }
    mkdir -p "$CACHE_DIR"
    local tmp
    tmp="$(mktemp -d /tmp/moorage-rootfs.XXXXXX)"
    # shellcheck disable=SC2064  # expand $tmp now: it is local
    trap "rm -rf '$tmp'" EXIT
    log "debootstrap --variant=minbase $SUITE (1-2 minutes)"
    debootstrap --variant=minbase "$SUITE" "$tmp/rootfs" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 || {
        tail -n 30 "$tmp/debootstrap.log" >&2
        exit 1
    }
    slim_rootfs "$tmp/rootfs"
    # Written as .partial and renamed so an interrupted run never leaves a truncated cache.
    tar --numeric-owner -C "$tmp/rootfs" -cf "$ROOTFS_TAR.partial" .
    mv "$ROOTFS_TAR.partial" "$ROOTFS_TAR"
    rm -rf "$tmp"
    trap - EXIT
}

slim_rootfs() {
    # What Debian's own -slim images do: no docs, man pages or translations, now
    # and for every package installed later (keeps the backend image < 250 MB).
    local root="$1"
    cat >"$root/etc/dpkg/dpkg.cfg.d/90-moorage-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
DPKG
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/*
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    # No stale apt lists or cached debs: the Dockerfiles run apt-get update.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
}

build_on_debian() {
    # $1 = tag, stdin = Dockerfile (no context needed)
    log "building $1"
    docker build --build-arg "BASE=$DEBIAN_IMAGE" -t "$1" - >/dev/null
}

if have_image "$DEBIAN_IMAGE"; then
    log "$DEBIAN_IMAGE exists"
else
    rootfs_tarball
    log "importing $DEBIAN_IMAGE"
    docker import --change 'CMD ["/bin/bash"]' "$ROOTFS_TAR" "$DEBIAN_IMAGE" >/dev/null
fi

APT_INSTALL='apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends'
APT_CLEAN='apt-get clean && rm -rf /var/lib/apt/lists/*'

if have_image "$PYTHON_IMAGE"; then
    log "$PYTHON_IMAGE exists"
else
    build_on_debian "$PYTHON_IMAGE" <<EOF
ARG BASE
FROM \$BASE
RUN $APT_INSTALL python3 python3-venv ca-certificates >/dev/null && $APT_CLEAN
ENV LANG=C.UTF-8
CMD ["python3"]
EOF
fi

if have_image "$NGINX_IMAGE"; then
    log "$NGINX_IMAGE exists"
else
    build_on_debian "$NGINX_IMAGE" <<EOF
ARG BASE
FROM \$BASE
RUN $APT_INSTALL nginx-light >/dev/null && $APT_CLEAN \
 && rm -f /etc/nginx/sites-enabled/default
EXPOSE 8080
CMD ["nginx", "-g", "daemon off;"]
EOF
fi

log "done; build the reference app's images with:"
echo "MOORAGE_PYTHON_IMAGE=$PYTHON_IMAGE"
echo "MOORAGE_NGINX_IMAGE=$NGINX_IMAGE"
