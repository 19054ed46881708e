#!/usr/bin/env bash
# Build (or reuse from the cache) nerdctl, containerd's docker-compatible CLI, from Go modules, and put it on
# PATH. Rancher Desktop and colima with the containerd runtime deliver images with
# `nerdctl --namespace k8s.io load`; the e2e tests run that path against the local cluster's containerd.
#
#   module   github.com/containerd/nerdctl/v2 vNERDCTL_VERSION (its go.mod says `go 1.23.5`: any Go >= GO_MIN builds it)
#   cache    $MOORAGE_K8S_CACHE/nerdctl-v$NERDCTL_VERSION/{src,bin} (default /var/cache/moorage, like build.sh)
#   install  a symlink $NERDCTL_BIN_DIR/nerdctl (default /usr/local/bin) to the cached binary
#
# Usage: scripts/install-nerdctl.sh [--force]
# Idempotent: a cached binary is reused; the scratch module is set up again unless its `go get` finished
# (stamp src/go-get.done). Go >= GO_MIN (scripts/cluster/common.sh) comes from scripts/install-go.sh.
#
# nerdctl's go.mod requires github.com/containerd/nerdctl/mod/tigron v0.0.0, its test framework, through a
# `replace => ./mod/tigron`: a nested module that is neither in nerdctl's module zip nor served by the module
# proxy. The binary links one thing of it, the interface tig.T (pkg/testutil/compose.go, reached through
# cmd/nerdctl/helpers): the scratch module replaces tigron with a stub that declares that interface
# (the methods compose.go calls; *testing.T has them), so nothing of the test framework is built in.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/cluster/common.sh"

NERDCTL_VERSION=${NERDCTL_VERSION:-2.1.3}
NERDCTL_CACHE=$MOORAGE_K8S_CACHE/nerdctl-v$NERDCTL_VERSION
NERDCTL_BIN_DIR=${NERDCTL_BIN_DIR:-/usr/local/bin}
MODULE=github.com/containerd/nerdctl/v2
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

link() {
  mkdir -p "$NERDCTL_BIN_DIR"
  ln -sfn "$NERDCTL_CACHE/bin/nerdctl" "$NERDCTL_BIN_DIR/nerdctl"
  log "nerdctl v$NERDCTL_VERSION: $NERDCTL_BIN_DIR/nerdctl -> $NERDCTL_CACHE/bin/nerdctl"
}

if [ $FORCE = 0 ] && [ -x "$NERDCTL_CACHE/bin/nerdctl" ]; then
  log "nerdctl v$NERDCTL_VERSION: cached in $NERDCTL_CACHE/bin"
  link
  exit 0
fi

find_go || die "no Go >= $GO_MIN (on PATH, /usr/local/go, /usr/local/go-*, /usr/lib/go-*): run scripts/install-go.sh"
log "using $(command -v go) (go$(go_version_of "$(command -v go)")) to build nerdctl v$NERDCTL_VERSION"
t0=$SECONDS
mkdir -p "$NERDCTL_CACHE/src" "$NERDCTL_CACHE/bin"
cd "$NERDCTL_CACHE/src"
if [ ! -f go-get.done ]; then
  rm -f go.mod go.sum go-get.done
  go mod init local/nerdctl-build >/dev/null 2>&1
  mkdir -p tigron/tig
  printf 'module github.com/containerd/nerdctl/mod/tigron\n\ngo 1.23\n' >tigron/go.mod
  cat >tigron/tig/tig.go <<'EOF_TIG'
// Package tig: the one type of nerdctl's unpublished test framework that the nerdctl binary links.
package tig

// T is the part of *testing.T that nerdctl's pkg/testutil uses.
type T interface {
	Helper()
	Log(args ...any)
	FailNow()
}
EOF_TIG
  go mod edit -replace github.com/containerd/nerdctl/mod/tigron=./tigron
  go get "$MODULE/cmd/nerdctl@v$NERDCTL_VERSION"
  echo "$MODULE@v$NERDCTL_VERSION" >go-get.done
fi
# static and with the version `nerdctl version` prints, as its Makefile builds it
CGO_ENABLED=0 nice -n "${BUILD_NICE:-19}" go build -trimpath \
  -ldflags "-s -w -X $MODULE/pkg/version.Version=v$NERDCTL_VERSION" \
  -o "$NERDCTL_CACHE/bin/nerdctl.tmp" "$MODULE/cmd/nerdctl"
mv -f "$NERDCTL_CACHE/bin/nerdctl.tmp" "$NERDCTL_CACHE/bin/nerdctl"
log "built nerdctl v$NERDCTL_VERSION in $((SECONDS - t0))s"
link
