#!/usr/bin/env bash
# A single-node upstream Kubernetes cluster on this host, for end-to-end tests.
#
# Usage: scripts/cluster/local-cluster.sh up|down|status|env|load IMAGE...
#   up           start (idempotent: components already running are kept) and wait for the node Ready
#   down         stop only the processes this script started (pid files in the state dir), clean the
#                pod network it created, undo its iptables/sysctl changes (only those: see "host
#                network" below), unmount kubelet mounts and remove the state dir
#   status       show each component and the node
#   env          print `export KUBECONFIG=... MOORAGE_CLUSTER_CONTEXT=...` for eval
#   load IMG...  deliver docker images to the node: docker save | ctr -n k8s.io images import
#   provision    the storage class's provisioner, run as a daemon by `up` (see "storage")
#   check        exit 0 if the binaries are built (else list what is missing, exit 3)
#
# Binaries come from scripts/cluster/build.sh (cache /var/cache/moorage, keyed by version).
# State: $MOORAGE_CLUSTER_DIR (default /var/lib/moorage-k8s): pki/, kubeconfig (context
# moorage-local), etcd/, containerd/ (certs.d/: registry hosts), kubelet/, logs/<component>.log, pids/<component>.pid.
# Needs root. The host quirks handled here are listed in scripts/cluster/README.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

D=$CLUSTER_DIR
P=$D/pki
KUBECONFIG_FILE=$D/kubeconfig
SOCK=$D/containerd/containerd.sock
KBIN=$KUBE_CACHE/bin
EBIN=$ETCD_CACHE/bin
CBIN=$COREDNS_CACHE/bin
SERVICE_CIDR=${MOORAGE_SERVICE_CIDR:-10.96.0.0/24}
SERVICE_IP1=${MOORAGE_SERVICE_IP1:-10.96.0.1}
POD_SUBNET=${MOORAGE_POD_SUBNET:-10.244.0.0/24}
CNI_NET=moorage-pod-network
CNI_BRIDGE=${MOORAGE_CNI_BRIDGE:-mcni0}
SELF=$(readlink -f "${BASH_SOURCE[0]}")
WAIT=${MOORAGE_CLUSTER_WAIT:-180}
NODE_NAME=$(hostname | tr '[:upper:]' '[:lower:]')
node_ip() { ip -4 route get 1 | awk '{for (i=1;i<NF;i++) if ($i=="src") {print $(i+1); exit}}'; }
kctl() { kubectl --kubeconfig "$KUBECONFIG_FILE" --context "$CLUSTER_CONTEXT" "$@"; }
ctr_() { ctr -a "$SOCK" -n k8s.io "$@"; }

