# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this file
# Shared settings for scripts/cluster/*.sh (sourced, not executed).
#
# Everything can be overridden from the environment:
#   K8S_VERSION        Kubernetes components built from Go modules (1.33.x: runs on cgroup v1)
#   ETCD_VERSION       etcd server (3.5.x)
#   COREDNS_VERSION    CoreDNS (cluster DNS, runs on the host); MOORAGE_CLUSTER_DNS=0 skips it
#   REGISTRY_VERSION   the CNCF distribution registry the registry tests push to and the cluster pulls from
#   MOORAGE_K8S_CACHE  root of the binary cache (one sub-directory per component+version)
#   MOORAGE_CLUSTER_DIR state directory of the running cluster (certs, data, logs, pids)

K8S_VERSION=${K8S_VERSION:-1.33.4}
ETCD_VERSION=${ETCD_VERSION:-3.5.21}
COREDNS_VERSION=${COREDNS_VERSION:-1.12.1}
REGISTRY_VERSION=${REGISTRY_VERSION:-3.1.2}

MOORAGE_K8S_CACHE=${MOORAGE_K8S_CACHE:-/var/cache/moorage}
KUBE_CACHE=$MOORAGE_K8S_CACHE/k8s-v$K8S_VERSION
ETCD_CACHE=$MOORAGE_K8S_CACHE/etcd-v$ETCD_VERSION
COREDNS_CACHE=$MOORAGE_K8S_CACHE/coredns-v$COREDNS_VERSION
REGISTRY_CACHE=$MOORAGE_K8S_CACHE/registry-v$REGISTRY_VERSION
KUBE_COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

CLUSTER_DIR=${MOORAGE_CLUSTER_DIR:-/var/lib/moorage-k8s}
CLUSTER_CONTEXT=${MOORAGE_CLUSTER_CONTEXT:-moorage-local}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The Go module proxy is reachable, the checksum database is not.
export GOSUMDB=${GOSUMDB:-off}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=${GOFLAGS:--buildvcs=false}
# The oldest Go that builds all of the above: the `go` line of k8s.io/kubernetes v1.33.4's go.mod is
# `go 1.24.0` (etcd v3.5.21 and CoreDNS v1.12.1 say 1.23.0). Raise it with K8S_VERSION.
GO_MIN=1.24

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

version_ge() { [ "$(printf '%s\n' "$1" "$2" | sort -V | head -n 1)" = "$2" ]; }   # version_ge A B: A >= B
go_version_of() { (cd / && "$1" version 2>/dev/null) | sed -n 's/^go version go\([0-9][0-9.]*\).*/\1/p'; }
# find_go: put a Go >= GO_MIN first on PATH: the one on PATH, /usr/local/go (the upstream layout),
# /usr/local/go-<version> (scripts/install-go.sh), Debian's /usr/lib/go-<version>; false if none
find_go() {
  local g v
  while read -r g; do
    if [ -z "$g" ] || [ ! -x "$g" ]; then continue; fi
    v=$(go_version_of "$g")
    if [ -n "$v" ] && version_ge "$v" "$GO_MIN"; then PATH=$(dirname "$g"):$PATH; export PATH; return 0; fi
  done < <(command -v go 2>/dev/null; echo /usr/local/go/bin/go
           printf '%s\n' /usr/local/go-*/bin/go /usr/lib/go-*/bin/go | sort -rV)
  return 1
}
