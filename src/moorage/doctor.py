"""``inv doctor``: health checks of the machine and the cluster, each with a fix hint.

Every check is a small function returning a :class:`Check`; ``run_checks``
decides which apply to an environment (a cluster CLI only for its cluster
kind) and runs them. The context-safety rule itself is
``moorage.core.config.guard_context``, which every task applies before it
touches a cluster; the doctor reports it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

from . import helm, kube
from .cluster import (
    ClusterTarget,
    adopt_engine,
    build_engine,
    cluster_kind,
    delivery_method,
    detect_cluster,
    docker_nodes,
    engine_facts,
)
from .core import proc
from .core.config import Environment, Project, guard_context
from .core.errors import MoorageError, UserError
from .engine import connect

MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    shown = ".".join(map(str, version))
    if version[:2] >= MIN_PYTHON:
        return Check("python", True, shown)
    return Check("python", False, f"{shown} is too old",
                 f"use Python {'.'.join(map(str, MIN_PYTHON))} or newer")


def check_docker(base_url: str | None = None) -> Check:
    try:
        import docker

        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        version = client.version().get("Version", "?")
    except Exception as exc:  # noqa: BLE001 - any failure means the engine is unusable
        reason = str(exc).splitlines()[0][:160]
        return Check("docker", False, f"Docker engine not reachable: {reason}",
                     "start dockerd (or Docker Desktop) and check DOCKER_HOST")
    return Check("docker", True, f"engine {version}")


def check_builder(project: Project) -> Check:
    """BuildKit (docker buildx) or the legacy builder, and why; failed when a Dockerfile needs what is missing."""
    from .images import builder_status

    ok, detail, hint = builder_status(project)
    return Check("builder", ok, detail, hint)


def check_helm() -> Check:
    try:
        out = proc.run(["helm", "version", "--template", "{{.Version}}"], timeout=20).stdout
    except MoorageError as exc:
        return Check("helm", False, exc.message, exc.hint or "install Helm (scripts/install-helm.sh)")
    version = helm.parse_helm_version(out)
    if version is None or version[0] not in helm.HELM_MAJORS:
        return Check("helm", False, f"unsupported Helm version {out.strip() or '?'}",
                     "install Helm 3 or 4 (scripts/install-helm.sh)")
    return Check("helm", True, out.strip())


def check_tool(tool: str, version_args: list[str]) -> Check:
    try:
        out = proc.run([tool, *version_args], timeout=20).stdout
    except MoorageError as exc:
        return Check(tool, False, exc.message, exc.hint or f"install {tool}")
    return Check(tool, True, out.strip().splitlines()[0] if out.strip() else "present")


def check_context(project: Project, env: Environment, current: Callable[[], str | None],
                  reachable: Callable[[str | None], str]) -> list[Check]:
    """Context safety and reachability of the environment's cluster."""
    try:
        context = env.context or current()
    except MoorageError as exc:
        return [Check("kube-context", False, exc.message, exc.hint or "")]
    checks = []
    try:
        guard_context(project, env, context)
        checks.append(Check("context-safety", True, f"'{context}' is not a production context"
                            if not env.production else f"'{context}' (production environment)"))
    except UserError as exc:
        checks.append(Check("context-safety", False, exc.message, exc.hint or ""))
        return checks
    try:
        detail = reachable(context)
        checks.append(Check("cluster", True, f"context '{context}': {detail}"))
    except MoorageError as exc:
        checks.append(Check("cluster", False, exc.message, exc.hint or ""))
    return checks


def needed_tools(env: Environment, context: str | None, cluster: ClusterTarget | None = None) -> list[str]:
    """Cluster CLIs this environment needs, from the detected cluster (else its ``cluster:`` or context name)."""
    kind = cluster.kind if cluster is not None else cluster_kind(context, env.cluster)
    method = delivery_method(kind, (cluster.runtime if cluster is not None else "") or "docker")
    if method == "nerdctl-load":
        return ["colima"] if kind == "colima" else ["nerdctl"]
    return {"minikube": ["minikube"], "kind": ["kind"], "k3d": ["k3d"], "microk8s": ["microk8s"],
            "containerd-local": ["ctr"]}.get(kind, [])


