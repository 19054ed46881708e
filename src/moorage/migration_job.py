"""The in-cluster migration Job: built from the live backend Deployment, its log streamed, its verdict waited for.

:func:`run_migration_job` creates the Job (``migrations.migration_job``:
same image, config and secrets as the release, ``backoffLimit: 0`` and a TTL,
so a failed migration is not retried behind the user's back and old Jobs
clean themselves up), follows its pod's log while it runs, and waits for the
Job with the readiness engine (Complete = done, Failed = failed, with its
reason). ``moorage.database`` decides when a Job runs and what guards it.

Orchestration floor, beside ``connection``: it joins ``kube``, ``migrations``
and ``readiness``, which must not import each other sideways.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from . import kube, migrations, readiness
from .core.errors import OperationFailed, UserError
from .core.report import Reporter

LOG_POLL_SECONDS = 0.5


def run_migration_job(api, namespace: str, release: str, env_name: str, workload: tuple[str, str],
                      command: Sequence[str], reporter: Reporter, *, timeout: int,
                      collect: list[str] | None = None) -> str:
    """Create the migration Job from ``workload`` (kind, name), stream its logs, wait for it; the Job's name.

    ``collect`` receives the Job's log lines (its output, for a command run to read something).
    """
    source = _read_workload(api, namespace, env_name, workload)
    name = migrations.migration_job_name(release, datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
    job = migrations.migration_job(source, list(command), name=name)
    job["metadata"]["namespace"] = namespace
    _create_job(api, namespace, job)
    reporter.step(f"job {name}: {' '.join(command)}")
    done = threading.Event()
    lines: list[str] = [] if collect is None else collect
    follower = threading.Thread(target=follow_job_log, args=(api, namespace, name, done, lines, reporter.line),
                                name="migration logs", daemon=True)
    follower.start()
    try:
        result = readiness.wait_for(api, [readiness.Resource("Job", name, namespace)], timeout)
    finally:
        done.set()
        follower.join(timeout=10)
    if not result.ok:
        tail = " | ".join(lines[-5:]) or "no log lines"
        raise OperationFailed(f"migration job {name} {result.verdict}: {result.reason}; last log lines: {tail}",
                              f"the Job is kept for an hour: kubectl logs --namespace {namespace} job/{name}")
    reporter.ok(f"migration job {name} completed")
    return name


_READERS = {"deployment": "read_namespaced_deployment", "statefulset": "read_namespaced_stateful_set",
            "daemonset": "read_namespaced_daemon_set"}


def _read_workload(api, namespace: str, env_name: str, workload: tuple[str, str]) -> dict[str, Any]:
    from kubernetes.client import AppsV1Api
    from kubernetes.client.exceptions import ApiException

    kind, name = workload
    try:
        read = getattr(AppsV1Api(api), _READERS[kind])
        return kube.read_json(kube.retrying(read, name, namespace, _preload_content=False))
    except ApiException as exc:
        if exc.status == 404:
            raise UserError(f"{kind} {namespace}/{name} does not exist, so there is no image "
                            "and config to migrate with",
                            f"deploy first (inv dev.deploy --env {env_name}), fix migrations.workload in invoke.yaml, "
                            "or use --local with a DATABASE_URL") from None
        raise kube.api_error(api, exc, f"reading {kind} {name}") from None


def _create_job(api, namespace: str, job: dict[str, Any]) -> None:
    from kubernetes.client import BatchV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        kube.retrying(BatchV1Api(api).create_namespaced_job, namespace, job, _preload_content=False)
    except ApiException as exc:
        raise kube.api_error(api, exc, f"creating job {job['metadata']['name']}") from None


def follow_job_log(api, namespace: str, job: str, done: threading.Event, lines: list[str],
                   write: Callable[[str], None]) -> None:
    """Wait for the Job's pod to start, then stream its log until it ends.

    Runs in a thread: any error ends the log with one line saying why (the
    Job's verdict, not its log, decides the outcome), never a thread traceback.
    """

    def on_line(line: str) -> None:
        lines.append(line)
        write(f"[{job}] {line}")

    try:
        pod = started_pod(api, namespace, job, done)
        if pod is not None:
            kube.follow_log(api, namespace, pod, migrations.MIGRATION_CONTAINER, on_line=on_line)
    except Exception as exc:  # noqa: BLE001 - the log is a convenience; the Job's verdict decides
        write(f"[{job}] (log unavailable: {_reason(exc)})")


def _reason(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status:
        return f"the API server answered {status} {getattr(exc, 'reason', '') or ''}".strip()
    return kube.connection_reason(exc)


def started_pod(api, namespace: str, job: str, done: threading.Event) -> str | None:
    """The Job's pod once a container runs (or ran); None if the Job finished without one.

    Polled every LOG_POLL_SECONDS until the pod has started (the wait wakes
    as soon as the Job finishes), with one last look after it finished.
    ``kube.list_pods`` itself retries what is worth retrying.
    """
    from tenacity import Retrying, retry_if_result, stop_never, wait_fixed

    def look() -> tuple[str | None, bool]:
        finished = done.is_set()
        started = [p for p in kube.list_pods(api, namespace, f"job-name={job}") if _started(p)]
        return (started[0]["metadata"]["name"] if started else None), finished

    poll = Retrying(retry=retry_if_result(lambda seen: seen[0] is None and not seen[1]), stop=stop_never,
                    wait=wait_fixed(LOG_POLL_SECONDS), sleep=done.wait, reraise=True)
    return poll(look)[0]


def _started(pod: dict) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return any("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {}) for s in statuses)
