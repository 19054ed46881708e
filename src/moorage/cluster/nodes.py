"""What a cluster is, told from its Node objects: pure decisions, no cluster, no Docker.

Each local distribution marks its nodes in its own way (labels, provider ID,
node name, OS image, container runtime); :func:`identify` reads those marks.
A cluster none of them marks may still be local: :func:`local_node` finds a
node that is this very host (its addresses are this host's), and
:func:`shares_engine` tells a node that runs on the Docker engine Moorage
builds in (the engine's host name is the node's, or an image built in this
engine and never pushed is on the node). :func:`kind_from_context` is the
fallback when the nodes cannot be read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field


def normalise_ref(ref: str) -> str:
    """``docker.io/library/x:t`` and ``docker.io/x:t`` compare equal to ``x:t``."""
    for prefix in ("docker.io/library/", "docker.io/", "localhost/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


@dataclass(frozen=True)
class NodeFacts:
    """The facts of one Node that tell a distribution apart."""

    name: str
    hostname: str = ""
    runtime: str = ""  # scheme of containerRuntimeVersion: docker, containerd, cri-o
    runtime_version: str = ""
    os_image: str = ""
    kernel: str = ""
    kubelet_version: str = ""
    provider_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    addresses: tuple[tuple[str, str], ...] = ()  # (type, address)
    images: frozenset[str] = frozenset()  # tags the kubelet reports (status.images), normalised

    @classmethod
    def from_object(cls, obj: Mapping) -> NodeFacts:
        """From a Node as the API returns it (``kubectl get node -o yaml``)."""
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        info = status.get("nodeInfo") or {}
        labels = dict(meta.get("labels") or {})
        runtime, _, version = (info.get("containerRuntimeVersion") or "").partition("://")
        images = frozenset(normalise_ref(n) for img in status.get("images") or [] for n in img.get("names") or []
                           if "@sha256:" not in n)
        return cls(
            name=meta.get("name", ""),
            hostname=labels.get("kubernetes.io/hostname", meta.get("name", "")),
            runtime=runtime, runtime_version=version,
            os_image=info.get("osImage", ""), kernel=info.get("kernelVersion", ""),
            kubelet_version=info.get("kubeletVersion", ""), provider_id=spec.get("providerID", ""),
            labels=labels,
            addresses=tuple((a.get("type", ""), a.get("address", "")) for a in status.get("addresses") or []),
            images=images,
        )

    def internal_ips(self) -> list[str]:
        return [address for kind, address in self.addresses if kind == "InternalIP"]

    @property
    def k3s(self) -> bool:
        return (self.labels.get("node.kubernetes.io/instance-type") == "k3s" or self.provider_id.startswith("k3s://")
                or "+k3s" in self.kubelet_version)


@dataclass(frozen=True)
class Detection:
    """A cluster kind told from the nodes (or the context name), with the reason."""

    kind: str
    name: str
    runtime: str
    reason: str


_K3D_NODE = re.compile(r"^k3d-(?P<cluster>.+)-(?:server|agent)-\d+$")


def identify(nodes: Sequence[NodeFacts]) -> Detection | None:
    """The local distribution whose marks the nodes carry; None if none does."""
    for rule in (_minikube, _kind, _microk8s, _k3s_family, _docker_desktop, _orbstack):
        for node in nodes:
            found = rule(node)
            if found is not None:
                return found
    return None


def _minikube(node: NodeFacts) -> Detection | None:
    profile = node.labels.get("minikube.k8s.io/name")
    if profile:
        return Detection("minikube", profile, node.runtime, f"node {node.name} has label minikube.k8s.io/name={profile}")
    return None


def _kind(node: NodeFacts) -> Detection | None:
    # kind://<provider>/<cluster>/<node>
    if node.provider_id.startswith("kind://"):
        parts = node.provider_id[len("kind://"):].split("/")
        cluster = parts[1] if len(parts) >= 3 else "kind"
        return Detection("kind", cluster, node.runtime, f"node {node.name} has providerID {node.provider_id}")
    return None


def _microk8s(node: NodeFacts) -> Detection | None:
    for label in ("microk8s.io/cluster", "node.kubernetes.io/microk8s-controlplane",
                  "node.kubernetes.io/microk8s-worker"):
        if label in node.labels:
            return Detection("microk8s", "microk8s", node.runtime, f"node {node.name} has label {label}")
    return None


def _k3s_family(node: NodeFacts) -> Detection | None:
    """k3d, Rancher Desktop, colima and OrbStack all run k3s: the node's name (or OS image) tells which."""
    if not node.k3s:
        return None
    k3s = f"k3s node {node.name} ({node.kubelet_version or 'k3s'}, runtime {node.runtime or '?'})"
    m = _K3D_NODE.match(node.name)
    if m:
        return Detection("k3d", m.group("cluster"), node.runtime, f"{k3s} named like k3d's k3d-<cluster>-server-<n>")
    if node.name == "lima-rancher-desktop" or node.os_image.startswith("Rancher Desktop"):
        return Detection("rancher-desktop", "rancher-desktop", node.runtime, f"{k3s} in Rancher Desktop's VM")
    if node.name == "colima" or node.name.startswith("colima-"):
        profile = "default" if node.name == "colima" else node.name[len("colima-"):]
        return Detection("colima", profile, node.runtime, f"{k3s} in colima's VM (profile {profile})")
    if node.name == "orbstack":
        return Detection("orbstack", "orbstack", node.runtime, f"{k3s} in OrbStack")
    return None