def check_cluster_kind(env: Environment, cluster: ClusterTarget, engine: tuple[bool, str] | None = None) -> Check:
    """What the cluster was taken for and why; a remote one without a registry fails (a push would go to Docker Hub)."""
    runtime = f"runtime {cluster.runtime}" if cluster.runtime else "runtime unknown"
    method = delivery_method(cluster.kind, cluster.runtime or "docker")
    detail = f"{cluster.kind} '{cluster.name}' ({runtime}, delivery {method}): {cluster.reason}"
    if engine is not None:
        detail += f"; build engine {'shared' if engine[0] else 'not shared'}: {engine[1]}"
    if cluster.kind == "remote" and not env.registry:
        return Check("cluster-kind", False, detail + "; no registry to push to",
                     f"set moorage.environments.{env.name}.registry, or its cluster: if the cluster is local")
    return Check("cluster-kind", True, detail)


def detect(env: Environment, context: str | None) -> tuple[ClusterTarget, tuple[bool, str] | None]:
    """The cluster as ``dev.deploy`` will see it: from its nodes, then compared with the build engine."""
    cluster = detect_cluster(context, env.cluster)
    if not docker_nodes(cluster):
        return cluster, None
    try:
        engine = build_engine(cluster)
        cluster, shared, why = adopt_engine(cluster, engine_facts(connect(engine.docker_env), engine.host))
    except MoorageError as exc:
        return cluster, (False, exc.message)
    return cluster, (shared, why)


def check_registry(project: Project, env: Environment) -> Check:
    """The environment's registry answers, trusts and accepts the credentials its settings name."""
    from . import artifacts
    from .cluster import registry
    from .core.config import load_secrets

    host = env.registry.split("/", 1)[0]
    try:
        credentials = artifacts.registry_credentials(env, load_secrets(project, env))
        session = registry.Registry(host, credentials=credentials, ca=env.registry_access.ca,
                                    where=f"moorage.environments.{env.name}.registry")
        try:
            session.ping()
        finally:
            session.close()
    except MoorageError as exc:
        return Check("registry", False, exc.message, exc.hint or "")
    who = f"as {credentials.username} (from {credentials.source})" if credentials else "without credentials"
    return Check("registry", True, f"{env.registry}: reachable, trusted, accepts {who}")


def run_checks(project: Project, env: Environment, *, skip_cluster: bool = False) -> list[Check]:
    """Every check that applies to ``env``: Python, Docker, Helm, the cluster and its tools."""
    checks = [check_python(), check_docker(), check_helm(), check_builder(project)]
    context = None
    if not skip_cluster:
        def reachable(name: str | None) -> str:
            return f"Kubernetes {kube.ping(kube.client(name))} reachable"

        checks += check_context(project, env, kube.current_context, reachable)
        try:
            context = env.context or kube.current_context()
        except Exception:  # noqa: BLE001 - already reported as a failed check
            context = None
    cluster = None
    if context and all(c.ok for c in checks if c.name == "cluster"):
        cluster, engine = detect(env, context)
        checks.append(check_cluster_kind(env, cluster, engine))
    for tool in needed_tools(env, context, cluster):
        checks.append(check_tool(tool, TOOL_VERSION_ARGS.get(tool, ["version"])))
    if env.registry and (cluster is None or cluster.kind == "remote" or env.registry_access.push):
        checks.append(check_registry(project, env))
    return checks


TOOL_VERSION_ARGS = {
    "minikube": ["version", "--short"],
    "kind": ["version"],
    "k3d": ["version"],
    "kubectl": ["version", "--client"],
    "ctr": ["--version"],
    "nerdctl": ["--version"],
    "microk8s": ["version"],
}
