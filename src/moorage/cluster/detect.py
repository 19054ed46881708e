"""Detecting the cluster: read its nodes through the API, look at this host, compare with the build engine.

The decisions are :mod:`.nodes`' pure functions; this module gathers their
inputs (the Node objects, whether an address is this host's, which containerd
socket holds the node's images, what the Docker engine holds) and joins them
with the environment's ``cluster:`` setting, which always wins.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

from .. import kube
from ..core import proc
from ..core.config import Environment
from ..core.errors import MoorageError, UserError
from .nodes import (
    Detection,
    EngineFacts,
    NodeFacts,
    identify,
    kind_from_context,
    local_node,
    pick_socket,
    shares_engine,
)
from .target import ClusterTarget

NODE_TIMEOUT = 5.0
#: containerd sockets a kubelet on this host may use, after $MOORAGE_CONTAINERD_ADDRESS and $CONTAINERD_ADDRESS:
#: the project's local cluster (scripts/cluster/), k3s, and the system containerd (kubeadm)
CONTAINERD_SOCKETS = ("{cluster_dir}/containerd/containerd.sock", "/run/k3s/containerd/containerd.sock",
                      "/run/containerd/containerd.sock")


def current_context(env: Environment | None) -> str | None:
    """The kube context an environment deploys to: its ``context:``, else kubeconfig's current one."""
    if env is not None and env.context:
        return env.context
    try:
        return kube.current_context()
    except UserError:
        return None  # no kubeconfig: images can still be built into the local engine


def cluster_kind(context: str | None, configured: str = "auto") -> str:
    """The kind from the configuration, else the one the context's name suggests (no cluster call)."""
    return configured if configured and configured != "auto" else kind_from_context(context).kind


def cluster_for(context: str | None, configured: str = "auto") -> ClusterTarget:
    """The cluster as the configuration and the context's name describe it (no cluster call)."""
    guess = kind_from_context(context)
    if configured and configured != "auto":
        return ClusterTarget(configured, _name_for(configured, context, guess), context,
                             reason=f"cluster: {configured} in the configuration")
    return ClusterTarget(guess.kind, guess.name, context, reason=guess.reason)


def _name_for(kind: str, context: str | None, guess: Detection) -> str:
    if guess.kind == kind:
        return guess.name
    return context or {"minikube": "minikube", "kind": "kind", "k3d": "k3s-default", "colima": "default"}.get(kind, "")


def read_nodes(context: str | None) -> tuple[list[NodeFacts], str]:
    """The cluster's nodes, or none and the reason they could not be read (unreachable, forbidden, ...)."""
    if not context:
        return [], "no kube context"
    from kubernetes.client import CoreV1Api

    try:
        api = kube.client(context, check=False)
    except MoorageError as exc:
        return [], exc.message
    try:
        response = CoreV1Api(api).list_node(_preload_content=False, _request_timeout=(NODE_TIMEOUT, NODE_TIMEOUT))
        items = kube.read_json(response).get("items") or []
    except Exception as exc:  # noqa: BLE001 - any client failure only means the nodes are not known
        return [], kube.api_error(api, exc, "list nodes").message
    return [NodeFacts.from_object(item) for item in items], ""


