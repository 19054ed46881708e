"""The Docker engine to build in (minikube's own daemon for its docker runtime), and starting minikube."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from ..core import proc
from ..core.config import Environment
from ..core.errors import CommandFailed, Unreachable
from ..core.report import Reporter
from ..engine import docker_host
from .target import ClusterTarget, delivery_method


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
    cluster_reads_it: bool  # minikube docker runtime, Docker Desktop, OrbStack, ...: nothing to deliver
    runtime: str = "docker"  # the nodes' container runtime


def build_engine(cluster: ClusterTarget, *, run=None) -> Engine:
    """Where to build: minikube's own Docker daemon when its runtime is docker, else the host engine."""
    run = run or proc.run
    if cluster.kind == "minikube" and cluster.runtime in ("docker", ""):
        return _minikube_engine(cluster, run)
    runtime = cluster.runtime or "docker"
    if cluster.kind == "minikube":
        return Engine(None, docker_host(), False, runtime)
    return Engine(None, docker_host(), delivery_method(cluster.kind, runtime) == "none", runtime)


def _minikube_engine(cluster: ClusterTarget, run) -> Engine:
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
