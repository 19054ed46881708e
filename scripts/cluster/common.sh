# shellcheck shell=bash
# Shared settings for scripts/cluster/*.sh (sourced, not executed).
#
# Everything can be overridden from the environment:
#   K8S_VERSION        Kubernetes components built from Go modules (1.33.x: runs on cgroup v1)
#   ETCD_VERSION       etcd server (3.5.x)
#   COREDNS_VERSION    CoreDNS (cluster DNS, runs on the host); MOORAGE_CLUSTER_DNS=0 skips it
#   MOORAGE_K8S_CACHE  root of the binary cache (one sub-directory per component+version)
#   MOORAGE_CLUSTER_DIR state directory of the running cluster (certs, data, logs, pids)

K8S_VERSION=${K8S_VERSION:-1.33.4}
ETCD_VERSION=${ETCD_VERSION:-3.5.21}
COREDNS_VERSION=${COREDNS_VERSION:-1.12.1}

MOORAGE_K8S_CACHE=${MOORAGE_K8S_CACHE:-/var/cache/moorage}
KUBE_CACHE=$MOORAGE_K8S_CACHE/k8s-v$K8S_VERSION
ETCD_CACHE=$MOORAGE_K8S_CACHE/etcd-v$ETCD_VERSION
COREDNS_CACHE=$MOORAGE_K8S_CACHE/coredns-v$COREDNS_VERSION
KUBE_COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

CLUSTER_DIR=${MOORAGE_CLUSTER_DIR:-/var/lib/moorage-k8s}
CLUSTER_CONTEXT=${MOORAGE_CLUSTER_CONTEXT:-moorage-local}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The Go module proxy is reachable, the checksum database is not.
export GOSUMDB=${GOSUMDB:-off}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=${GOFLAGS:--buildvcs=false}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
