"""Entry point: ``python -m moorage_worker``.

Environment: REDIS_URL, DATABASE_URL, LOG_LEVEL, HEALTH_PORT (default 8001).
SIGTERM: warm shutdown (finish the current job, exit 0); a second SIGTERM stops at once.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from moorage_common.jobs import QUEUE_NAME
from moorage_common.logs import configure_logging
from moorage_common.settings import ConfigError, Settings
from redis import Redis
from rq import Queue, Worker

import moorage_worker.tasks  # noqa: F401 - imported before forking so each job starts warm
from moorage_worker.health import start_health_server

# Idle heartbeat every WORKER_TTL - 15 s (RQ's dequeue timeout); the probe
# calls the worker dead after STALE_AFTER s without one.
WORKER_TTL = 30
STALE_AFTER = 90

log = logging.getLogger("moorage.worker")


class ItemWorker(Worker):
    """RQ's forking worker, remembering whether a signal asked it to stop."""

    stop_signal_received = False

    def request_stop(self, signum, frame):
        self.stop_signal_received = True
        super().request_stop(signum, frame)


def main() -> int:
    try:
        settings = Settings.from_env()
        port = int(os.environ.get("HEALTH_PORT", "8001"))
    except (ConfigError, ValueError) as exc:
        configure_logging("INFO")
        log.error("invalid configuration: %s", exc)
        return 2
    configure_logging(settings.log_level)

    # No socket_timeout on the worker's connection: RQ blocks on BLPOP for up to
    # its dequeue timeout, and a read timeout would make it quit.
    connection = Redis.from_url(settings.redis_url, socket_connect_timeout=5, health_check_interval=30)
    probe_redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    worker = ItemWorker(
        [Queue(QUEUE_NAME, connection=connection)],
        connection=connection,
        name=f"{socket.gethostname()}-{os.getpid()}",
        worker_ttl=WORKER_TTL,
    )
    server = start_health_server(port, worker, probe_redis, STALE_AFTER)
    log.info("worker starting", extra={"queue": QUEUE_NAME, "health_port": port})
    try:
        worker.work(with_scheduler=True, logging_level=settings.log_level)
    finally:
        server.shutdown()
    # RQ's loop also returns when it gives up (lost Redis, internal error): that must not look like success.
    if worker.stop_signal_received:
        log.info("worker stopped on request")
        return 0
    log.error("worker loop ended without a stop request")
    return 1


if __name__ == "__main__":
    sys.exit(main())
