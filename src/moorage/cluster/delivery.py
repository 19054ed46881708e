"""Getting images onto the cluster: a plan (pure) from what the nodes already hold, and its execution.

Per kind: ``minikube image load``; ``kind load docker-image`` and ``k3d image
import`` (they read the engine by name); ``docker save`` streamed into
``microk8s images import``, ``nerdctl --namespace k8s.io load`` (Rancher
Desktop and colima with containerd) or ``ctr -n k8s.io images import``
(containerd on this host); a registry push for a remote cluster. Nothing for
a cluster that reads the build engine. docker-py is imported lazily.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..core import proc
from ..core.errors import CommandFailed, OperationFailed
from ..core.report import Reporter
from .layers import import_missing_layers
from .nodes import normalise_ref
from .target import DESKTOP_VM_KINDS, ENGINE_KINDS, ClusterTarget

STREAM_TIMEOUT = 900


@dataclass(frozen=True)
class DeliveryStep:
    """One action that makes images readable by the cluster."""

    action: str  # "load" (a CLI reads the engine), "stream" (docker save | command), "push" (docker-py)
    refs: tuple[str, ...]
    command: tuple[str, ...]  # the exact command (for push, the equivalent docker CLI line)

    def render(self) -> str:
        if self.action == "stream":
            return f"docker save {' '.join(self.refs)} | {proc.render(self.command)}"
        return proc.render(self.command)


def nerdctl_command(cluster: ClusterTarget) -> tuple[str, ...]:
    """nerdctl on the cluster's containerd: colima's own wrapper, else ``nerdctl`` (with the socket if known)."""
    if cluster.kind == "colima":
        return ("colima", "nerdctl", "--profile", cluster.name or "default", "--")
    return ("nerdctl", *(("--address", cluster.address) if cluster.address else ()))


def ctr_command(cluster: ClusterTarget) -> tuple[str, ...]:
    return ("ctr", *(("--address", cluster.address) if cluster.address else ()), "-n", "k8s.io")


def delivery_plan(cluster: ClusterTarget, refs: Sequence[str], present: Iterable[str] | None,
                  *, engine_shared: bool = False) -> list[DeliveryStep]:
    """The steps that make ``refs`` readable by the cluster, skipping those it already has.

    ``present`` holds the references the cluster's nodes (or registry) already
    have; None means unknown, so everything is delivered. ``engine_shared`` is
    true when the images were built straight into the engine the cluster uses.
    """
    if engine_shared or cluster.kind in ENGINE_KINDS or (cluster.kind in DESKTOP_VM_KINDS and cluster.runtime == "docker"):
        return []
    have = {normalise_ref(r) for r in (present or ())}
    missing = [r for r in refs if normalise_ref(r) not in have]
    if not missing:
        return []
    kind = cluster.kind
    if kind == "minikube":
        return [DeliveryStep("load", (r,), ("minikube", "-p", cluster.name, "image", "load", r)) for r in missing]
    if kind == "kind":
        return [DeliveryStep("load", tuple(missing), ("kind", "load", "docker-image", "--name", cluster.name, *missing))]
    if kind == "k3d":
        return [DeliveryStep("load", tuple(missing), ("k3d", "image", "import", "-c", cluster.name, *missing))]
    if kind == "microk8s":
        receiver: tuple[str, ...] = ("microk8s", "images", "import")
    elif kind in DESKTOP_VM_KINDS:
        receiver = (*nerdctl_command(cluster), "--namespace", "k8s.io", "load")
    elif kind == "containerd-local":
        receiver = (*ctr_command(cluster), "images", "import", "-")
    else:
        return [DeliveryStep("push", (r,), ("docker", "push", r)) for r in missing]
    return [DeliveryStep("stream", (r,), receiver) for r in missing]


def _crictl_tags(output: str) -> set[str]:
    try:
        data = json.loads(output or "{}")
    except ValueError:
        return set()
    return {normalise_ref(t) for img in data.get("images") or [] for t in img.get("repoTags") or []}


def _node_containers(cluster: ClusterTarget, run) -> list[str]:
    if cluster.kind == "kind":
        return run(["kind", "get", "nodes", "--name", cluster.name], timeout=60, what="kind get nodes").stdout.split()
    listing = run(["docker", "ps", "--filter", f"label=k3d.cluster={cluster.name}",
                   "--format", '{{.Names}} {{.Label "k3d.role"}}'], timeout=60, what="docker ps").stdout
    return [ln.split()[0] for ln in listing.splitlines() if ln.split()[1:2] in (["server"], ["agent"])]


def _listing(run, args: list[str], what: str) -> set[str] | None:
    out = run(args, timeout=120, check=False, what=what)
    return {normalise_ref(x.strip()) for x in out.stdout.split()} if out.returncode == 0 else None


def cluster_images(cluster: ClusterTarget, refs: Sequence[str], *, client=None, run=None) -> set[str] | None:
    """References the cluster already has; an image counts only if every node has it.

    kind and k3d: ``crictl images -o json`` in each node container (one exec per
    node for all images, where ``kind load`` would inspect per image and node);
    minikube: ``minikube image ls``; containerd: its ``k8s.io`` namespace
    (``ctr``, ``nerdctl``, ``microk8s ctr``). None when it cannot be told; empty for a
    remote cluster, which pulls from a registry (what that holds: :mod:`.registry`).
    """
    run = run or proc.run
    kind = cluster.kind
    if kind in ("kind", "k3d"):
        nodes = _node_containers(cluster, run)
        if not nodes:
            return None
        per_node = []
        for node in nodes:
            out = run(["docker", "exec", node, "crictl", "images", "-o", "json"], timeout=60, check=False,
                      what="crictl images")
            if out.returncode != 0:
                return None
            per_node.append(_crictl_tags(out.stdout))
        return set.intersection(*per_node)
    if kind == "minikube":
        return _listing(run, ["minikube", "-p", cluster.name, "image", "ls"], "minikube image ls")
    if kind == "containerd-local":
        return _listing(run, [*ctr_command(cluster), "images", "ls", "-q"], "ctr images ls")
    if kind == "microk8s":
        return _listing(run, ["microk8s", "ctr", "images", "ls", "-q"], "microk8s ctr images ls")
    if kind in DESKTOP_VM_KINDS:
        return _listing(run, [*nerdctl_command(cluster), "--namespace", "k8s.io", "images", "--format",
                              "{{.Repository}}:{{.Tag}}"], "nerdctl images")
    return set()


def deliver(steps: Sequence[DeliveryStep], *, client, reporter: Reporter, run=None) -> dict[str, int]:
    """Execute a delivery plan: CLI loads through proc.run, streams from the engine, pushes through docker-py.

    Returns the bytes sent per reference where they are known: ``ctr import`` on this host gets only
    the layers the node lacks (:mod:`.layers`). Pushes with credentials go through
    ``moorage.artifacts.deliver_images``, which reads what the registry received.
    """
    run = run or proc.run
    sent: dict[str, int] = {}
    for step in steps:
        if step.action == "push":
            push(client, step.refs[0], reporter=reporter)
        elif step.action == "stream" and step.command[0] == "ctr" and step.command[-2:] == ("import", "-"):
            with reporter.progress(f"import {step.refs[0]} (only the layers the node lacks)"):
                shipped = import_missing_layers(client, step.refs[0], step.command[:-3])
            sent[step.refs[0]] = shipped.bytes
            reporter.line(f"{step.refs[0]}: sent {shipped.layers} of {shipped.total_layers} layers, "
                          f"{shipped.bytes} bytes of {shipped.image_bytes}")
        elif step.action == "stream":
            with reporter.progress(f"import {step.refs[0]} ({step.command[0]})"):
                stream_image(client, step.refs[0], step.command)
        else:
            with reporter.progress(f"load {', '.join(step.refs)}"):
                run(list(step.command), timeout=900, what=" ".join(step.command[:3]))
    return sent


def stream_image(client, ref: str, command: Sequence[str], *, timeout: float = STREAM_TIMEOUT) -> None:
    """``docker save ref | command``: the engine's image archive streamed into the command's stdin."""
    what = " ".join(command[:4])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = proc.start(list(command), stdin=subprocess.PIPE, stdout=out, stderr=err)
        broken = False
        try:
            for chunk in client.api.get_image(ref):
                child.stdin.write(chunk)
        except BrokenPipeError:
            broken = True  # the command stopped reading: its exit status and stderr say why
        finally:
            try:
                child.stdin.close()
            except BrokenPipeError:
                broken = True
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise CommandFailed(f"{what} did not finish within {timeout:g}s", returncode=-1) from None
        if code != 0 or broken:
            err.seek(0)
            stderr = err.read().decode(errors="replace")
            raise CommandFailed(f"{what} failed (exit {code}) for {ref}: {proc.tail_lines(stderr)}",
                                f"check that `{proc.render(command[:2])}` reaches the cluster's containerd",
                                stderr=stderr, returncode=code)


def push(client, ref: str, *, reporter: Reporter, auth: dict[str, str] | None = None) -> set[str]:
    """``docker push`` through docker-py with a byte progress bar; the short IDs of the layers it uploaded.

    The engine uploads only the layers the registry lacks ("Layer already exists" for the rest).
    ``auth`` (username, password) goes in the API request's header, never on a command line.
    A registry error is one clean line.
    """
    from docker.errors import APIError

    repo, _, tag = ref.rpartition(":")
    layers: dict[str, tuple[int, int]] = {}
    pushed: set[str] = set()
    error = None
    with reporter.progress(f"push {ref}", total=None, unit="bytes") as bar:
        try:
            for chunk in client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth):
                if "error" in chunk or "errorDetail" in chunk:
                    error = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                    break
                if chunk.get("status") == "Pushed" and chunk.get("id"):
                    pushed.add(chunk["id"])
                detail = chunk.get("progressDetail") or {}
                if chunk.get("id") and detail.get("total"):
                    layers[chunk["id"]] = (detail.get("current", 0), detail["total"])
                    bar.update(sum(c for c, _ in layers.values()))
        except APIError as exc:
            error = exc.explanation or str(exc)
    if error:
        hint = "fix the registry credentials (.env keys the environment's registry names, or 'docker login')" \
            if re.search(r"denied|unauthori[sz]ed|authentication", error, re.I) \
            else "check the registry address in the environment's config and that it is reachable"
        raise OperationFailed(f"push of {ref} failed: {error.strip()}", hint)
    return pushed