# ---------------------------------------------------------------- processes
pid_of() {  # prints the pid if the component started by us is alive
  local f=$D/pids/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  # guard against pid reuse: the process must still be our binary
  tr "\0" " " <"/proc/$pid/cmdline" | grep -qF -- "$(cat "$D/pids/$1.bin" 2>/dev/null || echo "$1")" || return 1
  echo "$pid"
}
start() {  # start NAME BINARY ARGS...
  local name=$1 bin=$2; shift 2
  case $CHANGED in *" $name "*) log "$name: configuration changed, restarting"; stop "$name" ;; esac
  if pid=$(pid_of "$name"); then log "$name already running (pid $pid)"; return 0; fi
  [ -x "$bin" ] || die "$bin is missing: run scripts/cluster/build.sh"
  mkdir -p "$D/logs" "$D/pids"
  # setsid: own session, so the daemons outlive the caller's terminal/process group
  setsid "$bin" "$@" >>"$D/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$D/pids/$name.pid"
  echo "$bin" >"$D/pids/$name.bin"
  log "started $name (pid $!), log $D/logs/$name.log"
}
stop() {  # stop NAME [TIMEOUT]
  local name=$1 t=${2:-15} pid
  if pid=$(pid_of "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((t * 5))); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
    if [ -d "/proc/$pid" ]; then log "$name did not stop in ${t}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.3; fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$D/pids/$name.pid" "$D/pids/$name.bin"
}
wait_for() {  # wait_for DESCRIPTION SECONDS CMD...
  local what=$1 t=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { log "timed out after ${t}s waiting for $what"; return 1; }
    sleep 0.5
  done
}
tail_log() { log "last lines of $D/logs/$1.log:"; tail -n "${2:-25}" "$D/logs/$1.log" >&2 || true; }

# ---------------------------------------------------------------- certificates
# leaf NAME SUBJECT EXTENDED_KEY_USAGE [SAN NODE_IP COMPONENT]: a certificate signed by the cluster CA, made
# when missing; a server certificate whose SAN lacks NODE_IP is renewed and its running COMPONENT restarted
leaf() {
  local name=$1 subj=$2 eku=$3 san=${4:-} ip=${5:-} component=${6:-}
  if [ -f "$P/$name.crt" ] && [ -f "$P/$name.key" ]; then
    [ -z "$ip" ] && return 0
    openssl x509 -in "$P/$name.crt" -noout -ext subjectAltName 2>/dev/null | grep -qE "IP Address:$ip(,|\$)" && return 0
    log "the $name certificate lacks the node IP $ip: renewing it"
    CHANGED="$CHANGED$component "
  fi
  # shellcheck disable=SC2054  # the commas belong to openssl's values
  local ext=(-addext basicConstraints=critical,CA:FALSE -addext keyUsage=critical,digitalSignature,keyEncipherment
             -addext "extendedKeyUsage=$eku")
  [ -z "$san" ] || ext+=(-addext "subjectAltName=$san")
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/$name.key" -out "$P/$name.crt" -days 3650 \
    -CA "$P/ca.crt" -CAkey "$P/ca.key" -subj "$subj" "${ext[@]}" 2>/dev/null
  chmod 600 "$P/$name.key"
}
gen_pki() {
  local ip=$1
  mkdir -p "$P"; chmod 700 "$P"
  if [ ! -f "$P/ca.crt" ] || [ ! -f "$P/ca.key" ]; then
    log "generating certificates in $P"
    rm -f "$P"/*.crt "$P"/*.key   # certificates of another CA are of no use
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/ca.key" -out "$P/ca.crt" -days 3650 \
      -subj "/CN=moorage-local-ca" 2>/dev/null
  fi
  leaf apiserver /CN=kube-apiserver serverAuth \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:$NODE_NAME,IP:127.0.0.1,IP:$SERVICE_IP1,IP:$ip" \
    "$ip" kube-apiserver || die "cannot make the API server certificate"
  # one client identity for the components and for the tests
  leaf admin /O=system:masters/CN=moorage-admin clientAuth || die "cannot make the admin certificate"
  # the kubelet's serving certificate (the API server verifies it: --kubelet-certificate-authority)
  leaf kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$ip" "$ip" kubelet \
    || die "cannot make the kubelet certificate"
  # the API server's client identity towards the kubelet (logs, exec, port-forward): no group, only
  # the RBAC binding to system:kubelet-api-admin (kubelet_api_rbac)
  leaf apiserver-kubelet-client /CN=kube-apiserver-kubelet-client clientAuth \
    || die "cannot make the API server's kubelet client certificate"
  if [ ! -f "$P/sa.key" ] || [ ! -f "$P/sa.pub" ]; then
    openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
    openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
  fi
}
write_kubeconfig() {
  local b64="base64 -w0"
  cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_CONTEXT
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: $($b64 <"$P/ca.crt")
users:
- name: $CLUSTER_CONTEXT-admin
  user:
    client-certificate-data: $($b64 <"$P/admin.crt")
    client-key-data: $($b64 <"$P/admin.key")
contexts:
- name: $CLUSTER_CONTEXT
  context:
    cluster: $CLUSTER_CONTEXT
    user: $CLUSTER_CONTEXT-admin
current-context: $CLUSTER_CONTEXT
EOF
  chmod 600 "$KUBECONFIG_FILE.tmp"; mv -f "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

# ---------------------------------------------------------------- configs
CHANGED=" "
put() {  # put FILE COMPONENT: write stdin to FILE if it changed; a running COMPONENT is then restarted by start
  cat >"$1.new"
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else
    [ -f "$1" ] && CHANGED="$CHANGED$2 "
    mv -f "$1.new" "$1"
  fi
}
write_configs() {
  local ip=$1
  mkdir -p "$D/containerd/root" "$D/containerd/state" "$D/containerd/certs.d" "$D/cni/net.d" "$D/cni/ipam" "$D/kubelet" "$D/pod-logs" "$D/pv"
  # A containerd instance of our own (Docker runs its own containerd: nothing shared).
  put "$D/containerd/config.toml" containerd <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
oom_score = 0
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # root lacks CAP_SYS_RESOURCE: without this every sandbox fails
  # ("can't get final child's PID from pipe")
  restrict_oom_score_adj = true
  # pod network namespaces under our state dir, not /var/run/netns
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc state under our state dir, not the shared /run/containerd/runc
        Root = "$D/containerd/runc"
  # per-registry hosts.toml (CA, mirrors) under certs.d/<host:port>/, read at each pull: a test
  # registry adds its own there and removes it on teardown (containerd's hosts directory format)
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$D/containerd/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni/net.d"
    max_conf_num = 1
EOF
  put "$D/cni/net.d/10-moorage-bridge.conflist" containerd <<EOF
{"cniVersion":"1.0.0","name":"$CNI_NET","plugins":[
 {"type":"bridge","bridge":"$CNI_BRIDGE","isGateway":true,"ipMasq":true,"hairpinMode":true,
  "ipam":{"type":"host-local","dataDir":"$D/cni/ipam","ranges":[[{"subnet":"$POD_SUBNET"}]],"routes":[{"dst":"0.0.0.0/0"}]}},
 {"type":"portmap","capabilities":{"portMappings":true}},{"type":"loopback"}]}
EOF
  local dns=""
  [ "${MOORAGE_CLUSTER_DNS:-1}" != 0 ] && [ -x "$CBIN/coredns" ] && dns="clusterDNS: [\"$ip\"]"
  put "$D/kubelet.yaml" kubelet <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
oomScoreAdj: 0
# the kubelet API (exec, logs, port-forward) only on the node address, and only for callers the
# API server vouches for: the API server's client certificate (x509, signed by the cluster CA) or a
# bearer token (TokenReview); each request authorized by a SubjectAccessReview. No anonymous access.
address: $ip
port: 10250
tlsCertFile: "$P/kubelet.crt"
tlsPrivateKeyFile: "$P/kubelet.key"
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 2m}
  x509: {clientCAFile: "$P/ca.crt"}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 5m, cacheUnauthorizedTTL: 30s}
clusterDomain: cluster.local
$dns
resolvConf: /etc/resolv.conf
podLogsDir: "$D/pod-logs"
# images are imported, never pulled: image GC must not remove them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
maxPods: 110
rotateCertificates: false
serverTLSBootstrap: false
EOF
  put "$D/kube-proxy.yaml" kube-proxy <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$KUBECONFIG_FILE"}
mode: iptables
clusterCIDR: 10.244.0.0/16
hostnameOverride: $NODE_NAME
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
# do not set net.ipv4.conf.all.route_localnet on a shared host
iptables: {localhostNodePorts: false}
nodePortAddresses: [primary]
EOF
  put "$D/Corefile" coredns <<EOF
.:53 {
    bind $ip
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_FILE $CLUSTER_CONTEXT
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
    loop
}
EOF
}

# storage: the default StorageClass `local` is provisioned dynamically by `provision` below (a daemon
# `up` starts, like a kind or k3d cluster's local-path provisioner): a Pending claim of the class gets a
# `local` PV of its size under $D/pv/ (local volumes, unlike hostPath, get fsGroup ownership applied by
# the kubelet), bound to it through claimRef; a Released one is wiped and deleted (reclaimPolicy Delete)
PROVISIONER=moorage.dev/local-path
storage_manifest() {
  cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: $PROVISIONER
volumeBindingMode: Immediate
reclaimPolicy: Delete
EOF
}
pv_manifest() {  # pv_manifest NAME NAMESPACE CLAIM UID SIZE ACCESS_MODES_JSON
  cat <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $1
  annotations: {pv.kubernetes.io/provisioned-by: $PROVISIONER}
spec:
  capacity: {storage: $5}
  accessModes: $6
  persistentVolumeReclaimPolicy: Delete
  storageClassName: local
  volumeMode: Filesystem
  claimRef: {apiVersion: v1, kind: PersistentVolumeClaim, namespace: $2, name: $3, uid: $4}
  local: {path: "$D/pv/$1"}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: ["$NODE_NAME"]}
EOF
}
provision_pass() {  # one reconcile: a volume for each unprovisioned claim of the class, none for released ones
  local known ns claim uid class size modes mode volume selector name
  known=$(kctl get pv -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}') || return 1
  while IFS=$'\t' read -r ns claim uid class size modes mode volume selector; do
    name=pvc-$uid
    # a claim naming a volume or carrying a selector binds statically, as with any dynamic provisioner
    [ "$class" = local ] && [ -z "$volume" ] && [ -z "$selector" ] && [ "${mode:-Filesystem}" = Filesystem ] || continue
    grep -qxF "$name" <<<"$known" && continue
    mkdir -p "$D/pv/$name" && chmod 0777 "$D/pv/$name"
    pv_manifest "$name" "$ns" "$claim" "$uid" "$size" "$modes" | kctl create -f - >/dev/null \
      && log "provisioned $name ($size) for $ns/$claim"
  done < <(kctl get pvc -A -o jsonpath='{range .items[?(@.status.phase=="Pending")]}{.metadata.namespace}{"\t"}{.metadata.name}{"\t"}{.metadata.uid}{"\t"}{.spec.storageClassName}{"\t"}{.spec.resources.requests.storage}{"\t"}{.spec.accessModes}{"\t"}{.spec.volumeMode}{"\t"}{.spec.volumeName}{"\t"}{.spec.selector}{"\n"}{end}')
  while read -r name; do
    case $name in pvc-*) ;; *) continue ;; esac
    rm -rf --one-file-system "${D:?}/pv/$name"
    kctl delete pv "$name" --wait=false >/dev/null && log "deleted released $name"
  done < <(kctl get pv -o jsonpath='{range .items[?(@.spec.persistentVolumeReclaimPolicy=="Delete")]}{.metadata.annotations.pv\.kubernetes\.io/provisioned-by}{" "}{.status.phase}{" "}{.metadata.name}{"\n"}{end}' \
    | awk -v p="$PROVISIONER" '$1 == p && ($2 == "Released" || $2 == "Failed") {print $3}')
}
cmd_provision() {  # the daemon: a reconcile after each burst of changes to claims or volumes
  trap 'trap - TERM INT; kill 0 2>/dev/null; exit 0' TERM INT   # (its own process group: setsid)
  local _
  while :; do
    # a watch's first lines are the objects that exist; a watch that ends (API server restarted) is made again
    { kctl get pvc -A --watch -o name & kctl get pv --watch -o name & wait; } 2>/dev/null | while read -r _; do
      while read -r -t 0.3 _; do :; done
      provision_pass || log "provisioner: the API server did not answer"
    done &
    wait $!   # (in the background: bash runs the trap only between commands, and `wait` is one)
    sleep 1 & wait $!
  done
}

kubelet_api_rbac() {  # the API server's kubelet client identity may use the whole kubelet API, nothing else
  cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "moorage:kube-apiserver-kubelet-client"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
EOF
}

# ---------------------------------------------------------------- host network
# What `up` changes in the host's network and `down` undoes, nothing more:
#  - FORWARD: two ACCEPT rules for the pod network (dockerd sets the policy to DROP, which blocks pod
#    traffic over the CNI bridge), with the comment $FWD_TAG; the policy itself is left alone
#  - net.ipv4.ip_forward=1 (set back to 0 by `down` if it was 0)
#  - the chains of the kubelet, kube-proxy and the CNI plugins: the chains that exist before the first
#    `up` are recorded in $D/host/; `down` runs `kube-proxy --cleanup`, then removes only the KUBE-* and
#    CNI-* chains that were not there before (a CNI chain that another CNI network uses is kept), the
#    rules that jump to them, and the rules carrying the comments of this cluster (FORWARD above; the
#    CNI plugins' `name: "$CNI_NET" ...`)
FWD_TAG=$CLUSTER_CONTEXT:pod-network
ipt_families() {  # the iptables families usable on this host
  local f
  for f in iptables ip6tables; do
    command -v "$f-save" >/dev/null && command -v "$f-restore" >/dev/null && "$f-save" -t filter >/dev/null 2>&1 && echo "$f"
  done
}
host_network_up() {
  local fam spec
  mkdir -p "$D/host"
  # once per cluster (the first `up`): what is there before the cluster adds anything
  for fam in $(ipt_families); do
    [ -f "$D/host/$fam.chains" ] && continue
    "$fam-save" | awk '/^\*/ {t = substr($1, 2)} /^:/ {print t, substr($1, 2)}' >"$D/host/$fam.chains.tmp"
    mv -f "$D/host/$fam.chains.tmp" "$D/host/$fam.chains"
  done
  [ -f "$D/host/ip_forward" ] || cat /proc/sys/net/ipv4/ip_forward >"$D/host/ip_forward"
  sysctl -qw net.ipv4.ip_forward=1 || die "cannot enable net.ipv4.ip_forward"
  for spec in "-i $CNI_BRIDGE -s $POD_SUBNET" "-o $CNI_BRIDGE -d $POD_SUBNET"; do
    # shellcheck disable=SC2086  # $spec: several words
    iptables -w -C FORWARD $spec -m comment --comment "$FWD_TAG" -j ACCEPT 2>/dev/null \
      || iptables -w -I FORWARD 1 $spec -m comment --comment "$FWD_TAG" -j ACCEPT \
      || die "cannot add the FORWARD rules for the pod network"
  done
}
# awk over `iptables-save -t TABLE`: prints an iptables-restore --noflush script that deletes the
# cluster's rules and chains (see above), or nothing. iptables-restore parses iptables-save's own
# quoting, so no rule text ever goes through the shell.
# shellcheck disable=SC2016  # an awk program
UNDO_AWK='
function tagged(r,  t) {  # iptables-nft-save quotes every comment, iptables-legacy-save only those with spaces
  t = ENVIRON["UNDO_FWD_TAG"]
  return index(r, "--comment " t " ") || index(r, "--comment \"" t "\" ") || index(r, ENVIRON["UNDO_CNI_TAG"])
}
function foreign(r) { return index(r, "name: \\\"") && !index(r, ENVIRON["UNDO_CNI_TAG"]) }  # another CNI network
function target(r) { return match(r, / -[jg] [^ ]+/) ? substr(r, RSTART + 4, RLENGTH - 4) : "" }
BEGIN { if (recorded) while ((getline line < known) > 0) { split(line, f, " "); if (f[1] == table) before[f[2]] = 1 } }
/^:/ { chains[++nc] = substr($1, 2); next }
/^-A / { n[$2]++; rule[$2, n[$2]] = $0 }
END {
  if (recorded) {
    # chains another CNI network uses: those holding its rules, and all reached from them
    for (i = 1; i <= nc; i++) {
      c = chains[i]
      for (j = 1; j <= n[c]; j++) if (foreign(rule[c, j])) { shared[c] = 1; t = target(rule[c, j]); if (t != "") reach[t] = 1 }
    }
    do {
      more = 0
      for (i = 1; i <= nc; i++) {
        c = chains[i]
        if (!(c in reach)) continue
        for (j = 1; j <= n[c]; j++) { t = target(rule[c, j]); if (t != "" && !(t in reach)) { reach[t] = 1; more = 1 } }
      }
    } while (more)
    for (c in reach) shared[c] = 1
    for (c in shared) if (c ~ /^CNI-HOSTPORT-/) hostport_shared = 1   # the portmap plugin shares these three
    # the chains to remove: KUBE-* and CNI-* chains made since the first `up`, unless shared
    for (i = 1; i <= nc; i++) {
      c = chains[i]
      if (c in before) continue
      if (c ~ /^KUBE-/ || (c ~ /^CNI-/ && !(c in shared) && !(hostport_shared && c ~ /^CNI-HOSTPORT-/))) drop[c] = 1
    }
  }
  out = ""
  for (i = 1; i <= nc; i++) {
    c = chains[i]
    if (c in drop) continue
    for (j = 1; j <= n[c]; j++) {
      r = rule[c, j]; t = target(r)
      if (tagged(r) || (t in drop)) { sub(/^-A /, "-D ", r); out = out r "\n" }
    }
  }
  for (c in drop) out = out "-F " c "\n"
  for (c in drop) out = out "-X " c "\n"
  if (out != "") printf "*%s\n%sCOMMIT\n", table, out
}'
undo_iptables() {  # undo_iptables FAMILY: remove what the cluster added (without a record: tagged rules only)
  local fam=$1 known=$D/host/$1.chains recorded=0 table script
  [ -f "$known" ] && recorded=1   # (an empty record is a record: the family had no chains at all)
  for table in filter nat mangle; do
    script=$("$fam-save" -t "$table" 2>/dev/null | UNDO_FWD_TAG=$FWD_TAG UNDO_CNI_TAG="name: \\\"$CNI_NET\\\"" \
      awk -v table="$table" -v known="$known" -v recorded=$recorded "$UNDO_AWK") || continue
    [ -n "$script" ] || continue
    if printf '%s\n' "$script" | "$fam-restore" -w --noflush; then
      log "$fam $table: removed $(grep -c '^-[DX] ' <<<"$script") rules/chains of the cluster"
    else
      log "WARNING: $fam-restore could not remove the cluster's $table rules; the script was:"
      printf '%s\n' "$script" >&2
    fi
  done
}
host_network_down() {
  local fam
  # kube-proxy's own rules and chains (both families)
  if [ -x "$KBIN/kube-proxy" ]; then "$KBIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  for fam in $(ipt_families); do undo_iptables "$fam"; done
  if [ "$(cat "$D/host/ip_forward" 2>/dev/null)" = 0 ]; then
    sysctl -qw net.ipv4.ip_forward=0 && log "net.ipv4.ip_forward set back to 0"
  fi
}

# ---------------------------------------------------------------- up
node_ready() {
  [ "$(kctl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
cmd_up() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  local t0=$SECONDS ip; ip=$(node_ip)
  [ -n "$ip" ] || die "cannot determine the node IP"
  for b in $KUBE_COMPONENTS; do [ -x "$KBIN/$b" ] || die "$KBIN/$b missing: run scripts/cluster/build.sh"; done
  [ -x "$EBIN/etcd" ] || die "$EBIN/etcd missing: run scripts/cluster/build.sh"
  [ -f "$KBIN/pause.tar" ] || die "$KBIN/pause.tar missing: run scripts/cluster/build.sh --only pause"
  for t in containerd runc ctr kubectl openssl iptables; do command -v $t >/dev/null || die "$t is not installed"; done
  [ -x /usr/lib/cni/bridge ] || die "CNI plugins missing: apt-get install containernetworking-plugins"
  mkdir -p "$D"; echo "$ip" >"$D/node-ip"
  log "state dir $D, node $NODE_NAME ($ip), k8s v$K8S_VERSION"

  # host quirks (scripts/cluster/README.md)
  mount --make-rshared /
  host_network_up

  gen_pki "$ip"
  write_kubeconfig
  write_configs "$ip"

  start etcd "$EBIN/etcd" --name moorage-local --data-dir "$D/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster moorage-local=http://127.0.0.1:2380 \
    --quota-backend-bytes 2147483648 --snapshot-count 10000 --log-level warn
  wait_for etcd 30 curl -fsS http://127.0.0.1:2379/health || { tail_log etcd; die "etcd did not start"; }

  # towards the kubelet: its own client certificate (RBAC: system:kubelet-api-admin), the kubelet's
  # serving certificate checked against the cluster CA, at the node IP (the hostname may be 127.0.0.1)
  # shellcheck disable=SC2054  # --flag value pairs, no commas meant as separators
  local api_args=(--etcd-servers http://127.0.0.1:2379
    --advertise-address "$ip" --bind-address 0.0.0.0 --secure-port 6443
    --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" --client-ca-file "$P/ca.crt"
    --kubelet-client-certificate "$P/apiserver-kubelet-client.crt" --kubelet-client-key "$P/apiserver-kubelet-client.key"
    --kubelet-certificate-authority "$P/ca.crt" --kubelet-preferred-address-types InternalIP
    --service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key"
    --service-account-issuer https://kubernetes.default.svc.cluster.local
    --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC --allow-privileged=true
    --enable-priority-and-fairness=false --profiling=false -v=1)
  put "$D/kube-apiserver.args" kube-apiserver <<<"${api_args[*]}"   # changed flags: restart it
  start kube-apiserver "$KBIN/kube-apiserver" "${api_args[@]}"
  wait_for "kube-apiserver /readyz" 90 curl -fsS --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" \
    https://127.0.0.1:6443/readyz || { tail_log kube-apiserver; die "kube-apiserver did not become ready"; }
  log "kube-apiserver ready after $((SECONDS - t0))s"
  kubelet_api_rbac | kctl apply -f - >/dev/null || die "cannot grant the API server access to the kubelet API"

  start kube-controller-manager "$KBIN/kube-controller-manager" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" \
    --cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" \
    --use-service-account-credentials --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false --bind-address 127.0.0.1 --profiling=false -v=1
  start kube-scheduler "$KBIN/kube-scheduler" --kubeconfig "$KUBECONFIG_FILE" \
    --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --leader-elect=false --bind-address 127.0.0.1 --profiling=false -v=1

  start containerd "$(command -v containerd)" --config "$D/containerd/config.toml"
  wait_for "containerd socket" 30 ctr -a "$SOCK" version || { tail_log containerd; die "containerd did not start"; }
  if ! ctr_ images ls -q | grep -qx registry.k8s.io/pause:3.10; then
    ctr_ images import "$KBIN/pause.tar" >/dev/null
    log "imported the pause image"
  fi

  start kubelet "$KBIN/kubelet" --config "$D/kubelet.yaml" --kubeconfig "$KUBECONFIG_FILE" \
    --root-dir "$D/kubelet" --node-ip "$ip" --hostname-override "$NODE_NAME" \
    --pod-infra-container-image registry.k8s.io/pause:3.10 -v=1
  start kube-proxy "$KBIN/kube-proxy" --config "$D/kube-proxy.yaml" -v=1
  if [ "${MOORAGE_CLUSTER_DNS:-1}" != 0 ] && [ -x "$CBIN/coredns" ]; then
    start coredns "$CBIN/coredns" -conf "$D/Corefile"
  else
    log "CoreDNS not built (or MOORAGE_CLUSTER_DNS=0): no cluster DNS"
  fi

  if ! wait_for "node $NODE_NAME Ready" "$WAIT" node_ready; then
    tail_log kubelet 40; kctl describe node "$NODE_NAME" >&2 || true
    die "node did not become Ready"
  fi
  wait_for "default service account" 60 kctl -n default get serviceaccount default || die "no default service account"
  # the provisioner field is immutable: the class of an older cluster is replaced
  if [ "$(kctl get storageclass local -o jsonpath='{.provisioner}' 2>/dev/null)" != "$PROVISIONER" ]; then
    kctl delete storageclass local --ignore-not-found >/dev/null
  fi
  storage_manifest | kctl apply -f - >/dev/null || die "cannot create the storage class"
  start pv-provisioner "$SELF" provision
  log "cluster up: node $NODE_NAME Ready, started in $((SECONDS - t0))s"
  echo "$((SECONDS - t0))" >"$D/start-seconds"
  cmd_env
}

# ---------------------------------------------------------------- down
container_netns() {  # network namespace paths of our CRI sandboxes
  local id
  for id in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ containers info "$id" 2>/dev/null | python3 -c '
import json, sys
try:
    spec = json.load(sys.stdin).get("Spec") or {}
except ValueError:
    sys.exit(0)
for ns in (spec.get("linux") or {}).get("namespaces") or []:
    if ns.get("type") == "network" and ns.get("path"):
        print(ns["path"])' || true
  done | sort -u
}
cmd_down() {
  if [ ! -d "$D" ]; then
    log "no cluster state in $D: only rules tagged as this cluster's are removed"
    local fam; for fam in $(ipt_families); do undo_iptables "$fam"; done
    return 0
  fi
  local t0=$SECONDS
  # 1. no more scheduling or replacing; let the kubelet stop pods (CNI DEL cleans their network)
  stop pv-provisioner; stop kube-controller-manager; stop kube-scheduler
  if pid_of kube-apiserver >/dev/null && pid_of kubelet >/dev/null; then
    kctl delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    for _ in $(seq 60); do
      [ -z "$(ctr_ tasks ls -q 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  stop kube-proxy; stop coredns; stop kubelet
  # 2. anything still running in our containerd: kill it, remember its netns
  local netns=""
  if pid_of containerd >/dev/null; then
    netns=$(container_netns)
    local task
    for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true; done
    sleep 1
    for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$task" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  # shims of *our* containerd only (their command line names our socket)
  local pid
  for pid in $(pgrep -f -- "-address $SOCK( |\$)" 2>/dev/null || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  stop kube-apiserver; stop etcd
  # 3. network left by pods the kubelet did not tear down, then the iptables rules of the cluster
  local n
  for n in $netns; do
    case $n in /var/run/netns/*|/run/netns/*) umount "$n" 2>/dev/null || true; rm -f "$n" ;; esac
  done
  ip link del "$CNI_BRIDGE" 2>/dev/null || true
  host_network_down
  rm -f /var/lib/cni/results/"$CNI_NET"-* 2>/dev/null || true
  # 4. mounts under the state dir (kubelet volumes, containerd overlays, netns), deepest first
  local m
  for _ in 1 2 3; do
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$D" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
  done
  if awk -v d="$D" 'index($5, d "/") == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
    log "WARNING: mounts remain under $D; not removing it"; return 1
  fi
  # symlinks the kubelet made in /var/log/containers into our pod logs
  find /var/log/containers -maxdepth 1 -type l -lname "$D/*" -delete 2>/dev/null || true
  # empty pod cgroups left behind (cgroupfs driver)
  local c
  for c in /sys/fs/cgroup/*/kubepods; do
    if [ -d "$c" ]; then find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi
  done
  rm -rf "$D"
  log "cluster down in $((SECONDS - t0))s; removed $D"
}
# ---------------------------------------------------------------- status / env / load
cmd_status() {
  local c pid rc=0
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns pv-provisioner; do
    if pid=$(pid_of "$c"); then printf '%-24s running (pid %s)\n' "$c" "$pid"
    else printf '%-24s not running\n' "$c"; [ "$c" = coredns ] || rc=1; fi
  done
  if [ -f "$KUBECONFIG_FILE" ]; then kctl get nodes -o wide 2>&1 || rc=1; fi
  return $rc
}
cmd_env() {
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  echo "export MOORAGE_CLUSTER_CONTEXT=$CLUSTER_CONTEXT"
  echo "export MOORAGE_CONTAINERD_ADDRESS=$SOCK"
  echo "export CONTAINERD_ADDRESS=$SOCK   # ctr reads it: plain \`ctr -n k8s.io ...\` talks to this node"
}
cmd_load() {  # like `kind load docker-image`: only images the node lacks (same tag and id)
  [ $# -gt 0 ] || die "usage: local-cluster.sh load IMAGE..."
  pid_of containerd >/dev/null || die "the cluster's containerd is not running"
  local img id refs
  refs=$(ctr_ images ls -q)
  for img in "$@"; do
    id=$(docker image inspect -f '{{.Id}}' "$img") || die "no docker image $img"
    if grep -qxF "$id" <<<"$refs" && ctr_ images ls -q "name==$(ref_name "$img")" | grep -q .; then
      log "$img already on the node"; continue
    fi
    docker save "$img" | ctr_ images import - >/dev/null
    log "loaded $img into the node"
  done
}
ref_name() {  # docker short name -> containerd reference (docker.io/library/x:tag)
  local r=$1
  case $r in *:*) ;; *) r=$r:latest ;; esac
  case ${r%%/*} in *.*|*:*|localhost) echo "$r" ;; *) case $r in */*) echo "docker.io/$r" ;; *) echo "docker.io/library/$r" ;; esac ;; esac
}
cmd_check() {  # exit 0 when every binary up needs is built, else list what is missing (exit 3)
  local missing=() b
  for b in $KUBE_COMPONENTS pause.tar; do [ -e "$KBIN/$b" ] || missing+=("$KBIN/$b"); done
  [ -x "$EBIN/etcd" ] || missing+=("$EBIN/etcd")
  for b in containerd runc ctr kubectl openssl iptables; do command -v $b >/dev/null || missing+=("$b (apt)"); done
  [ -x /usr/lib/cni/bridge ] || missing+=("/usr/lib/cni/bridge (apt containernetworking-plugins)")
  if [ ${#missing[@]} -gt 0 ]; then printf 'missing: %s\n' "${missing[@]}"; return 3; fi
  echo "ok: k8s v$K8S_VERSION, etcd v$ETCD_VERSION$([ -x "$CBIN/coredns" ] && echo ", coredns v$COREDNS_VERSION")"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  load) shift; cmd_load "$@" ;;
  provision) cmd_provision ;;
  check) cmd_check ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
