"""Release state as Helm reports it: status, history, the deployed manifest, a pending release."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import proc
from ..core.errors import OperationFailed, UserError
from ..core.values import yaml_loader
from .commands import target_args

PENDING_STATES = ("pending-install", "pending-upgrade", "pending-rollback")


@dataclass(frozen=True)
class Release:
    """What ``helm status`` says of a release."""

    name: str
    namespace: str
    revision: int
    status: str
    chart: str = ""
    app_version: str = ""

    @property
    def pending(self) -> bool:
        return self.status in PENDING_STATES


@dataclass(frozen=True)
class Revision:
    revision: int
    status: str
    chart: str
    description: str
    updated: str




def status(release: str, namespace: str, context: str | None) -> Release | None:
    """The release's state, or None when it is not installed."""
    result = proc.run(["helm", "status", release, *target_args(namespace, context), "--output", "json"],
                      timeout=60, check=False, what="helm status")
    if result.returncode != 0:
        if "not found" in result.stderr.lower():
            return None
        raise OperationFailed(f"helm status {release} failed: {proc.tail_lines(result.stderr, 3)}",
                              "check that the cluster is reachable (inv doctor)")
    return parse_status(result.stdout)


def parse_status(text: str) -> Release:
    data = json.loads(text)
    info = data.get("info", {})
    chart = data.get("chart", {}).get("metadata", {})
    return Release(name=data["name"], namespace=data.get("namespace", ""), revision=int(data.get("version", 0)),
                   status=info.get("status", "unknown"),
                   chart=f"{chart.get('name', '')}-{chart.get('version', '')}", app_version=chart.get("appVersion", ""))


def history(release: str, namespace: str, context: str | None) -> list[Revision]:
    result = proc.run(["helm", "history", release, *target_args(namespace, context), "--output", "json"],
                      timeout=60, check=False, what="helm history")
    if result.returncode != 0:
        return []
    return parse_history(result.stdout)


def parse_history(text: str) -> list[Revision]:
    return [Revision(revision=int(r["revision"]), status=r.get("status", ""), chart=r.get("chart", ""),
                     description=r.get("description", ""), updated=str(r.get("updated", "")))
            for r in json.loads(text or "[]")]


def last_deployed(revisions: Sequence[Revision], before: int | None = None) -> Revision | None:
    """The newest revision that was deployed successfully (optionally older than ``before``)."""
    good = [r for r in revisions if r.status in ("deployed", "superseded") and (before is None or r.revision < before)]
    return max(good, key=lambda r: r.revision) if good else None


def check_not_pending(release: Release | None, revisions: Sequence[Revision], context: str | None) -> None:
    """A release stuck in pending-* blocks every upgrade: say how to recover."""
    if release is None or not release.pending:
        return
    target = f"--namespace {release.namespace}" + (f" --kube-context {context}" if context else "")
    previous = last_deployed(revisions, before=release.revision)
    if previous is not None:
        fix = f"helm rollback {release.name} {previous.revision} {target}"
    else:
        fix = f"helm uninstall {release.name} {target}"
    raise UserError(
        f"release '{release.name}' is stuck in {release.status} at revision {release.revision} "
        "(an earlier helm run was interrupted)",
        f"make sure no other deploy is running, then: {fix}",
    )


def deployed_digest(release: str, namespace: str, context: str | None) -> str:
    """The ``global.deployDigest`` the release was deployed with ("" when unknown)."""
    result = proc.run(["helm", "get", "values", release, *target_args(namespace, context), "--output", "json"],
                      timeout=60, check=False, what="helm get values")
    if result.returncode != 0:
        return ""
    try:
        values = json.loads(result.stdout or "{}") or {}
    except ValueError:
        return ""
    return str((values.get("global") or {}).get("deployDigest") or "")


def manifest(release: str, namespace: str, context: str | None) -> list[dict[str, Any]]:
    out = proc.run(["helm", "get", "manifest", release, *target_args(namespace, context)],
                   timeout=60, what="helm get manifest").stdout
    return parse_manifest(out)


def parse_manifest(text: str) -> list[dict[str, Any]]:
    import yaml


    return [doc for doc in yaml.load_all(text, Loader=yaml_loader()) if isinstance(doc, dict) and doc.get("kind")]


def images_in(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every container image referenced by pod templates in ``objects``."""
    images = []
    for obj in objects:
        spec = obj.get("spec") or {}
        template = (spec.get("jobTemplate", {}).get("spec", {}) if obj.get("kind") == "CronJob" else spec).get(
            "template", {})
        pod = template.get("spec") or (spec if obj.get("kind") == "Pod" else {})
        for key in ("initContainers", "containers"):
            for container in pod.get(key) or []:
                if container.get("image") and container["image"] not in images:
                    images.append(container["image"])
    return images
