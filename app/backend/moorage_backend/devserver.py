"""Development server: uvicorn on the socket that ``moorage_common.devrun`` holds across reloads.

    python -m moorage_common.devrun --bind 0.0.0.0:8000 --overlap \
        --preload fastapi,sqlalchemy,pydantic,redis,rq,prometheus_client,uvicorn \
        moorage_backend.devserver:serve

Each reload imports the application from disk in a fresh child (an error in it
is reported by the runner before anything is stopped); the child tells the
runner it is ready once uvicorn has run the lifespan startup and listens, and,
when a newer one replaces it, once it has stopped accepting connections.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from moorage_common import devrun

from moorage_backend.main import app


class _Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            devrun.ready()

    async def shutdown(self, sockets=None) -> None:
        for server in self.servers:  # stop accepting first (uvicorn does too; closing twice is harmless) ...
            server.close()
        devrun.stopped_accepting()  # ... so the runner reports the new generation only once it gets every connection
        await super().shutdown(sockets=sockets)


class _NoProbes(logging.Filter):
    """Probes every second would drown the log that dev.watch streams: their access lines are left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(path in record.getMessage() for path in ('"GET /healthz ', '"GET /readyz '))


def serve(sock: socket.socket) -> int:
    config = uvicorn.Config(app, proxy_headers=True, forwarded_allow_ips="*", timeout_graceful_shutdown=10)
    logging.getLogger("uvicorn.access").addFilter(_NoProbes())  # after the Config: it sets up logging
    server = _Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 3


serve.devrun_notifies = True
