"""The cluster an environment deploys to: its kind, the engine to build in, and getting images onto it.

- kind detection (:func:`cluster_kind`, :func:`cluster_for`): the environment's
  ``cluster:`` setting, else guessed from the kube context name; the allowed
  values of that setting are ``moorage.core.config.CLUSTER_KINDS``;
- the build engine (:func:`build_engine`): minikube's own Docker daemon when
  its runtime is docker, else the host engine;
- delivery: a plan (:func:`delivery_plan`, pure) from what the nodes or the
  registry already hold (:func:`cluster_images`), executed by :func:`deliver`
  (``minikube image load``, ``kind load``, ``k3d image import``, ``ctr import``,
  or a registry :func:`push`);
- :func:`ensure_minikube`: start the minikube profile an environment asks for.

docker-py is imported lazily.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import kube
from .core import proc
from .core.config import Environment
from .core.errors import CommandFailed, OperationFailed, Unreachable, UserError
from .core.report import Reporter
from .engine import docker_host

# --------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------

def cluster_kind(context: str | None, configured: str = "auto") -> str:
    """The cluster kind: the environment's ``cluster:`` setting, else guessed from the kube context name."""
    if configured and configured != "auto":
        return configured
    name = context or ""
    if name == "minikube":
        return "minikube"
    if name.startswith("kind-"):
        return "kind"
    if name.startswith("k3d-"):
        return "k3d"
    if name in ("docker-desktop", "docker-for-desktop"):
        return "docker-desktop"
    return "remote"


@dataclass(frozen=True)
class ClusterTarget:
    """A cluster (or, for a push, a registry) images are delivered to."""

    kind: str  # one of config.CLUSTER_KINDS but "auto"
    name: str  # minikube profile, kind/k3d cluster name, or the context name
    context: str | None


def cluster_for(context: str | None, configured: str = "auto") -> ClusterTarget:
    """The cluster kind from the kube context name (``cluster:`` in the config wins over the name)."""
    name = context or ""
    kind = cluster_kind(context, configured)
    if kind == "kind":
        cluster_name = name[len("kind-"):] if name.startswith("kind-") else (name or "kind")
    elif kind == "k3d":
        cluster_name = name[len("k3d-"):] if name.startswith("k3d-") else (name or "k3s-default")
    elif kind == "minikube":
        cluster_name = name or "minikube"
    else:
        cluster_name = name
    return ClusterTarget(kind, cluster_name, context)


def current_context(env: Environment | None) -> str | None:
    """The kube context an environment deploys to: its ``context:``, else kubeconfig's current one."""
    if env is not None and env.context:
        return env.context
    try:
        return kube.current_context()
    except UserError:
        return None  # no kubeconfig: images can still be built into the local engine


# --------------------------------------------------------------------------
# The engine to build in
# --------------------------------------------------------------------------

def parse_docker_env(text: str) -> dict[str, str]:
    """DOCKER_* variables from ``minikube docker-env`` output (bash/sh ``export K="V"`` or ``K=V``)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not key.startswith("DOCKER_"):
            continue
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip().strip('"')]
        out[key] = parts[0] if parts else ""
    return out


@dataclass(frozen=True)
class Engine:
    """The Docker engine to build against, and whether the cluster reads from it directly."""

    docker_env: Mapping[str, str] | None  # None: this process's DOCKER_* (the host engine)
    host: str
    cluster_reads_it: bool  # minikube docker runtime, docker-desktop: nothing to deliver
    runtime: str = "docker"


def build_engine(cluster: ClusterTarget, *, run=None) -> Engine:
    """Where to build: minikube's own Docker daemon when its runtime is docker, else the host engine."""
    run = run or proc.run
    if cluster.kind == "minikube":
        try:
            result = run(["minikube", "-p", cluster.name, "docker-env", "--shell", "bash"],
                         timeout=60, what="minikube docker-env")
        except CommandFailed as exc:
            text = f"{exc.stderr} {exc.message}"
            if "only compatible with the" in text and "runtime" in text:
                m = re.search(r'use the "([a-z-]+)" runtime', text)
                return Engine(None, docker_host(), False, m.group(1) if m else "containerd")
            raise Unreachable(f"minikube profile '{cluster.name}' has no reachable Docker daemon: {proc.tail_lines(exc.stderr, 3)}",
                              f"start it with: minikube start -p {cluster.name}") from None
        env = parse_docker_env(result.stdout)
        if not env.get("DOCKER_HOST"):
            raise Unreachable(f"'minikube -p {cluster.name} docker-env' printed no DOCKER_HOST",
                              f"check the profile with: minikube status -p {cluster.name}")
        return Engine(env, env["DOCKER_HOST"], True)
    return Engine(None, docker_host(), cluster.kind == "docker-desktop")


