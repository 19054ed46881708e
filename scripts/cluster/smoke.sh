#!/usr/bin/env bash
# Prove a running local cluster with kubectl: a pod from a locally imported
# docker image runs with a PVC (fsGroup applied, non-root), and logs, exec,
# port-forward, cluster DNS and a Service ClusterIP work.
#
# Usage: scripts/cluster/smoke.sh [IMAGE]   (default local/python:3.11-slim, from scripts/base-images.sh)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/common.sh"
IMAGE=${1:-${MOORAGE_PYTHON_IMAGE:-local/python:3.11-slim}}
eval "$("$HERE/local-cluster.sh" env)"
NS=moorage-smoke
k() { kubectl --context "$MOORAGE_CLUSTER_CONTEXT" -n "$NS" "$@"; }
T0=$SECONDS
t=$SECONDS; "$HERE/local-cluster.sh" load "$IMAGE"; log "image delivered in $((SECONDS - t))s"
kubectl --context "$MOORAGE_CLUSTER_CONTEXT" create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
trap 'kubectl --context "$MOORAGE_CLUSTER_CONTEXT" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001}
  containers:
  - name: web
    image: $IMAGE
    imagePullPolicy: Never
    command: ["python3", "-m", "http.server", "8000", "-d", "/data"]
    ports: [{containerPort: 8000}]
    readinessProbe: {tcpSocket: {port: 8000}, periodSeconds: 1}
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8000}]}
YAML
t=$SECONDS; k wait --for=condition=Ready pod/web --timeout=120s >/dev/null
log "pod Ready in $((SECONDS - t))s; PVC $(k get pvc data -o jsonpath='{.status.phase} ({.spec.volumeName})')"
log "exec: uid $(k exec web -- sh -c 'id -u; echo smoke-ok > /data/index.html')"
PORT=$((20000 + RANDOM % 10000))
k port-forward pod/web "$PORT:8000" >/dev/null 2>&1 &
PF=$!
OUT=""
for _ in $(seq 50); do OUT=$(curl -fsS "http://127.0.0.1:$PORT/index.html" 2>/dev/null) && break; sleep 0.2; done
kill "$PF" 2>/dev/null || true
[ "$OUT" = smoke-ok ] || die "port-forward: got '$OUT'"
log "port-forward: $OUT"
log "logs: $(k logs web | tail -n 1)"
for _ in $(seq 20); do  # the endpoint reaches kube-proxy a moment after Ready
  OUT=$(k exec web -- python3 -c "import socket, urllib.request; print(socket.gethostbyname('web.$NS.svc'), urllib.request.urlopen('http://web.$NS.svc/index.html', timeout=5).read().decode().strip())" 2>&1) && break
  sleep 0.5
done
log "DNS + Service: $OUT"
case $OUT in *smoke-ok) ;; *) die "service via DNS failed" ;; esac
log "smoke passed in $((SECONDS - T0))s"
