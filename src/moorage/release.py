"""Operations on an installed release: status, logs, port-forwards, rollback, undeploy.

Orchestration floor, like ``moorage.deploy``: each operation is a small plan
(printable with ``--dry-run``) and its execution through helm and the
Kubernetes client. The release's objects are found from its manifest
(``helm get manifest``) and its workloads' selectors and owner references, never
by a label the chart may not set (:mod:`moorage.readiness.workloads`).

``undeploy`` keeps data: ``helm uninstall`` does not delete the PVCs that
StatefulSets create from their volumeClaimTemplates, nor those marked
``helm.sh/resource-policy: keep`` in the release's stored manifest. The PVCs a
chart renders as plain templates are marked so first (in the stored release and
on the live object), and what remains afterwards is listed, not assumed.
``--purge`` deletes them all instead.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import helm, kube, readiness
from .connection import connect, wait_release
from .core import proc
from .core.config import Environment, Project
from .core.errors import MoorageError, OperationFailed, UserError
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


KEEP = "helm.sh/resource-policy"  # Helm's annotation: `keep` leaves the object in place on uninstall
RELEASE_NAME = "meta.helm.sh/release-name"  # Helm's annotation on the objects a release manages
INSTANCE = "app.kubernetes.io/instance"  # Helm's recommended label (a chart may not set it)


@dataclass
class UndeployPlan:
    release: str
    namespace: str
    context: str
    installed: bool
    uninstall: list[str]
    purge: bool
    volumes: list[str] = field(default_factory=list)
    rendered: list[str] = field(default_factory=list)  # the volumes the chart renders (helm would delete them)
    revision: int | None = None

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


def _claims(api, namespace: str) -> list[dict[str, Any]]:
    return readiness.list_objects(api, "PersistentVolumeClaim", namespace)


def release_volumes(release: str, namespace: str, objects: Sequence[dict[str, Any]],
                    claims: Sequence[dict[str, Any]]) -> list[str]:
    """The release's PVCs among ``claims``: rendered by its chart, made from its StatefulSets'
    volumeClaimTemplates, or left by an earlier install (Helm's ownership annotation, the standard
    instance label)."""
    names = set(readiness.release_claims(objects, claims))
    for claim in claims:
        meta = claim.get("metadata") or {}
        if (meta.get("annotations") or {}).get(RELEASE_NAME) == release or \
                (meta.get("labels") or {}).get(INSTANCE) == release:
            names.add(meta["name"])
    return sorted(names)


def undeploy_plan(project: Project, env: Environment, *, purge: bool) -> UndeployPlan:
    cluster = connect(project, env)
    objects = helm.manifest(project.release, env.namespace, cluster.context) if cluster.release else []
    claims = _claims(cluster.api, env.namespace)
    volumes = release_volumes(project.release, env.namespace, objects, claims)
    rendered = sorted(set(readiness.claims_in(objects)) & set(volumes))
    return UndeployPlan(project.release, env.namespace, cluster.context, cluster.release is not None,
                        helm.uninstall_command(project.release, env.namespace, cluster.context, env.timeout),
                        purge, volumes, rendered, cluster.release.revision if cluster.release else None)


def undeploy(project: Project, env: Environment, plan: UndeployPlan, reporter: Reporter) -> None:
    from kubernetes.client import CoreV1Api

    api = connect(project, env, read_release=False).api
    if plan.installed:
        if not plan.purge and plan.rendered:
            keep_rendered_claims(api, plan)
        proc.run(plan.uninstall, timeout=env.timeout + 60, what="helm uninstall", shield=True)
        reporter.ok(f"release {plan.release} uninstalled from {plan.namespace}")
    if plan.purge:
        core = CoreV1Api(api)
        for name in plan.volumes:
            try:
                kube.retrying(core.delete_namespaced_persistent_volume_claim, name, env.namespace,
                              _preload_content=False)
            except Exception as exc:
                if getattr(exc, "status", None) != 404:  # helm uninstall deleted the rendered ones already
                    raise kube.api_error(api, exc, f"deleting PersistentVolumeClaim {name}") from exc
            reporter.ok(f"deleted PersistentVolumeClaim {name}")
        return
    remaining = {c["metadata"]["name"] for c in _claims(api, env.namespace)
                 if not (c["metadata"].get("deletionTimestamp"))}
    kept = [name for name in plan.volumes if name in remaining]
    lost = [name for name in plan.volumes if name not in remaining]
    if kept:
        reporter.line(f"kept {len(kept)} PersistentVolumeClaim(s): {', '.join(kept)}; "
                      "`inv dev.undeploy --purge` deletes them")
    if lost:
        reporter.warn(f"{len(lost)} PersistentVolumeClaim(s) did not survive the uninstall: {', '.join(lost)}")


def keep_rendered_claims(api, plan: UndeployPlan) -> None:
    """Mark the PVCs the chart renders ``helm.sh/resource-policy: keep`` so that ``helm uninstall`` leaves them.

    Helm decides from the manifest it stored with the release, not from the live
    object, so the mark goes into the release's latest stored revision (Helm's
    ``secret`` or ``configmap`` storage) and onto the live PVC (which a later
    upgrade then also keeps).
    """
    from kubernetes.client import CoreV1Api

    core = CoreV1Api(api)
    patch = {"metadata": {"annotations": {KEEP: "keep"}}}
    for name in plan.rendered:
        try:
            kube.retrying(core.patch_namespaced_persistent_volume_claim, name, plan.namespace, patch,
                          _preload_content=False)
        except Exception as exc:
            if getattr(exc, "status", None) != 404:
                raise kube.api_error(api, exc, f"marking PersistentVolumeClaim {name} to keep") from exc
    if plan.revision is not None:
        _mark_stored_release(core, plan)


def _mark_stored_release(core, plan: UndeployPlan) -> None:
    driver = (os.environ.get("HELM_DRIVER") or "secret").lower().rstrip("s")
    if driver not in ("secret", "configmap"):
        raise OperationFailed(f"cannot mark the volumes to keep in Helm's '{driver}' release storage",
                              "keep them with `helm.sh/resource-policy: keep` in the chart, or unset HELM_DRIVER")
    name = f"sh.helm.release.v1.{plan.release}.v{plan.revision}"
    read, replace = ((core.read_namespaced_secret, core.replace_namespaced_secret) if driver == "secret" else
                     (core.read_namespaced_config_map, core.replace_namespaced_config_map))
    try:
        stored = kube.read_json(kube.retrying(read, name, plan.namespace, _preload_content=False))
        text = stored["data"]["release"]
        record = decode_release(base64.b64decode(text).decode() if driver == "secret" else text)
        record["manifest"] = keep_in_manifest(record.get("manifest") or "", set(plan.rendered))
        encoded = encode_release(record)
        stored["data"]["release"] = base64.b64encode(encoded.encode()).decode() if driver == "secret" else encoded
        kube.retrying(replace, name, plan.namespace, stored, _preload_content=False)
    except Exception as exc:
        raise kube.api_error(core.api_client, exc, f"marking the volumes to keep in Helm's record {name}") from exc


def decode_release(text: str) -> dict[str, Any]:
    """A release record as Helm stores it: base64 of (usually gzipped) JSON."""
    raw = base64.b64decode(text)
    return json.loads(gzip.decompress(raw) if raw[:3] == b"\x1f\x8b\x08" else raw)


def encode_release(record: dict[str, Any]) -> str:
    return base64.b64encode(gzip.compress(json.dumps(record).encode(), compresslevel=9)).decode()


def keep_in_manifest(manifest: str, names: set[str]) -> str:
    """``manifest`` with the PersistentVolumeClaims named in ``names`` annotated ``helm.sh/resource-policy: keep``
    (the other documents unchanged, each document's ``# Source:`` comment kept)."""
    import re

    import yaml

    out = []
    for doc in re.split(r"(?m)^---[ \t]*$", manifest):
        body = yaml.safe_load(doc) if doc.strip() else None
        if isinstance(body, dict) and body.get("kind") == "PersistentVolumeClaim" and \
                (body.get("metadata") or {}).get("name") in names:
            comments = "".join(line + "\n" for line in doc.strip("\n").splitlines() if line.startswith("#"))
            body["metadata"].setdefault("annotations", {})
            body["metadata"]["annotations"] = {**(body["metadata"]["annotations"] or {}), KEEP: "keep"}
            doc = "\n" + comments + yaml.safe_dump(body, sort_keys=False)
        out.append(doc)
    return "---".join(out)


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
    for state in readiness.snapshot(cluster.api, resources):
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


def component_pods(api, namespace: str, objects: Sequence[dict[str, Any]], release: str,
                   component: str | None) -> list[dict[str, Any]]:
    """The pods of the release's workloads that ``component`` names (:func:`readiness.workloads.matches`);
    None: of all its workloads.

    UserError listing the known components when none matches; OperationFailed when they have no pod.
    """
    workloads = readiness.workloads_in(objects, namespace)
    chosen = workloads if component is None else readiness.matching(workloads, component)
    if not workloads:
        raise UserError(f"release '{release}' has no workload (Deployment, StatefulSet, DaemonSet or Job) to show",
                        "check the chart: `helm get manifest` lists what it installed")
    if not chosen:
        known = ", ".join(readiness.components(workloads, release)) or "none"
        raise UserError(f"no workload of release '{release}' is component '{component}' (known: {known})",
                        "pass one of them with --component")
    kinds = ("Pod", "ReplicaSet", *sorted({w["kind"] for w in chosen}))
    try:
        live = {kind: readiness.list_objects(api, kind, namespace) for kind in kinds}
    except Exception as exc:
        raise kube.api_error(api, exc, f"listing the pods of {namespace}") from exc
    named = {(kind, o["metadata"]["name"]): o for kind, items in live.items() for o in items}
    pods = {}
    for w in chosen:  # the live workload when there is one: a Job's selector is set by the API server
        workload = named.get((w["kind"], w["metadata"]["name"]), w)
        pods.update({p["metadata"]["name"]: p for p in readiness.pods_of(workload, live["Pod"], live["ReplicaSet"])})
    if not pods:
        names = ", ".join(f"{w['kind'].lower()}/{w['metadata']['name']}" for w in chosen)
        raise OperationFailed(f"{names} has no pod in namespace {namespace}", "see `inv dev.status`")
    return [pods[name] for name in sorted(pods)]


def show_logs(project: Project, env: Environment, component: str | None, *, tail: int | None = 100, follow: bool = False,
              previous: bool = False, write: Callable[[str], Any] = print) -> int:
    """Write (or follow) the logs of a component's pods (None: every workload's); the number of containers read."""
    cluster = connect(project, env)
    if cluster.release is None:
        raise UserError(f"release '{project.release}' is not installed in {env.namespace}",
                        f"deploy it first: inv dev.deploy --env {env.name}")
    objects = helm.manifest(project.release, env.namespace, cluster.context)
    pods = component_pods(cluster.api, env.namespace, objects, project.release, component)
    return kube.stream_pod_logs(cluster.api, env.namespace, pods, tail=tail, follow=follow, previous=previous,
                                write=write)


def release_service_ports(objects: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """(Service, port) for every port of the release's Services that send to its pods (a selector, not
    headless: a headless Service repeats the pods another one reaches), in name order."""
    found = []
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj.get("kind") == "Service" and spec.get("selector") and spec.get("clusterIP") != "None":
            found += [(obj["metadata"]["name"], int(p["port"])) for p in spec.get("ports") or [] if p.get("port")]
    return sorted(found)


@contextlib.contextmanager
def forward_services(project: Project, env: Environment, service: str | None, port: int | None,
                     local_port: int | None, reporter: Reporter) -> Iterator[list[str]]:
    """Forward local ports to one Service (``service``) or to every Service of the release; yields the URLs.

    Each local port is the Service's own when free, else any free one (``local_port`` for one Service is
    taken as given). With every Service, one that cannot be forwarded (no ready pod yet) is reported and
    skipped, the others still forwarded.
    """
    cluster = connect(project, env)
    if service is not None:
        name = project.service_name(service)
        pairs = [(name, port or kube.service_port(cluster.api, env.namespace, name))]
    elif port or local_port:
        raise UserError("--port and --local-port pick a port of one Service", "add --service NAME")
    else:
        if cluster.release is None:
            raise UserError(f"release '{project.release}' is not installed in {env.namespace}",
                            f"deploy it first: inv dev.deploy --env {env.name}")
        pairs = release_service_ports(helm.manifest(project.release, env.namespace, cluster.context))
        if not pairs:
            raise UserError(f"release '{project.release}' has no Service that sends to its pods",
                            "forward to a pod's port with kubectl port-forward pod/NAME PORT")
    urls = []
    with contextlib.ExitStack() as stack:
        for name, remote in pairs:
            try:
                bound = stack.enter_context(_forward(cluster.api, env.namespace, name, remote, local_port))
            except MoorageError as exc:
                if service is not None:
                    raise
                reporter.line(f"svc/{name}:{remote} not forwarded: {exc.message}")
                continue
            urls.append(f"http://127.0.0.1:{bound}")
            reporter.line(f"forwarding http://127.0.0.1:{bound} -> svc/{name}:{remote}")
        if not urls:
            raise OperationFailed(f"no Service of release '{project.release}' could be forwarded",
                                  f"see `inv dev.status --env {env.name}`")
        yield urls


@contextlib.contextmanager
def _forward(api, namespace: str, service: str, remote: int, local_port: int | None) -> Iterator[int]:
    """kube.port_forward on ``local_port``, else on the Service's own port when free, else on a free one."""
    if local_port is None:
        try:
            listener = socket.create_server(("127.0.0.1", remote))
        except OSError:
            local_port = 0
        else:
            listener.close()
            local_port = remote
    with kube.port_forward(api, namespace, service, remote, local_port=local_port) as bound:
        yield bound
