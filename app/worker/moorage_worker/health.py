"""HTTP health endpoint for probes: GET /healthz on HEALTH_PORT (default 8001).

200 only when the worker's loop is alive (it heartbeated recently) and Redis
answers; 503 otherwise, with the reason in the JSON body.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from redis import Redis
from rq import Worker

log = logging.getLogger("moorage.worker.health")


def worker_status(worker: Worker, stale_after: float) -> str:
    """Return "ok" when the work loop heartbeated within stale_after seconds.

    RQ heartbeats on every pass of its loop: at least every dequeue timeout when
    idle and every job-monitoring interval while a job runs.
    """
    if getattr(worker, "stop_signal_received", False):
        return "stopping"
    last = worker.last_heartbeat
    if last is None:
        return "starting"
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - last).total_seconds()
    return "ok" if age <= stale_after else f"no heartbeat for {age:.0f}s"


def redis_status(client: Redis) -> str:
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return f"{type(exc).__name__}: {exc}"[:200]
    return "ok"


def start_health_server(port: int, worker: Worker, redis: Redis, stale_after: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?", 1)[0] != "/healthz":
                self._reply(404, {"status": "fail", "error": "not found"})
                return
            checks = {"worker": worker_status(worker, stale_after), "redis": redis_status(redis)}
            ok = all(value == "ok" for value in checks.values())
            self._reply(200 if ok else 503, {"status": "ok" if ok else "fail", "checks": checks})

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
            log.debug("health request: " + format, *args)

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
