"""The cluster images go to: its kind, and how images reach each kind (the names the plan shows)."""

from __future__ import annotations

from dataclasses import dataclass

from .nodes import NodeFacts

#: kinds whose nodes run on the Docker engine Moorage builds in: nothing to deliver, ever
ENGINE_KINDS = ("docker-desktop", "orbstack", "local-engine")
#: kinds that run either the Docker engine (nothing to deliver) or containerd (``nerdctl load``)
DESKTOP_VM_KINDS = ("rancher-desktop", "colima")


@dataclass(frozen=True)
class ClusterTarget:
    """A cluster (or, for a push, a registry) images are delivered to, and why it is taken for that kind."""

    kind: str  # one of config.CLUSTER_KINDS but "auto"
    name: str  # minikube profile, kind/k3d cluster, colima profile; else the context name
    context: str | None
    runtime: str = ""  # the nodes' container runtime: docker, containerd, cri-o ("" unknown)
    address: str = ""  # containerd socket on this host (containerd-local, nerdctl), when known
    reason: str = ""  # what the kind was told from (inv doctor shows it)
    nodes: tuple[NodeFacts, ...] = ()


def delivery_method(cluster: str, runtime: str = "docker") -> str:
    """How images reach a cluster of this kind and runtime (the name the plan shows)."""
    if cluster in ENGINE_KINDS:
        return "none"
    if cluster == "minikube":
        return "none" if runtime == "docker" else "minikube-load"
    if cluster in DESKTOP_VM_KINDS:
        return "none" if runtime == "docker" else "nerdctl-load"
    return {"kind": "kind-load", "k3d": "k3d-import", "microk8s": "microk8s-import",
            "containerd-local": "ctr-import"}.get(cluster, "push")
