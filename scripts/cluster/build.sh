#!/usr/bin/env bash
# Build (or reuse from the cache) the binaries of the local Kubernetes cluster:
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy  (k8s.io/kubernetes vK8S_VERSION)
#   etcd (go.etcd.io/etcd/server/v3 vETCD_VERSION), coredns (vCOREDNS_VERSION, unless MOORAGE_CLUSTER_DNS=0)
#   registry (github.com/distribution/distribution/v3 vREGISTRY_VERSION): the OCI registry of the tests
#   pause.tar: the pod sandbox image, from pause/pause.c (gcc -static), as a docker-archive
#
# Usage: scripts/cluster/build.sh [--force] [--only kube|etcd|coredns|registry|pause] [--from DIR]
#   --from DIR  seed the cache from binaries already built in DIR (same versions)
# Idempotent: a component whose binaries are all in the cache is not rebuilt. Each component's
# scratch module (CACHE/src) is set up again from `go mod init` unless its last `go get` finished
# (stamp CACHE/src/go-get.done), so an interrupted or failed `go get` does not stick.
# Go >= GO_MIN (common.sh) is needed only to build: scripts/install-go.sh installs it.
# Builds run under `nice -n 19` (shared 2-core machines). Timings are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

FORCE=0; ONLY=""; FROM=""
while [ $# -gt 0 ]; do
  case $1 in
    --force) FORCE=1 ;;
    --only) ONLY=$2; shift ;;
    --from) FROM=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
  shift
done
GO_STAMP=go-get.done
NICE="nice -n ${BUILD_NICE:-19}"
TIMINGS=()

need_go() {  # a Go >= GO_MIN first on PATH, or die
  find_go || die "no Go >= $GO_MIN (on PATH, /usr/local/go, /usr/local/go-*, /usr/lib/go-*): run scripts/install-go.sh"
  log "using $(command -v go) (go$(go_version_of "$(command -v go)"))"
}
new_module() {  # new_module NAME: an empty scratch module in the current directory
  rm -f go.mod go.sum "$GO_STAMP"
  go mod init "$1" >/dev/null 2>&1
}
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }
have_all() { local dir=$1; shift; for b in "$@"; do [ -x "$dir/$b" ] || return 1; done; }
seed() {  # seed DIR BIN...: copy prebuilt binaries from --from
  local dir=$1; shift
  [ -n "$FROM" ] && have_all "$FROM" "$@" || return 1
  mkdir -p "$dir"; for b in "$@"; do cp -f "$FROM/$b" "$dir/$b.tmp" && mv -f "$dir/$b.tmp" "$dir/$b"; done
  log "seeded $dir from $FROM: $*"
}
timed() {  # timed NAME CMD...
  local name=$1; shift; local t0=$SECONDS
  "$@"
  TIMINGS+=("$name: $((SECONDS - t0))s")
  log "$name done in $((SECONDS - t0))s"
}

