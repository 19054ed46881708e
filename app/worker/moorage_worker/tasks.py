"""Jobs run by the worker. The backend enqueues them by dotted path (moorage_common.jobs)."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from functools import lru_cache

from moorage_common.db import make_engine
from moorage_common.models import STATUS_PROCESSED, Item
from moorage_common.settings import Settings
from sqlalchemy import Engine
from sqlalchemy.orm import Session

log = logging.getLogger("moorage.worker.tasks")


@lru_cache(maxsize=1)
def engine() -> Engine:
    # Created lazily: with RQ's forking worker each job runs in a fresh child,
    # so the parent never holds a connection that a child could inherit.
    return make_engine(Settings.from_env().database_url, connect_timeout=10)


def summarize(name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{len(name.split())} words, {len(name)} characters, sha256 {digest}"


def process_item(item_id: int) -> str | None:
    """Compute the item's result and mark it processed. Idempotent: safe to retry."""
    with Session(engine()) as session, session.begin():
        item = session.get(Item, item_id, with_for_update=True)
        if item is None:
            # The backend removes the row when enqueueing failed; nothing to do.
            log.warning("item not found", extra={"item_id": item_id})
            return None
        if item.status == STATUS_PROCESSED:
            return item.result
        item.result = summarize(item.name)
        item.status = STATUS_PROCESSED
        item.processed_at = datetime.now(UTC)
        result = item.result
    log.info("item processed", extra={"item_id": item_id})
    return result