# --------------------------------------------------------------------------
# Delivery: plan (pure) and effects
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryStep:
    """One action that makes images readable by the cluster."""

    action: str  # "load" (a CLI command) or "push" (docker-py push)
    refs: tuple[str, ...]
    command: tuple[str, ...]  # the exact command (for push, the equivalent docker CLI line)

    def render(self) -> str:
        return proc.render(self.command)


def delivery_method(cluster: str, runtime: str = "docker") -> str:
    """How images reach a cluster of this kind (the name the plan shows)."""
    if cluster == "minikube":
        return "none" if runtime == "docker" else "minikube-load"
    return {"kind": "kind-load", "k3d": "k3d-import", "docker-desktop": "none",
            "containerd-local": "ctr-import"}.get(cluster, "push")


def normalise_ref(ref: str) -> str:
    """``docker.io/library/x:t`` and ``docker.io/x:t`` compare equal to ``x:t``."""
    for prefix in ("docker.io/library/", "docker.io/", "localhost/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def delivery_plan(cluster: ClusterTarget, refs: Sequence[str], present: Iterable[str] | None,
                  *, engine_shared: bool = False) -> list[DeliveryStep]:
    """The steps that make ``refs`` readable by the cluster, skipping those it already has.

    ``present`` holds the references the cluster's nodes (or registry) already
    have; None means unknown, so everything is delivered. ``engine_shared`` is
    true when the images were built straight into the engine the cluster uses.
    """
    if engine_shared or cluster.kind == "docker-desktop":
        return []
    have = {normalise_ref(r) for r in (present or ())}
    missing = [r for r in refs if normalise_ref(r) not in have]
    if not missing:
        return []
    if cluster.kind == "minikube":
        return [DeliveryStep("load", (r,), ("minikube", "-p", cluster.name, "image", "load", r)) for r in missing]
    if cluster.kind == "kind":
        return [DeliveryStep("load", tuple(missing), ("kind", "load", "docker-image", "--name", cluster.name, *missing))]
    if cluster.kind == "k3d":
        return [DeliveryStep("load", tuple(missing), ("k3d", "image", "import", "-c", cluster.name, *missing))]
    if cluster.kind == "containerd-local":
        return [DeliveryStep("load", (r,), ("ctr", "-n", "k8s.io", "images", "import", f"<docker save {r}>"))
                for r in missing]
    return [DeliveryStep("push", (r,), ("docker", "push", r)) for r in missing]


def _crictl_tags(output: str) -> set[str]:
    try:
        data = json.loads(output or "{}")
    except ValueError:
        return set()
    return {normalise_ref(t) for img in data.get("images") or [] for t in img.get("repoTags") or []}