build_kube() {
  local V=$K8S_VERSION M=${K8S_VERSION#1.} src=$KUBE_CACHE/src out=$KUBE_CACHE/bin
  need_go
  mkdir -p "$src" "$out"; cd "$src"
  if [ ! -f "$GO_STAMP" ]; then
    new_module local/kb
    go mod edit -godebug default=go1.24
    local GM; GM=$(go mod download -json "k8s.io/kubernetes@v$V" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
    # k8s.io/kubernetes pins its staging modules at v0.0.0 (kubernetes/kubernetes#79384)
    while read -r m; do go mod edit "-replace=$m=$m@v0.$M"; done < <(awk '/=> \.\/staging/{print $1}' "$GM")
    # shellcheck disable=SC2046  # one argument per component
    go get $(for c in $KUBE_COMPONENTS; do echo "k8s.io/kubernetes/cmd/$c@v$V"; done)
    echo "k8s.io/kubernetes@v$V" >"$GO_STAMP"
  fi
  local LD="-s -w" kv
  for kv in "gitVersion=v$V" gitMajor=1 "gitMinor=${M%%.*}" gitTreeState=clean; do
    LD="$LD -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  # one `go build` so that the components share compilation
  # shellcheck disable=SC2046  # one argument per component
  $NICE go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags "$LD" -o "$out/" \
    $(for c in $KUBE_COMPONENTS; do echo "k8s.io/kubernetes/cmd/$c"; done)
}

# build_go_binary CACHE MODULE VERSION PACKAGE BINARY (PACKAGE in MODULE at VERSION): a scratch module in CACHE/src, binary to CACHE/bin
build_go_binary() {
  local src=$1/src out=$1/bin
  need_go
  mkdir -p "$src" "$out"; cd "$src"
  if [ ! -f "$GO_STAMP" ]; then
    new_module "local/$5-build"
    go get "$4@v$3"   # the package, so that every module it imports is in go.sum
    echo "$4@v$3" >"$GO_STAMP"
  fi
  $NICE go build -trimpath -ldflags "-s -w" -o "$out/$5" "$4"
}

build_etcd() {
  build_go_binary "$ETCD_CACHE" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 etcd
}

build_coredns() {
  build_go_binary "$COREDNS_CACHE" github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns coredns
}

build_registry() {
  build_go_binary "$REGISTRY_CACHE" github.com/distribution/distribution/v3 "$REGISTRY_VERSION" \
    github.com/distribution/distribution/v3/cmd/registry registry
}

build_pause() {
  local out=$KUBE_CACHE/bin tmp
  command -v gcc >/dev/null || die "gcc is needed for the pause image (apt-get install gcc libc6-dev)"
  tmp=$(mktemp -d)
  gcc -Os -static -o "$tmp/pause" "$SCRIPT_DIR/pause/pause.c"
  strip "$tmp/pause"
  python3 "$SCRIPT_DIR/pause/make-image.py" "$tmp/pause" registry.k8s.io/pause:3.10 "$out/pause.tar.tmp"
  rm -rf "$tmp"
  mv -f "$out/pause.tar.tmp" "$out/pause.tar"
  cp -f "$SCRIPT_DIR/pause/pause.c" "$out/pause.c.built"
}

T0=$SECONDS
# shellcheck disable=SC2086  # $KUBE_COMPONENTS: one argument per component
if want kube; then
  if [ $FORCE = 0 ] && have_all "$KUBE_CACHE/bin" $KUBE_COMPONENTS; then log "kube v$K8S_VERSION: cached in $KUBE_CACHE/bin"
  elif [ $FORCE = 0 ] && seed "$KUBE_CACHE/bin" $KUBE_COMPONENTS; then :
  else log "building kube v$K8S_VERSION (cold: ~tens of minutes on 2 cores)"; timed "kube v$K8S_VERSION" build_kube; fi
fi
if want etcd; then
  if [ $FORCE = 0 ] && have_all "$ETCD_CACHE/bin" etcd; then log "etcd v$ETCD_VERSION: cached in $ETCD_CACHE/bin"
  elif [ $FORCE = 0 ] && seed "$ETCD_CACHE/bin" etcd; then :
  else log "building etcd v$ETCD_VERSION"; timed "etcd v$ETCD_VERSION" build_etcd; fi
fi
if want coredns && [ "${MOORAGE_CLUSTER_DNS:-1}" != 0 ]; then
  if [ $FORCE = 0 ] && have_all "$COREDNS_CACHE/bin" coredns; then log "coredns v$COREDNS_VERSION: cached in $COREDNS_CACHE/bin"
  elif [ $FORCE = 0 ] && seed "$COREDNS_CACHE/bin" coredns; then :
  else log "building coredns v$COREDNS_VERSION"; timed "coredns v$COREDNS_VERSION" build_coredns; fi
fi
if want registry; then
  if [ $FORCE = 0 ] && have_all "$REGISTRY_CACHE/bin" registry; then log "registry v$REGISTRY_VERSION: cached in $REGISTRY_CACHE/bin"
  elif [ $FORCE = 0 ] && seed "$REGISTRY_CACHE/bin" registry; then :
  else log "building registry v$REGISTRY_VERSION"; timed "registry v$REGISTRY_VERSION" build_registry; fi
fi
if want pause; then
  mkdir -p "$KUBE_CACHE/bin"
  if [ $FORCE = 0 ] && [ -f "$KUBE_CACHE/bin/pause.tar" ] && cmp -s "$SCRIPT_DIR/pause/pause.c" "$KUBE_CACHE/bin/pause.c.built"; then
    log "pause image: cached"
  else timed "pause image" build_pause; fi
fi
for t in "${TIMINGS[@]}"; do log "timing: $t"; done
log "build.sh finished in $((SECONDS - T0))s"
