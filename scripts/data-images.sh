#!/usr/bin/env bash
# Build local stand-ins for the PostgreSQL and Redis images the Helm chart runs,
# so the chart can run on a cluster without registry access.
#
#   local/postgres:15   Debian's postgresql-15 with the official postgres image's
#                       entrypoint contract (scripts/images/postgres.Dockerfile)
#   local/redis:7       Debian's redis-server + redis-tools (scripts/images/redis.Dockerfile)
#
# Both are built FROM local/debian:bookworm; when that is missing,
# scripts/base-images.sh makes it first. Idempotent: an image that already
# exists in the target engine, built from the current recipe (Dockerfile and
# the files it copies, hashed into a label), is skipped;
# MOORAGE_REBUILD_DATA_IMAGES=1 forces a rebuild. The engine is whatever `docker` talks to, so DOCKER_HOST selects it.
#
# Usage: scripts/data-images.sh
#        DOCKER_HOST=unix:///tmp/d2/docker.sock scripts/data-images.sh
# Then:  helm install ... --set postgresql.image.repository=local/postgres,postgresql.image.tag=15 \
#                        --set redis.image.repository=local/redis,redis.image.tag=7
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
images="$here/images"

DEBIAN_IMAGE=local/debian:bookworm
POSTGRES_IMAGE=local/postgres:15
REDIS_IMAGE=local/redis:7

log() { printf 'data-images: %s\n' "$*" >&2; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# The recipe of an image is its Dockerfile and the files it copies; its hash is
# stored as a label, so an image built from an older recipe is rebuilt rather
# than skipped. The label is added last, so a rebuild reuses cached layers.
recipe_hash() { (cd "$images" && cat "$@") | sha256sum | cut -c1-16; }

image_recipe() { docker image inspect -f '{{ index .Config.Labels "org.moorage.recipe" }}' "$1" 2>/dev/null || true; }

build() {
    # $1 = tag, $2 = Dockerfile under scripts/images (the context), $3... = files it copies
    local tag=$1 dockerfile=$2 hash old start out
    hash=$(recipe_hash "${@:2}")
    if [[ "$(image_recipe "$tag")" == "$hash" && "${MOORAGE_REBUILD_DATA_IMAGES:-}" != 1 ]]; then
        log "$tag exists"
        return
    fi
    old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
    log "building $tag from scripts/images/$dockerfile"
    start=$SECONDS
    out=$(mktemp)
    if ! docker build --build-arg "BASE=$DEBIAN_IMAGE" --label "org.moorage.recipe=$hash" \
            -f "$images/$dockerfile" -t "$tag" "$images" >"$out" 2>&1; then
        tail -n 40 "$out" >&2
        rm -f "$out"
        log "building $tag failed"
        exit 1
    fi
    rm -f "$out"
    # The image this run replaced, unless something still uses it.
    if [[ -n "$old" && "$old" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]]; then
        docker image rm "$old" >/dev/null 2>&1 || true
    fi
    log "built $tag in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}

if ! have_image "$DEBIAN_IMAGE"; then
    log "$DEBIAN_IMAGE is missing; running base-images.sh"
    "$here/base-images.sh" >/dev/null
fi

build "$POSTGRES_IMAGE" postgres.Dockerfile postgres-entrypoint.sh
build "$REDIS_IMAGE" redis.Dockerfile redis-server-wrapper.sh redis-entrypoint.sh

log "done; run the chart's data services from them with:"
echo "--set postgresql.image.repository=${POSTGRES_IMAGE%:*},postgresql.image.tag=${POSTGRES_IMAGE##*:}"
echo "--set redis.image.repository=${REDIS_IMAGE%:*},redis.image.tag=${REDIS_IMAGE##*:}"