def is_local_address(ip: str) -> bool:
    """True when ``ip`` is an address of this host (a socket can be bound to it)."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


def containerd_sockets(environ: dict[str, str] | None = None) -> list[str]:
    """Candidate containerd sockets on this host, the ones the environment names first; existing ones only."""
    environ = os.environ if environ is None else environ
    cluster_dir = environ.get("MOORAGE_CLUSTER_DIR") or "/var/lib/moorage-k8s"
    named = [environ.get("MOORAGE_CONTAINERD_ADDRESS", ""), environ.get("CONTAINERD_ADDRESS", "")]
    found = []
    for path in [*named, *(p.format(cluster_dir=cluster_dir) for p in CONTAINERD_SOCKETS)]:
        path = path.removeprefix("unix://")
        if path and path not in found and os.path.exists(path):
            found.append(path)
    return found


def socket_images(sockets: Sequence[str], *, run=None) -> dict[str, list[str] | None]:
    """The ``k8s.io`` image references of each containerd socket (None: not readable)."""
    run = run or proc.run
    out: dict[str, list[str] | None] = {}
    for socket in sockets:
        try:
            result = run(["ctr", "--address", socket, "-n", "k8s.io", "images", "ls", "-q"], timeout=20, check=False,
                         what="ctr images ls")
        except MoorageError:  # ctr is not installed
            return out
        out[socket] = result.stdout.split() if result.returncode == 0 else None
    return out


def detect_cluster(context: str | None, configured: str = "auto", *, nodes: Sequence[NodeFacts] | None = None,
                   is_local: Callable[[str], bool] = is_local_address, run=None) -> ClusterTarget:
    """What the cluster of ``context`` is, told from its nodes; the configuration's ``cluster:`` wins.

    Order: a distribution's marks on the nodes (:func:`.nodes.identify`); a
    single node that is this host running containerd (``containerd-local``,
    with the socket that holds the node's images); otherwise ``remote`` (a
    node on the build engine turns it into ``local-engine`` later, see
    :func:`adopt_engine`). When the nodes cannot be read, the context's name.
    """
    if configured == "remote":
        return ClusterTarget("remote", context or "", context, reason="cluster: remote in the configuration")
    why_not = ""
    if nodes is None:
        nodes, why_not = read_nodes(context)
    nodes = list(nodes)
    if not nodes:
        guess = kind_from_context(context)
        found = replace(guess, reason=f"{guess.reason} (nodes not read: {why_not or 'none listed'})")
        address = ""
    else:
        found, address = _from_nodes(nodes, context, is_local, run)
    kind, name = found.kind, found.name
    reason = found.reason
    if configured and configured != "auto":
        if configured != found.kind:
            name = _name_for(configured, context, kind_from_context(context))
            reason = f"cluster: {configured} in the configuration (detected {found.kind}: {found.reason})"
        else:
            reason = f"cluster: {configured} in the configuration, as detected: {found.reason}"
        kind = configured
        if kind == "containerd-local" and not address and nodes:
            address = _socket_for(nodes[0], run)
    return ClusterTarget(kind, name, context, found.runtime, address, reason, tuple(nodes))


def _from_nodes(nodes: list[NodeFacts], context: str | None, is_local, run) -> tuple[Detection, str]:
    found = identify(nodes)
    if found is not None:
        return found, ""
    here = local_node(nodes, is_local)
    if here is not None and here.runtime != "docker":
        address = _socket_for(here, run)
        ips = ", ".join(ip for ip in here.internal_ips() if is_local(ip))
        where = f", socket {address}" if address else ", socket not found (set CONTAINERD_ADDRESS)"
        return Detection("containerd-local", context or here.name, here.runtime,
                         f"node {here.name} is this host ({ips}) running {here.runtime or 'a CRI runtime'}{where}"), address
    node = nodes[0]
    marks = f"providerID {node.provider_id}" if node.provider_id else "no providerID"
    return Detection("remote", context or "", node.runtime,
                     f"node {node.name} ({marks}, OS {node.os_image or '?'}) carries no local distribution's marks "
                     "and is not this host"), ""


def _socket_for(node: NodeFacts, run) -> str:
    return pick_socket(node, socket_images(containerd_sockets(), run=run)) or ""


def engine_facts(client, host: str) -> EngineFacts:
    """The engine's host name and the tags built in it and never pushed (no repo digest)."""
    name = str((client.info() or {}).get("Name", ""))
    local_only = {tag for image in client.api.images() or [] if not image.get("RepoDigests")
                  for tag in image.get("RepoTags") or [] if tag != "<none>:<none>"}
    return EngineFacts(host, name, frozenset(local_only))


def adopt_engine(cluster: ClusterTarget, facts: EngineFacts) -> tuple[ClusterTarget, bool, str]:
    """The cluster seen against the build engine: (cluster, whether its nodes use that engine, why).

    A cluster no rule knew (``remote``) whose nodes run on this engine becomes
    ``local-engine``: nothing to deliver, nothing to push.
    """
    shared, why = shares_engine(cluster.nodes, facts)
    if shared and cluster.kind == "remote" and not cluster.reason.startswith("cluster: remote"):
        return replace(cluster, kind="local-engine", reason=why), True, why
    return cluster, shared, why


def docker_nodes(cluster: ClusterTarget) -> bool:
    """True when every node runs a Docker engine (only then can the build engine be theirs)."""
    return bool(cluster.nodes) and all(n.runtime == "docker" for n in cluster.nodes)