def _docker_desktop(node: NodeFacts) -> Detection | None:
    if node.name == "docker-desktop" or node.os_image == "Docker Desktop":
        return Detection("docker-desktop", "docker-desktop", node.runtime,
                         f"node {node.name} (OS image '{node.os_image}') is Docker Desktop's")
    return None


def _orbstack(node: NodeFacts) -> Detection | None:
    if node.name == "orbstack" or "OrbStack" in node.os_image:
        return Detection("orbstack", "orbstack", node.runtime, f"node {node.name} (OS image '{node.os_image}') is OrbStack's")
    return None


# --------------------------------------------------------------------------
# A cluster no distribution marks: this host's kubelet, or the build engine's
# --------------------------------------------------------------------------

def local_node(nodes: Sequence[NodeFacts], is_local_address: Callable[[str], bool]) -> NodeFacts | None:
    """The node that is this host (an InternalIP of it is this host's), when the cluster is that one node."""
    if len(nodes) != 1:
        return None
    node = nodes[0]
    return node if any(is_local_address(ip) for ip in node.internal_ips()) else None


def pick_socket(node: NodeFacts, listings: Mapping[str, Iterable[str] | None]) -> str | None:
    """The containerd socket whose ``k8s.io`` namespace holds the images the node reports (most in common)."""
    best, best_count = None, 0
    for socket, refs in listings.items():
        if refs is None:
            continue
        common = len(node.images & {normalise_ref(r) for r in refs})
        if common > best_count:
            best, best_count = socket, common
    return best


@dataclass(frozen=True)
class EngineFacts:
    """The Docker engine Moorage builds in: its host name and the tags built in it and never pushed."""

    host: str
    name: str  # ``docker info`` Name: the engine's host name
    local_only: frozenset[str] = frozenset()


def shares_engine(nodes: Sequence[NodeFacts], engine: EngineFacts) -> tuple[bool, str]:
    """Whether the nodes run on this Docker engine (then nothing needs delivering), and why."""
    if not nodes:
        return False, "no node could be read"
    others = [n for n in nodes if n.runtime != "docker"]
    if others:
        return False, f"node {others[0].name} runs {others[0].runtime or 'an unknown runtime'}, not a Docker engine"
    name = engine.name.lower()
    for node in nodes:
        if name and name in (node.name.lower(), node.hostname.lower()):
            return True, f"node {node.name} is the host of the Docker engine at {engine.host} (engine name {engine.name})"
    for node in nodes:
        seen = sorted(node.images & {normalise_ref(r) for r in engine.local_only})
        if seen:
            return True, f"node {node.name} has {seen[0]}, an image built in the engine at {engine.host} and never pushed"
    return False, f"no node is the engine's host ({engine.name or '?'}) or has an image only that engine has"


# --------------------------------------------------------------------------
# Fallback: the context name (the nodes could not be read)
# --------------------------------------------------------------------------

#: context names each tool writes, and the project's own local cluster (scripts/cluster/)
_CONTEXT_NAMES = {"minikube": "minikube", "docker-desktop": "docker-desktop", "docker-for-desktop": "docker-desktop",
                  "rancher-desktop": "rancher-desktop", "colima": "colima", "orbstack": "orbstack",
                  "microk8s": "microk8s", "moorage-local": "containerd-local"}
_CONTEXT_PREFIXES = {"kind-": "kind", "k3d-": "k3d", "colima-": "colima"}


def kind_from_context(context: str | None) -> Detection:
    """The kind a context's name suggests (the names minikube, kind, k3d, ... write); else remote."""
    name = context or ""
    if name in _CONTEXT_NAMES:
        kind = _CONTEXT_NAMES[name]
        cluster = "default" if kind == "colima" else name
        return Detection(kind, cluster, "", f"context name '{name}'")
    for prefix, kind in _CONTEXT_PREFIXES.items():
        if name.startswith(prefix):
            return Detection(kind, name[len(prefix):], "", f"context name '{name}'")
    return Detection("remote", name, "", f"context name '{name}' is not one a local cluster writes" if name
                     else "no kube context")
