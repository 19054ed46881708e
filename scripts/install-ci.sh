#!/usr/bin/env bash
# Installs and starts everything the test suite needs on a fresh Debian 12 or 13
# machine: Docker engine, PostgreSQL and Redis server binaries, Go (for the
# cluster build), Helm, the stand-in base images for builds without registry
# access, and the binaries of the local Kubernetes cluster the end-to-end tests
# run on (built from Go modules: ~18 min cold on 2 cores, seconds once cached in
# /var/cache/moorage). Idempotent: each step skips what is already present.
# Tests start their own PostgreSQL and Redis servers; this script only installs
# the packages (whatever PostgreSQL major the distribution ships: the server
# binaries are found by scripts/pg-bindir.sh, which scripts/test.sh uses too).
#
#   DOCKERD_PIDFILE   pid file of the dockerd this script starts (default /var/run/docker.pid,
#                     dockerd's own default); a dockerd found there is waited for, not started twice
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

log() { printf '==> %s\n' "$*"; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
"$here/pg-bindir.sh" >/dev/null || need_pkgs+=(postgresql)
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
# scripts/install-go.sh (the Go toolchain from the module proxy) and the cluster scripts
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v unzip >/dev/null 2>&1 || need_pkgs+=(unzip)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
else
  log "system packages present"
fi
pg_bin=$("$here/pg-bindir.sh") || { echo "no PostgreSQL server binaries after installing postgresql" >&2; exit 1; }
log "PostgreSQL server binaries: $pg_bin"

DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/var/run/docker.pid}
DOCKERD_LOG=/var/log/moorage/dockerd.log
dockerd_pid() {  # the pid in DOCKERD_PIDFILE, if that process is a live dockerd
  local pid
  pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}
if docker info >/dev/null 2>&1; then
  if pid=$(dockerd_pid); then log "Docker engine running (pid $pid, $DOCKERD_PIDFILE)"; else log "Docker engine running"; fi
else
  if pid=$(dockerd_pid); then
    log "dockerd (pid $pid, $DOCKERD_PIDFILE) is not answering yet: waiting for it"
  else
    log "starting dockerd (pid file $DOCKERD_PIDFILE, log $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")" "$(dirname "$DOCKERD_PIDFILE")"
    # own session: dockerd outlives this script and the CI job's process group
    setsid nohup dockerd --pidfile "$DOCKERD_PIDFILE" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    pid=$!
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    # dockerd writes its pid file early; a process that is gone will not answer
    if [ ! -d "/proc/$pid" ] && ! pid=$(dockerd_pid); then
      echo "dockerd exited; last lines of $DOCKERD_LOG:" >&2; tail -n 20 "$DOCKERD_LOG" >&2; exit 1
    fi
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start in 60 s; see $DOCKERD_LOG" >&2; exit 1; }
  log "Docker engine running (pid $(dockerd_pid || echo "$pid"), $DOCKERD_PIDFILE)"
fi

"$here/install-go.sh"
"$here/install-buildx.sh"
"$here/install-helm.sh"
"$here/base-images.sh"
"$here/data-images.sh"
"$here/cluster/build.sh"
"$here/junit-schema.sh" >/dev/null   # the JUnit XML schema `deploy --junit` reports are checked against
"$here/install-nerdctl.sh"   # the Rancher Desktop / colima containerd delivery path, tested on the local cluster
