"""Operations on an installed release: status, rollback, undeploy.

Orchestration floor, like ``moorage.deploy``: each operation is a small plan
(printable with ``--dry-run``) and its execution through helm and the
Kubernetes client.

``undeploy`` keeps data: ``helm uninstall`` does not delete the PVCs that
StatefulSets create from their volumeClaimTemplates, nor those the chart marks
``helm.sh/resource-policy: keep`` (the backup volume). ``--purge`` deletes
every PVC labelled with the release's instance label as well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from . import helm, kube, readiness
from .connection import connect, wait_release
from .core import proc
from .core.config import Environment, Project
from .core.errors import UserError
from .core.report import Reporter


@dataclass(frozen=True)
class RollbackTarget:
    current: int
    revision: int
    command: list[str]


def pick_rollback(revisions: list[helm.Revision], current: int, wanted: int | None) -> int:
    """The revision to roll back to: ``wanted`` if it exists, else the last good one before ``current``."""
    if wanted is not None:
        if wanted not in {r.revision for r in revisions}:
            known = ", ".join(str(r.revision) for r in revisions) or "none"
            raise UserError(f"revision {wanted} is not in the release history (known: {known})",
                            "pick one listed by `inv dev.status`")
        if wanted == current:
            raise UserError(f"revision {wanted} is the current revision", "pick an earlier one")
        return wanted
    previous = helm.last_deployed(revisions, before=current)
    if previous is None:
        raise UserError(f"revision {current} has no earlier successful revision to roll back to",
                        "use `inv dev.undeploy` to remove the release instead")
    return previous.revision


def rollback_target(project: Project, env: Environment, wanted: int | None) -> RollbackTarget:
    cluster = connect(project, env)
    if cluster.release is None:
        raise UserError(f"release '{project.release}' is not installed in {env.namespace}",
                        f"deploy it first: inv dev.deploy --env {env.name}")
    revision = pick_rollback(cluster.revisions, cluster.release.revision, wanted)
    command = helm.rollback_command(project.release, revision, env.namespace, cluster.context, env.timeout,
                                    helm.major_version())
    return RollbackTarget(cluster.release.revision, revision, command)


def rollback(project: Project, env: Environment, target: RollbackTarget, reporter: Reporter) -> None:
    proc.run(target.command, timeout=env.timeout + 60, what="helm rollback", shield=True)
    cluster = connect(project, env)
    wait_release(cluster, reporter)
    reporter.ok(f"rolled back to revision {target.revision} (now revision "
                f"{cluster.release.revision if cluster.release else '?'})")


@dataclass
class UndeployPlan:
    release: str
    namespace: str
    context: str
    installed: bool
    uninstall: list[str]
    purge: bool
    volumes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.installed:
            out.append("run: " + " ".join(self.uninstall))
        else:
            out.append(f"release '{self.release}' is not installed in {self.namespace}")
        if self.purge:
            out += [f"delete PersistentVolumeClaim {name} (its data is lost)" for name in self.volumes] or \
                   ["no PersistentVolumeClaims to delete"]
        elif self.volumes:
            out.append(f"keep {len(self.volumes)} PersistentVolumeClaim(s): {', '.join(self.volumes)} "
                       "(--purge deletes them)")
        return out


def undeploy_plan(project: Project, env: Environment, *, purge: bool) -> UndeployPlan:
    from kubernetes.client import CoreV1Api

    cluster = connect(project, env)
    claims = kube.retrying(CoreV1Api(cluster.api).list_namespaced_persistent_volume_claim, env.namespace,
                           label_selector=cluster.selector)
    volumes = sorted(c.metadata.name for c in claims.items)
    return UndeployPlan(project.release, env.namespace, cluster.context, cluster.release is not None,
                        helm.uninstall_command(project.release, env.namespace, cluster.context, env.timeout),
                        purge, volumes)


def undeploy(project: Project, env: Environment, plan: UndeployPlan, reporter: Reporter) -> None:
    if plan.installed:
        proc.run(plan.uninstall, timeout=env.timeout + 60, what="helm uninstall", shield=True)
        reporter.ok(f"release {plan.release} uninstalled from {plan.namespace}")
    if plan.purge and plan.volumes:
        from kubernetes.client import CoreV1Api

        api = CoreV1Api(connect(project, env).api)
        for name in plan.volumes:
            kube.retrying(api.delete_namespaced_persistent_volume_claim, name, env.namespace, _preload_content=False)
            reporter.ok(f"deleted PersistentVolumeClaim {name}")
    elif plan.volumes:
        reporter.line(f"kept {len(plan.volumes)} PersistentVolumeClaim(s); `inv dev.undeploy --purge` deletes them")


@dataclass
class StatusReport:
    release: str
    namespace: str
    context: str
    installed: bool
    revision: int | None = None
    state: str | None = None
    chart: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    resources: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_status(project: Project, env: Environment) -> StatusReport:
    """The release, its history, its images and the state of each workload, read in one pass."""
    cluster = connect(project, env)
    report = StatusReport(project.release, env.namespace, cluster.context, cluster.release is not None)
    if cluster.release is None:
        return report
    report.revision = cluster.release.revision
    report.state = cluster.release.status
    report.chart = cluster.release.chart
    report.history = [asdict(r) for r in cluster.revisions]
    objects = helm.manifest(project.release, env.namespace, cluster.context)
    report.images = helm.images_in(objects)
    resources = readiness.resources_in(objects, env.namespace)
    for state in readiness.snapshot(cluster.api, resources, label_selector=cluster.selector):
        report.resources.append({"resource": str(state.resource), "state": str(state.state), "message": state.message})
    return report


def show_status(report: StatusReport, reporter: Reporter) -> None:
    if not report.installed:
        reporter.line(f"release '{report.release}' is not installed in {report.namespace} (context {report.context})")
        return
    reporter.line(f"release {report.release} in {report.namespace} (context {report.context}): "
                  f"revision {report.revision}, {report.state}, chart {report.chart}")
    reporter.table(["revision", "status", "chart", "description", "updated"],
                   [[h["revision"], h["status"], h["chart"], h["description"], h["updated"][:19]]
                    for h in report.history[-5:]], title="history")
    reporter.table(["resource", "state", "message"],
                   [[r["resource"], r["state"], r["message"]] for r in report.resources], title="workloads")
    for image in report.images:
        reporter.line(f"image: {image}")
