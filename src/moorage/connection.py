"""A connected environment: its kube context (checked against the configuration), an API client,
the release's state, and waiting for the release's workloads to be ready.

A deploy into a namespace that is being deleted waits (up to :data:`NAMESPACE_DELETION_WAIT`
seconds, on a watch) until it is gone, so that helm can create it again.

Orchestration floor: every task that acts on an installed release starts here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import helm, kube, readiness
from .cluster import ensure_minikube
from .core import proc
from .core.config import Environment, Project, guard_context
from .core.errors import OperationFailed, UserError
from .core.report import Reporter

NAMESPACE_DELETION_WAIT = 120.0  # seconds a deploy waits for its namespace to finish being deleted


@dataclass
class Connected:
    """A connected environment: its context, API client and release state."""

    project: Project
    env: Environment
    context: str
    api: Any
    release: helm.Release | None
    revisions: list[helm.Revision]


def connect(project: Project, env: Environment, *, dry_run: bool = False, reporter: Reporter | None = None,
            allow_production: bool = False, read_release: bool = True, read_history: bool = True) -> Connected:
    """Resolve the context, refuse unsafe ones, check the cluster answers, read the release.

    With a ``reporter`` (a deploy), a namespace being deleted is said, and waited for unless ``dry_run``.
    """
    if env.production and not allow_production:
        raise UserError(f"environment '{env.name}' is production: the dev.* tasks do not touch it",
                        f"deploy it from CI with: inv deploy --env {env.name}")
    context = kube.resolve_context(env.context)
    guard_context(project, env, context)
    if reporter is not None:
        ensure_minikube(env, context, dry_run=dry_run, reporter=reporter)
    api = kube.client(context)
    if reporter is not None:
        settle_namespace(api, env.namespace, reporter, dry_run=dry_run)
    release = helm.status(project.release, env.namespace, context) if read_release else None
    # The history matters for rollbacks and for freeing a pending release; a deploy needs it only then.
    wanted = release is not None and (read_history or release.pending)
    revisions = helm.history(project.release, env.namespace, context) if wanted else []
    return Connected(project, env, context, api, release, revisions)


def settle_namespace(api, namespace: str, reporter: Reporter, *, dry_run: bool = False,
                     bound: float = NAMESPACE_DELETION_WAIT) -> None:
    """If ``namespace`` is being deleted, say so and wait up to ``bound`` seconds for it to be gone.

    OperationFailed if it is still there then. ``dry_run`` says it and does not wait.
    """
    try:
        since = kube.namespace_deletion(api, namespace)
    except Exception as exc:
        raise kube.api_error(api, exc, f"reading namespace {namespace}") from exc
    if since is None:
        return
    if dry_run:
        reporter.line(f"namespace {namespace} is being deleted (since {since}): a deploy would first wait up to "
                      f"{bound:.0f}s for it to be gone")
        return
    reporter.line(f"namespace {namespace} is being deleted (since {since}): waiting up to {bound:.0f}s for it to be "
                  "gone before deploying")
    start = time.monotonic()
    try:
        gone = kube.wait_namespace_deleted(api, namespace, bound)
    except Exception as exc:
        raise kube.api_error(api, exc, f"waiting for namespace {namespace} to be deleted") from exc
    if not gone:
        raise OperationFailed(f"namespace {namespace} is still being deleted after {bound:.0f}s",
                              f"see what holds it: kubectl get namespace {namespace} -o yaml (status.conditions "
                              "name the remaining resources and finalizers); deploy again once it is gone")
    reporter.ok(f"namespace {namespace} is gone after {time.monotonic() - start:.0f}s; the deploy creates it again")


def diagnostics_dir(project: Project, env: Environment) -> Path:
    """Where a failed wait writes its diagnostics bundle (one folder per run, named by time)."""
    return project.diagnostics_dir / f"{env.name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"


def wait_release(cluster: Connected, reporter: Reporter, *, out_dir: Path | None = None) -> list[dict[str, Any]]:
    """Wait for the release's workloads (from its manifest, returned); OperationFailed with the reason if not ready.

    With ``out_dir`` a failure also writes the diagnostics bundle there, helm status and history included.
    """
    project, env = cluster.project, cluster.env
    objects = helm.manifest(project.release, env.namespace, cluster.context)
    resources = readiness.resources_in(objects, env.namespace)
    # No label selector: the workloads' pods are found by owner references and the workloads' own
    # selectors, whatever labels the chart gives them.
    readiness.wait_with_view(cluster.api, resources, env.timeout, reporter, diagnostics_dir=out_dir,
                             namespace=env.namespace, extra=lambda: _helm_extra(cluster), manifest=objects)
    return objects


def _helm_extra(cluster: Connected) -> dict[str, str]:
    project, env = cluster.project, cluster.env
    extra = {}
    for name, args in (("helm-status.txt", ["status", project.release]),
                       ("helm-history.txt", ["history", project.release])):
        result = proc.run(["helm", *args, "--namespace", env.namespace, "--kube-context", cluster.context],
                          timeout=60, check=False, what=f"helm {args[0]}")
        extra[name] = result.stdout + result.stderr
    return extra


