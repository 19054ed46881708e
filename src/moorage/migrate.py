"""Migrations as an in-cluster Job, with its logs streamed while it runs.

Orchestration floor: ``db.migration_job`` builds the Job from the live
backend Deployment (same image, config and secrets as the release);
this module creates it, streams the migration pod's log lines as they come,
waits for the Job with the readiness engine (Complete = done, Failed = failed,
with its reason) and, on failure, shows the log tail. The Job has
``backoffLimit: 0`` and a TTL, so a failed migration is not retried behind the
user's back and old Jobs clean themselves up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from . import db
from .core.config import Environment, Project
from .core.errors import OperationFailed, UserError
from .core.report import Reporter

LOG_POLL_SECONDS = 0.5


def run_job(api, project: Project, env: Environment, deployment_name: str, command: Sequence[str],
            reporter: Reporter, *, timeout: int | None = None) -> str:
    """Create the migration Job, stream its logs, wait for it; returns the Job's name."""
    from kubernetes.client import AppsV1Api, BatchV1Api
    from kubernetes.client.exceptions import ApiException

    from . import kube, readiness

    try:
        deployment = kube.read_json(kube.retrying(AppsV1Api(api).read_namespaced_deployment, deployment_name,
                                                  env.namespace, _preload_content=False))
    except ApiException as exc:
        if exc.status == 404:
            raise UserError(f"deployment {env.namespace}/{deployment_name} does not exist, so there is no image "
                            "and config to migrate with",
                            f"deploy first (inv dev.deploy --env {env.name}) or use --local with a DATABASE_URL") from None
        raise kube.api_error(api, exc, f"reading deployment {deployment_name}") from None
    name = db.migration_job_name(project.release, datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
    job = db.migration_job(deployment, list(command), name=name)
    job["metadata"]["namespace"] = env.namespace
    try:
        kube.retrying(BatchV1Api(api).create_namespaced_job, env.namespace, job, _preload_content=False)
    except ApiException as exc:
        raise kube.api_error(api, exc, f"creating job {name}") from None
    reporter.step(f"job {name}: {' '.join(command)}")
    done = threading.Event()
    lines: list[str] = []
    follower = threading.Thread(target=_follow_logs, args=(api, env.namespace, name, done, lines, reporter.line),
                                name="migration logs", daemon=True)
    follower.start()
    try:
        result = readiness.wait_for(api, [readiness.Resource("Job", name, env.namespace)],
                                    timeout or env.timeout)
    finally:
        done.set()
        follower.join(timeout=10)
    if not result.ok:
        tail = " | ".join(lines[-5:]) or "no log lines"
        raise OperationFailed(f"migration job {name} {result.verdict}: {result.reason}; last log lines: {tail}",
                              f"see the full log with: inv dev.logs --env {env.name} --component migration")
    reporter.ok(f"migration job {name} completed")
    return name


def _follow_logs(api, namespace: str, job: str, done: threading.Event, lines: list[str],
                 write: Callable[[str], None]) -> None:
    """Wait for the Job's pod to start, then stream its log until it ends."""
    from kubernetes.client import CoreV1Api

    from . import kube

    core = CoreV1Api(api)
    while True:  # only until the pod has started; one last look after the Job has finished
        finished = done.is_set()
        pods = kube.read_json(core.list_namespaced_pod(namespace, label_selector=f"job-name={job}",
                                                       _preload_content=False)).get("items") or []
        started = [p for p in pods if _started(p)]
        if started:
            pod = started[0]["metadata"]["name"]
            break
        if finished:
            return
        done.wait(LOG_POLL_SECONDS)
    try:
        response = core.read_namespaced_pod_log(pod, namespace, container=db.MIGRATION_CONTAINER, follow=True,
                                                _preload_content=False)
        for raw in response.stream(64 * 1024):
            for line in raw.decode(errors="replace").splitlines():
                lines.append(line)
                write(f"[{job}] {line}")
    except Exception as exc:  # noqa: BLE001 - the log is a convenience; the Job's verdict decides
        write(f"[{job}] (log stream ended: {kube.connection_reason(exc)})")


def _started(pod: dict) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return any("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {}) for s in statuses)
