"""Smoke tests: the environment's HTTP checks, run through a port-forward.

Each check names a Service of the release (``service: backend`` means the
Service ``<release>-backend``), a port, a path, the expected status, JSON keys
the body must have and a latency budget. The HTTP part uses only the standard
library; the port-forward comes from ``moorage.kube`` (the Python client, no
kubectl needed) and is passed in as a callable so that this module stays a
capability that needs no cluster to test.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass

from .core.config import SmokeCheck
from .core.errors import MoorageError

#: (namespace, service, port) -> context manager yielding a local port
Forwarder = Callable[[str, str, int], AbstractContextManager[int]]


@dataclass(frozen=True)
class SmokeResult:
    name: str
    url: str
    ok: bool
    status: int | None
    latency_ms: float | None
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(check: SmokeCheck, status: int | None, body: bytes, latency_ms: float | None,
             url: str, error: str = "") -> SmokeResult:
    """Decide whether one response satisfies the check (pure)."""
    def result(ok: bool, detail: str) -> SmokeResult:
        return SmokeResult(check.name, url, ok, status, None if latency_ms is None else round(latency_ms, 1), detail)

    if status is None:
        return result(False, error or "no response")
    if status != check.status:
        return result(False, f"expected HTTP {check.status}, got {status}")
    if check.json_keys:
        try:
            data = json.loads(body or b"null")
        except ValueError:
            return result(False, "body is not JSON")
        if not isinstance(data, dict):
            return result(False, "body is not a JSON object")
        absent = [k for k in check.json_keys if k not in data]
        if absent:
            return result(False, f"JSON keys missing: {', '.join(absent)}")
    if check.max_latency_ms is not None and latency_ms is not None and latency_ms > check.max_latency_ms:
        return result(False, f"took {latency_ms:.0f} ms, budget {check.max_latency_ms} ms")
    return result(True, f"HTTP {status} in {latency_ms:.0f} ms")


def probe(check: SmokeCheck, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> SmokeResult:
    """One HTTP GET against a forwarded port."""
    url = f"http://{host}:{port}{check.path}"
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return evaluate(check, None, b"", None, url, error=f"request failed: {reason}")
    return evaluate(check, status, body, (time.perf_counter() - start) * 1000, url)


def _probe_until_ok(check: SmokeCheck, port: int, attempts: int, delay: float) -> SmokeResult:
    """Probe up to ``attempts`` times, ``delay`` s apart, until the check passes; the last result."""
    from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_fixed

    retrying = Retrying(stop=stop_after_attempt(attempts), wait=wait_fixed(delay),
                        retry=retry_if_result(lambda result: not result.ok),
                        retry_error_callback=lambda state: state.outcome.result())
    return retrying(probe, check, port)


def run_checks(checks: Iterable[SmokeCheck], namespace: str, service_name: Callable[[str], str],
               forward: Forwarder, attempts: int = 3, delay: float = 1.0) -> list[SmokeResult]:
    """Run every check, one port-forward per (service, port); a failing check is retried briefly.

    Retries cover the seconds after a rollout where a Service's endpoints are
    still settling; a check that keeps failing is reported as failed.
    """
    checks = list(checks)
    results: list[SmokeResult] = []
    groups: dict[tuple[str, int], list[SmokeCheck]] = {}
    for check in checks:
        groups.setdefault((check.service, check.port), []).append(check)
    by_name: dict[str, SmokeResult] = {}
    for (service, port), group in groups.items():
        full_name = service_name(service)
        try:
            with forward(namespace, full_name, port) as local_port:
                for check in group:
                    by_name[check.name] = _probe_until_ok(check, local_port, attempts, delay)
        except Exception as exc:  # noqa: BLE001 - a failed forward fails its checks, with the reason
            reason = exc.line() if isinstance(exc, MoorageError) else str(exc)
            for check in group:
                by_name[check.name] = SmokeResult(check.name, f"svc/{full_name}:{port}{check.path}", False,
                                                  None, None, f"port-forward failed: {reason}")
    for check in checks:
        results.append(by_name[check.name])
    return results


def ingress_urls(objects: Iterable[dict]) -> list[str]:
    """Where a release's Ingresses serve it: each rule's host and first Prefix or Exact path, https where a
    TLS entry names the host."""
    urls = []
    for obj in objects:
        spec = obj.get("spec") or {} if obj.get("kind") == "Ingress" else {}
        tls = {host for entry in spec.get("tls") or [] for host in entry.get("hosts") or []}
        for rule in spec.get("rules") or []:
            if rule.get("host"):
                paths = [p.get("path") for p in (rule.get("http") or {}).get("paths") or []
                         if p.get("pathType") in ("Prefix", "Exact") and p.get("path")]
                urls.append(f"{'https' if rule['host'] in tls else 'http'}://{rule['host']}{(paths or ['/'])[0]}")
    return list(dict.fromkeys(urls))
