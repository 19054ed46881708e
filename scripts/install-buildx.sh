#!/usr/bin/env bash
# Build (or reuse from the cache) the `docker buildx` CLI plugin from Go modules
# (github.com/docker/buildx/cmd/buildx vBUILDX_VERSION) and install it where the Docker CLI finds it.
# Moorage builds images with BuildKit through `docker buildx build` (the engine's built-in BuildKit,
# docker driver); without the plugin it falls back to the legacy builder (`inv doctor` says which).
#
#   BUILDX_VERSION       default 0.29.1: its go.mod says `go 1.24.0`, so the Go that scripts/install-go.sh
#                        guarantees (GO_MIN, scripts/cluster/common.sh) builds it; newer ones need Go 1.25+
#   MOORAGE_K8S_CACHE    root of the binary cache (default /var/cache/moorage): CACHE/buildx-vVERSION/bin
#   BUILDX_PLUGIN_DIR    where the plugin goes (default /usr/local/lib/docker/cli-plugins as root,
#                        ~/.docker/cli-plugins otherwise)
#   --force              rebuild even when the cached binary is there
# Idempotent: nothing is built when the cache holds the binary; nothing is copied when the installed
# plugin is the same file. Cold build: a few minutes on 2 cores (under `nice`).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/cluster/common.sh"

BUILDX_VERSION=${BUILDX_VERSION:-0.29.1}
CACHE=$MOORAGE_K8S_CACHE/buildx-v$BUILDX_VERSION
if [ "$(id -u)" = 0 ]; then PLUGIN_DIR=${BUILDX_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}
else PLUGIN_DIR=${BUILDX_PLUGIN_DIR:-$HOME/.docker/cli-plugins}; fi
FORCE=0
case ${1:-} in
  --force) FORCE=1 ;;
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
  "") ;;
  *) die "unknown argument $1" ;;
esac

build() {
  local src=$CACHE/src out=$CACHE/bin stamp=go-get.done pkg=github.com/docker/buildx
  find_go || die "no Go >= $GO_MIN (on PATH, /usr/local/go, /usr/local/go-*, /usr/lib/go-*): run scripts/install-go.sh"
  log "building docker-buildx v$BUILDX_VERSION with $(command -v go) (go$(go_version_of "$(command -v go)"))"
  mkdir -p "$src" "$out"; cd "$src"
  if [ ! -f "$stamp" ]; then  # an interrupted `go get` is started again from a fresh module
    rm -f go.mod go.sum "$stamp"
    go mod init local/buildx-build >/dev/null 2>&1
    go get "$pkg/cmd/buildx@v$BUILDX_VERSION"
    echo "$pkg@v$BUILDX_VERSION" >"$stamp"
  fi
  nice -n "${BUILD_NICE:-19}" go build -trimpath \
    -ldflags "-s -w -X $pkg/version.Version=v$BUILDX_VERSION -X $pkg/version.Package=$pkg" \
    -o "$out/docker-buildx.tmp" "$pkg/cmd/buildx"
  mv -f "$out/docker-buildx.tmp" "$out/docker-buildx"
}

T0=$SECONDS
if [ $FORCE = 0 ] && [ -x "$CACHE/bin/docker-buildx" ]; then log "docker-buildx v$BUILDX_VERSION: cached in $CACHE/bin"
else build; log "docker-buildx v$BUILDX_VERSION built in $((SECONDS - T0))s"; fi

mkdir -p "$PLUGIN_DIR"
if cmp -s "$CACHE/bin/docker-buildx" "$PLUGIN_DIR/docker-buildx"; then log "docker-buildx installed in $PLUGIN_DIR"
else
  cp -f "$CACHE/bin/docker-buildx" "$PLUGIN_DIR/docker-buildx.tmp"
  mv -f "$PLUGIN_DIR/docker-buildx.tmp" "$PLUGIN_DIR/docker-buildx"
  log "docker-buildx v$BUILDX_VERSION installed in $PLUGIN_DIR"
fi
if command -v docker >/dev/null 2>&1; then
  docker buildx version >/dev/null 2>&1 || die "the Docker CLI does not find the plugin in $PLUGIN_DIR"
  log "$(docker buildx version)"
fi
