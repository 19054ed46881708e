#!/usr/bin/env bash
# Installs and starts everything the test suite needs on a fresh Debian 12
# machine: Docker engine, PostgreSQL and Redis server binaries, Helm, the
# stand-in base images for builds without registry access, and the binaries of
# the local Kubernetes cluster the end-to-end tests run on (built from Go
# modules: ~18 min cold on 2 cores, seconds once cached in /var/cache/moorage). Idempotent: each
# step skips what is already present. Tests start their own PostgreSQL and
# Redis servers; this script only installs the packages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

log() { printf '==> %s\n' "$*"; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_pkgs+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
command -v pg_dump >/dev/null 2>&1 || need_pkgs+=(postgresql-client)
python3 -m venv --help >/dev/null 2>&1 || need_pkgs+=(python3-venv)
# the local Kubernetes cluster of the end-to-end tests (scripts/cluster/)
command -v containerd >/dev/null 2>&1 || need_pkgs+=(containerd)
command -v runc >/dev/null 2>&1 || need_pkgs+=(runc)
[ -x /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
command -v conntrack >/dev/null 2>&1 || need_pkgs+=(conntrack)
command -v iptables >/dev/null 2>&1 || need_pkgs+=(iptables)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc libc6-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
else
  log "system packages present"
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log/moorage
  nohup dockerd >/var/log/moorage/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/moorage/dockerd.log" >&2; exit 1; }
else
  log "Docker engine running"
fi

"$here/install-helm.sh"
"$here/base-images.sh"
"$here/data-images.sh"
"$here/cluster/build.sh"
