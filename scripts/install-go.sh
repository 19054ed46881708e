#!/usr/bin/env bash
# Install a Go toolchain new enough for scripts/cluster/build.sh (GO_MIN in scripts/cluster/common.sh:
# the `go` line of the k8s.io/kubernetes go.mod it builds). Idempotent: nothing happens when such a Go
# is already on PATH, in /usr/local/go, /usr/local/go-<version> or Debian's /usr/lib/go-<version>.
#
#   1. Debian's golang-go when its candidate is new enough (Debian 13: 1.24 -> /usr/bin/go).
#   2. Otherwise (Debian 12: 1.19; bookworm-backports: 1.23, both too old) the toolchain archive from
#      the Go module proxy, golang.org/toolchain@v0.0.1-go$GO_TOOLCHAIN.linux-<arch>.zip (what
#      `GOTOOLCHAIN=go$GO_TOOLCHAIN` would download), checked against the sha256 below (the checksum
#      database is unreachable here), unpacked to $GO_PREFIX/go-$GO_TOOLCHAIN. build.sh finds it there
#      (find_go); add $GO_PREFIX/go-$GO_TOOLCHAIN/bin to PATH to use it by hand.
#
#   GO_SOURCE=auto|apt|proxy   force one of the two ways (default auto)
#   GO_PREFIX=/usr/local       where the proxy toolchain goes
#   GOPROXY_URL=https://proxy.golang.org
# To move to another Go release: set GO_TOOLCHAIN and the hashes (sha256sum of both .zip files).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/cluster/common.sh"

GO_TOOLCHAIN=1.24.13
declare -A GO_TOOLCHAIN_SHA256=(
  [amd64]=d2b048367a3d1a748b87f756fa06df12ce3b419e1d5f2a3612acb8950d615f9f
  [arm64]=50c7b3e59fa87479d8edf3e9ad81daa477c050fb580f2661cb3b8adaf70af86c
)
GO_SOURCE=${GO_SOURCE:-auto}
GO_PREFIX=${GO_PREFIX:-/usr/local}
GOPROXY_URL=${GOPROXY_URL:-https://proxy.golang.org}
tmp=""
trap 'rm -rf "$tmp"' EXIT

if [ "$GO_SOURCE" = auto ] && find_go; then
  log "Go $(go_version_of "$(command -v go)") at $(command -v go) (needs >= $GO_MIN)"
  exit 0
fi

from_apt() {
  local cand ver
  command -v apt-get >/dev/null || return 1
  cand=$(apt-cache policy golang-go 2>/dev/null | awk '/Candidate:/ {print $2}')   # e.g. 2:1.24~2
  ver=${cand#*:}; ver=${ver%%~*}
  if [ -z "$ver" ] || [ "$cand" = "(none)" ] || ! version_ge "$ver" "$GO_MIN"; then
    log "Debian's golang-go is ${cand:-not available} (needs >= $GO_MIN)"
    return 1
  fi
  log "installing golang-go $cand"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
}

from_proxy() {
  local arch sha name url dest=$GO_PREFIX/go-$GO_TOOLCHAIN
  arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
  case $arch in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
  sha=${GO_TOOLCHAIN_SHA256[$arch]:-}
  [ -n "$sha" ] || die "no pinned Go toolchain for $arch: install Go >= $GO_MIN by hand"
  for t in curl unzip sha256sum; do command -v $t >/dev/null || die "$t is needed to install Go"; done
  name=v0.0.1-go$GO_TOOLCHAIN.linux-$arch
  url=$GOPROXY_URL/golang.org/toolchain/@v/$name.zip
  tmp=$(mktemp -d)
  log "downloading $url"
  curl -fsSL --retry 3 -o "$tmp/go.zip" "$url"
  echo "$sha  $tmp/go.zip" | sha256sum -c --quiet - || die "checksum mismatch for $url"
  unzip -q "$tmp/go.zip" -d "$tmp/x"
  # module zips need not keep file modes: the binaries must be executable
  chmod -R a+rX "$tmp/x"
  chmod a+x "$tmp/x/golang.org/toolchain@$name/bin/"* "$tmp/x/golang.org/toolchain@$name/pkg/tool/"*/*
  mkdir -p "$GO_PREFIX"
  rm -rf "$dest.new"; mv "$tmp/x/golang.org/toolchain@$name" "$dest.new"
  rm -rf "$dest"; mv "$dest.new" "$dest"
  PATH=$dest/bin:$PATH
  log "installed Go $GO_TOOLCHAIN to $dest"
}

case $GO_SOURCE in
  auto) from_apt || from_proxy ;;
  apt) from_apt || die "golang-go from apt is not new enough" ;;
  proxy) from_proxy ;;
  *) die "GO_SOURCE must be auto, apt or proxy" ;;
esac
find_go || die "no Go >= $GO_MIN after the installation"
log "Go $(go_version_of "$(command -v go)") at $(command -v go)"
