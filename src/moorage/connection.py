"""A connected environment: its kube context (checked against the configuration), an API client,
the release's state, and waiting for the release's workloads to be ready.

Orchestration floor: every task that acts on an installed release starts here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import helm, kube, readiness
from .core import proc
from .core.config import Environment, Project, guard_context
from .core.errors import UserError
from .core.report import Reporter


@dataclass
class Connected:
    """A connected environment: its context, API client and release state."""

    project: Project
    env: Environment
    context: str
    api: Any
    release: helm.Release | None
    revisions: list[helm.Revision]

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.project.release}"


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


def connect(project: Project, env: Environment, *, dry_run: bool = False, reporter: Reporter | None = None,
            allow_production: bool = False, read_release: bool = True, read_history: bool = True) -> Connected:
    """Resolve the context, refuse unsafe ones, check the cluster answers, read the release."""
    if env.production and not allow_production:
        raise UserError(f"environment '{env.name}' is production: the dev.* tasks do not touch it",
                        f"deploy it from CI with: inv deploy --env {env.name}")
    context = kube.resolve_context(env.context)
    guard_context(project, env, context)
    if reporter is not None:
        ensure_minikube(env, context, dry_run=dry_run, reporter=reporter)
    api = kube.client(context)
    release = helm.status(project.release, env.namespace, context) if read_release else None
    # The history matters for rollbacks and for freeing a pending release; a deploy needs it only then.
    wanted = release is not None and (read_history or release.pending)
    revisions = helm.history(project.release, env.namespace, context) if wanted else []
    return Connected(project, env, context, api, release, revisions)


def wait_release(cluster: Connected, reporter: Reporter, *, diagnostics: bool = True) -> None:
    """Wait for the release's workloads (from its manifest); OperationFailed with the reason if not ready.

    With ``diagnostics`` a failure also writes the bundle, helm status and history included.
    """
    project, env = cluster.project, cluster.env
    objects = helm.manifest(project.release, env.namespace, cluster.context)
    resources = [readiness.Resource.of(kind, name, ns) for kind, name, ns in helm.resources_to_wait(objects, env.namespace)]
    out_dir = None
    if diagnostics:
        out_dir = project.diagnostics_dir / f"{env.name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    readiness.wait_with_view(cluster.api, resources, env.timeout, reporter, label_selector=cluster.selector,
                             diagnostics_dir=out_dir, namespace=env.namespace, extra=lambda: _helm_extra(cluster))


def _helm_extra(cluster: Connected) -> dict[str, str]:
    project, env = cluster.project, cluster.env
    extra = {}
    for name, args in (("helm-status.txt", ["status", project.release]),
                       ("helm-history.txt", ["history", project.release])):
        result = proc.run(["helm", *args, "--namespace", env.namespace, "--kube-context", cluster.context],
                          timeout=60, check=False, what=f"helm {args[0]}")
        extra[name] = result.stdout + result.stderr
    return extra


