"""FastAPI application: health, readiness, metrics and the items API.

Run: ``uvicorn moorage_backend.main:app`` (host and port from UVICORN_HOST and
UVICORN_PORT; the image sets 0.0.0.0:8000). Configuration comes from the
environment only: DATABASE_URL, REDIS_URL, LOG_LEVEL, APP_SECRET_KEY (optional).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from moorage_common.db import make_engine
from moorage_common.jobs import PROCESS_ITEM, QUEUE_NAME
from moorage_common.logs import configure_logging
from moorage_common.models import Item
from moorage_common.settings import ConfigError, Settings
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from redis import Redis
from rq import Queue, Retry
from sqlalchemy import select
from sqlalchemy.orm import Session

from moorage_backend.checks import check_database, check_redis
from moorage_backend.metrics import ITEMS_CREATED, JOBS_ENQUEUED, MetricsMiddleware

log = logging.getLogger("moorage.backend")

# Configure logging at import: uvicorn imports the app before it logs anything.
configure_logging(os.environ.get("LOG_LEVEL", "INFO").upper())


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: str
    result: str | None
    created_at: datetime
    processed_at: datetime | None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        raise
    if settings.secret_key is None:
        log.warning("APP_SECRET_KEY is not set")
    app.state.engine = make_engine(settings.database_url)
    app.state.redis = Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    app.state.queue = Queue(QUEUE_NAME, connection=app.state.redis)
    log.info("backend started", extra={"database": settings.database_url.render_as_string(hide_password=True)})
    try:
        yield
    finally:
        app.state.engine.dispose()
        app.state.redis.close()


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

app = FastAPI(title="Moorage reference backend", lifespan=lifespan)
app.add_middleware(MetricsMiddleware)


@app.get("/healthz")
def healthz() -> dict:
    """Liveness: the process answers. No dependency is checked on purpose."""
    return {"status": "ok"}


@app.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Readiness: PostgreSQL and Redis reachable, schema at this code's migration head."""
    database, schema = check_database(request.app.state.engine)
    checks = {"database": database, "schema": schema, "redis": check_redis(request.app.state.redis)}
    ok = all(value == "ok" for value in checks.values())
    if not ok:
        log.warning("not ready", extra={"checks": checks})
    return JSONResponse({"status": "ok" if ok else "fail", "checks": checks}, status_code=200 if ok else 503)


@app.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@app.post("/api/items", status_code=201, response_model=ItemOut)
def create_item(payload: ItemIn, session: SessionDep, request: Request) -> Item:
    item = Item(name=payload.name)
    session.add(item)
    # Commit before enqueueing so the worker always finds the row.
    session.commit()
    try:
        request.app.state.queue.enqueue(
            PROCESS_ITEM,
            item.id,
            job_timeout=60,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            retry=Retry(max=3, interval=[2, 10, 30]),
        )
    except Exception as exc:
        # No queue, no item: undo the insert so the client can simply retry.
        JOBS_ENQUEUED.labels("failed").inc()
        log.error("enqueue failed", extra={"item_id": item.id, "error": str(exc)})
        session.delete(item)
        session.commit()
        raise HTTPException(status_code=503, detail="job queue unavailable, try again") from None
    JOBS_ENQUEUED.labels("ok").inc()
    ITEMS_CREATED.inc()
    log.info("item created", extra={"item_id": item.id})
    return item


@app.get("/api/items", response_model=list[ItemOut])
def list_items(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[Item]:
    query = select(Item).order_by(Item.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


@app.get("/api/items/{item_id}", response_model=ItemOut)
def get_item(item_id: int, session: SessionDep) -> Item:
    item = session.get(Item, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail=f"item {item_id} not found")
    return item
