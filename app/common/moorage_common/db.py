"""Engine factory shared by the backend and the worker."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL


def make_engine(url: URL, *, connect_timeout: int = 3) -> Engine:
    # pool_pre_ping: a database restart must not leave dead connections in the pool.
    # connect_timeout: readiness checks must answer quickly when the database is down.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": connect_timeout, "application_name": "moorage"},
    )
