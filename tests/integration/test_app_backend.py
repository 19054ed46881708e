"""The reference application (app/) against real PostgreSQL and Redis.

The backend runs under uvicorn and the worker as ``python -m moorage_worker``,
both as subprocesses from the checkout, exactly as their images start them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures import servers
from tests.fixtures.servers import (
    BACKEND_DIR,
    AppProcess,
    Database,
    alembic,
    app_env,
    running_backend,
    running_worker,
    wait_for,
)

# Fixtures of tests/fixtures/servers.py, registered in this module by name.
postgres_server = servers.postgres_server
postgres_database = servers.postgres_database
redis_server = servers.redis_server
clean_redis = servers.clean_redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

HEAD = "0002"


def table_columns(database: Database, table: str) -> set[str]:
    rows = database.server.execute(
        f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'", database.name
    )
    return {row[0] for row in rows}


def poll_json(client: httpx.Client, path: str, until, timeout: float = 20.0) -> dict:
    """GET path until ``until(status_code, body)`` holds; returns the last body."""
    last: dict = {}

    def done() -> bool:
        nonlocal last
        try:
            response = client.get(path)
        except httpx.TransportError:
            return False
        last = response.json()
        return until(response.status_code, last)

    try:
        wait_for(done, timeout, f"GET {path}", interval=0.2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last body: {last}") from None
    return last


@pytest.fixture(scope="session")
def migrated_template(postgres_server) -> str:
    """A database migrated to head once per session; tests get copies of it."""
    template = postgres_server.create_database()
    alembic("upgrade", "head", database_url=template.url)
    return template.name


@pytest.fixture
def migrated_database(postgres_server, migrated_template) -> Iterator[Database]:
    if postgres_server.pid is None:
        postgres_server.start()
    database = postgres_server.create_database(template=migrated_template)
    yield database
    if postgres_server.pid is None:
        postgres_server.start()
    postgres_server.drop_database(database.name)


@pytest.fixture
def backend(tmp_path, migrated_database, clean_redis):
    with running_backend(tmp_path, database_url=migrated_database.url, redis_url=clean_redis.url) as app:
        yield app


@pytest.fixture
def api(backend: AppProcess):
    with httpx.Client(base_url=backend.url, timeout=10) as client:
        yield client


@pytest.fixture
def worker(tmp_path, migrated_database, clean_redis):
    with running_worker(tmp_path, database_url=migrated_database.url, redis_url=clean_redis.url) as app:
        yield app


# --------------------------------------------------------------------------- migrations


def schema_version(database: Database) -> list[str]:
    rows = database.server.execute("SELECT version_num FROM alembic_version", database.name)
    return [row[0] for row in rows]


def test_migrations_upgrade_from_empty_to_head_and_downgrade_back_to_base(postgres_database):
    url = postgres_database.url

    alembic("upgrade", "head", database_url=url)
    assert alembic("current", database_url=url).stdout.split() == [HEAD, "(head)"]
    assert {"id", "name", "status", "created_at", "result", "processed_at"} <= table_columns(postgres_database, "items")

    alembic("downgrade", "-1", database_url=url)
    assert schema_version(postgres_database) == ["0001"]
    assert "result" not in table_columns(postgres_database, "items")

    alembic("downgrade", "base", database_url=url)
    assert schema_version(postgres_database) == []
    assert table_columns(postgres_database, "items") == set()

    alembic("upgrade", "head", database_url=url)  # and up again from base
    assert schema_version(postgres_database) == [HEAD]


def test_alembic_without_database_url_fails_with_a_clear_message():
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "current"],
        cwd=BACKEND_DIR,
        env={k: v for k, v in app_env(database_url="", redis_url="").items() if k != "DATABASE_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DATABASE_URL is not set" in result.stderr


# --------------------------------------------------------------------------- health and readiness


def test_healthz_answers_ok(api):
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_database_redis_and_schema_are_ready(api):
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "schema": "ok", "redis": "ok"}}


def test_readyz_fails_until_the_schema_is_at_head(tmp_path, postgres_database, clean_redis):
    with running_backend(tmp_path, database_url=postgres_database.url, redis_url=clean_redis.url) as app:
        with httpx.Client(base_url=app.url) as client:
            response = client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["checks"]["schema"].startswith("not migrated")

            alembic("upgrade", "0001", database_url=postgres_database.url)
            response = client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["checks"]["schema"] == f"at 0001, expected {HEAD}"

            alembic("upgrade", "head", database_url=postgres_database.url)
            assert client.get("/readyz").status_code == 200


def test_readyz_fails_while_postgres_is_stopped_and_recovers_after_restart(api, postgres_server):
    assert api.get("/readyz").status_code == 200

    with postgres_server.stopped():
        response = api.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "fail"
        assert body["checks"]["database"] != "ok"
        assert body["checks"]["redis"] == "ok"
        # liveness must not depend on the database
        assert api.get("/healthz").status_code == 200

    poll_json(api, "/readyz", lambda status, _: status == 200)


def test_readyz_fails_while_redis_is_stopped(api, clean_redis):
    with clean_redis.stopped():
        response = api.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["redis"] != "ok"
        assert response.json()["checks"]["database"] == "ok"
    poll_json(api, "/readyz", lambda status, _: status == 200)


def test_backend_refuses_to_start_without_database_url(tmp_path, clean_redis):
    env = app_env(database_url="", redis_url=clean_redis.url)
    del env["DATABASE_URL"]
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "moorage_backend.main:app", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stdout + result.stderr


def test_metrics_expose_request_counts_by_route(api):
    api.get("/api/items/12345")
    text = api.get("/metrics").text
    assert 'moorage_http_requests_total{method="GET",route="/api/items/{item_id}",status="404"} 1.0' in text
    assert "moorage_items_created_total" in text


def test_backend_logs_are_json_lines(backend, api):
    api.get("/healthz")
    lines = [line for line in backend.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert {"ts", "level", "logger", "msg"} <= records[0].keys()
    assert any(record["logger"] == "uvicorn.access" for record in records)


# --------------------------------------------------------------------------- items API and worker


def test_created_item_is_processed_by_the_worker_and_visible_through_the_api(api, worker):
    response = api.post("/api/items", json={"name": "hello moorage world"})
    assert response.status_code == 201
    item = response.json()
    assert item["status"] == "pending"
    assert item["result"] is None

    done = poll_json(api, f"/api/items/{item['id']}", lambda _, body: body["status"] == "processed")
    assert done["result"].startswith("3 words, 19 characters, sha256 ")
    assert done["processed_at"] is not None

    listed = api.get("/api/items").json()
    assert [entry["id"] for entry in listed] == [item["id"]]
    assert listed[0]["status"] == "processed"


def test_items_wait_as_pending_until_a_worker_runs(api, tmp_path, migrated_database, clean_redis):
    ids = [api.post("/api/items", json={"name": f"item {n}"}).json()["id"] for n in range(3)]
    assert {entry["status"] for entry in api.get("/api/items").json()} == {"pending"}

    with running_worker(tmp_path, database_url=migrated_database.url, redis_url=clean_redis.url):
        poll_json(api, "/api/items", lambda _, body: {entry["status"] for entry in body} == {"processed"})
    assert sorted(entry["id"] for entry in api.get("/api/items").json()) == sorted(ids)


def test_get_unknown_item_returns_404(api):
    response = api.get("/api/items/999999")
    assert response.status_code == 404


def test_create_rejects_an_empty_name(api):
    assert api.post("/api/items", json={"name": ""}).status_code == 422
    assert api.get("/api/items").json() == []


def test_create_returns_503_and_stores_nothing_while_the_queue_is_down(api, clean_redis):
    with clean_redis.stopped():
        response = api.post("/api/items", json={"name": "lost?"})
    assert response.status_code == 503
    assert api.get("/api/items").json() == []


# --------------------------------------------------------------------------- worker process


def test_worker_health_is_ok_while_its_loop_runs_and_redis_answers(worker):
    body = poll_json(httpx.Client(base_url=worker.url), "/healthz", lambda status, _: status == 200, timeout=10)
    assert body == {"status": "ok", "checks": {"worker": "ok", "redis": "ok"}}


def test_worker_health_fails_while_redis_is_down_and_recovers(worker, clean_redis):
    client = httpx.Client(base_url=worker.url, timeout=10)
    poll_json(client, "/healthz", lambda status, _: status == 200, timeout=10)

    with clean_redis.stopped():
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["checks"]["redis"] != "ok"

    poll_json(client, "/healthz", lambda status, _: status == 200, timeout=30)


def test_worker_health_answers_404_elsewhere(worker):
    assert httpx.get(worker.url + "/").status_code == 404


def test_worker_exits_zero_on_sigterm(worker):
    poll_json(httpx.Client(base_url=worker.url), "/healthz", lambda status, _: status == 200, timeout=10)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(20) == 0
    assert "worker stopped on request" in worker.log()


def test_worker_refuses_to_start_without_database_url(clean_redis):
    env = app_env(database_url="", redis_url=clean_redis.url)
    del env["DATABASE_URL"]
    result = subprocess.run(
        [sys.executable, "-m", "moorage_worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stdout
