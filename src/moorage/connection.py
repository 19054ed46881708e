"""A connected environment: its kube context (checked against the configuration), an API client,
the release's state, and waiting for the release's workloads to be ready.

Orchestration floor: every task that acts on an installed release starts here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import helm, kube, readiness
from .cluster import ensure_minikube
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
        return self.project.selector()


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


def diagnostics_dir(project: Project, env: Environment) -> Path:
    """Where a failed wait writes its diagnostics bundle (one folder per run, named by time)."""
    return project.diagnostics_dir / f"{env.name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"


def wait_release(cluster: Connected, reporter: Reporter, *, out_dir: Path | None = None) -> None:
    """Wait for the release's workloads (from its manifest); OperationFailed with the reason if not ready.

    With ``out_dir`` a failure also writes the diagnostics bundle there, helm status and history included.
    """
    project, env = cluster.project, cluster.env
    objects = helm.manifest(project.release, env.namespace, cluster.context)
    resources = readiness.resources_in(objects, env.namespace)
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


