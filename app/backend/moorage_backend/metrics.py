"""Prometheus metrics and the middleware that records them."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("moorage_http_requests_total", "HTTP requests handled", ["method", "route", "status"])
LATENCY = Histogram("moorage_http_request_duration_seconds", "HTTP request latency", ["method", "route"])
ITEMS_CREATED = Counter("moorage_items_created_total", "Items created through the API")
JOBS_ENQUEUED = Counter("moorage_jobs_enqueued_total", "Background jobs enqueued", ["outcome"])


class MetricsMiddleware:
    """Counts requests by route template (not raw path) to keep label cardinality bounded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - start)