def cluster_images(cluster: ClusterTarget, refs: Sequence[str], *, client=None, run=None) -> set[str] | None:
    """References the cluster already has; an image counts only if every node has it.

    kind and k3d: ``crictl images -o json`` in each node container (one exec per
    node for all images, where ``kind load`` would inspect per image and node);
    minikube: ``minikube image ls``; remote: the registry's manifest (docker-py
    ``inspect_distribution``). None when it cannot be told.
    """
    run = run or proc.run
    if cluster.kind in ("kind", "k3d"):
        if cluster.kind == "kind":
            nodes = run(["kind", "get", "nodes", "--name", cluster.name], timeout=60, what="kind get nodes").stdout.split()
        else:
            listing = run(["docker", "ps", "--filter", f"label=k3d.cluster={cluster.name}",
                           "--format", '{{.Names}} {{.Label "k3d.role"}}'], timeout=60, what="docker ps").stdout
            nodes = [ln.split()[0] for ln in listing.splitlines() if ln.split()[1:2] in (["server"], ["agent"])]
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
    if cluster.kind == "minikube":
        out = run(["minikube", "-p", cluster.name, "image", "ls"], timeout=120, check=False, what="minikube image ls")
        if out.returncode != 0:
            return None
        return {normalise_ref(line.strip()) for line in out.stdout.splitlines() if line.strip()}
    if cluster.kind == "containerd-local":
        out = run(["ctr", "-n", "k8s.io", "images", "ls", "-q"], timeout=60, check=False, what="ctr images ls")
        return {normalise_ref(x) for x in out.stdout.split()} if out.returncode == 0 else None
    if cluster.kind == "remote" and client is not None:
        from docker.errors import APIError

        present = set()
        for ref in refs:
            try:
                client.api.inspect_distribution(ref)
                present.add(ref)
            except APIError:
                pass
        return present
    return set()


def deliver(steps: Sequence[DeliveryStep], *, client, reporter: Reporter, run=None) -> None:
    """Execute a delivery plan: CLI loads through proc.run, pushes through docker-py."""
    run = run or proc.run
    for step in steps:
        if step.action == "push":
            push(client, step.refs[0], reporter=reporter)
        elif step.command[0] == "ctr":
            _ctr_import(client, step.refs[0], reporter=reporter, run=run)
        else:
            with reporter.progress(f"load {', '.join(step.refs)}"):
                run(list(step.command), timeout=900, what=" ".join(step.command[:3]))


def _ctr_import(client, ref: str, *, reporter: Reporter, run) -> None:
    with tempfile.NamedTemporaryFile(suffix=".tar") as f, reporter.progress(f"import {ref} into containerd"):
        for chunk in client.api.get_image(ref):
            f.write(chunk)
        f.flush()
        run(["ctr", "-n", "k8s.io", "images", "import", f.name], timeout=900, what="ctr images import")


def push(client, ref: str, *, reporter: Reporter) -> None:
    """``docker push`` through docker-py with a byte progress bar; a registry error is one clean line."""
    from docker.errors import APIError

    repo, _, tag = ref.rpartition(":")
    layers: dict[str, tuple[int, int]] = {}
    error = None
    with reporter.progress(f"push {ref}", total=None, unit="bytes") as bar:
        try:
            for chunk in client.api.push(repo, tag=tag, stream=True, decode=True):
                if "error" in chunk or "errorDetail" in chunk:
                    error = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                    break
                detail = chunk.get("progressDetail") or {}
                if chunk.get("id") and detail.get("total"):
                    layers[chunk["id"]] = (detail.get("current", 0), detail["total"])
                    bar.update(sum(c for c, _ in layers.values()))
        except APIError as exc:
            error = exc.explanation or str(exc)
    if error:
        hint = "log in with 'docker login <registry>'" if re.search(r"denied|unauthori[sz]ed|authentication", error, re.I) \
            else "check the registry address in the environment's config and that it is reachable"
        raise OperationFailed(f"push of {ref} failed: {error.strip()}", hint)


# --------------------------------------------------------------------------
# minikube
# --------------------------------------------------------------------------

def ensure_minikube(env: Environment, context: str, *, dry_run: bool, reporter: Reporter) -> None:
    """Start minikube when the environment asks for it and its profile is not running."""
    if not env.start_minikube or context != "minikube" and env.cluster != "minikube":
        return
    profile = context or "minikube"
    state = proc.run(["minikube", "-p", profile, "status", "--format", "{{.APIServer}}"], timeout=60,
                     check=False, what="minikube status").stdout.strip()
    if state == "Running":
        return
    if dry_run:
        reporter.line(f"would start minikube profile '{profile}' (it is {state or 'not running'})")
        return
    with reporter.progress(f"starting minikube profile '{profile}'"):
        proc.run(["minikube", "start", "-p", profile], timeout=900, what="minikube start",
                 hint="see `minikube logs`; or start the cluster yourself and re-run")

