"""The reference app's three images, built with docker-py and run as Kubernetes will run them.

Built against the stand-in base images of scripts/base-images.sh (or the bases
named by MOORAGE_PYTHON_IMAGE / MOORAGE_NGINX_IMAGE), with the host's CA bundle
injected as moorage-ca.crt so pip works behind a TLS-inspecting proxy. Each
container runs with a read-only root filesystem, /tmp as tmpfs, and host
networking so it reaches the session's PostgreSQL and Redis on loopback.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures import servers
from tests.fixtures.servers import REPO, Database, free_port, wait_for
from tests.fixtures.tools import missing, require_docker

# Fixtures of tests/fixtures/servers.py, registered in this module by name.
postgres_server = servers.postgres_server
redis_server = servers.redis_server

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.redis]

TAG = "itest"
PYTHON_BASE = os.environ.get("MOORAGE_PYTHON_IMAGE", "local/python:3.11-slim")
NGINX_BASE = os.environ.get("MOORAGE_NGINX_IMAGE", "local/nginx:bookworm")
CA_BUNDLE = Path(os.environ.get("MOORAGE_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
RUN_LIMITS = {"read_only": True, "tmpfs": {"/tmp": "rw,size=64m"}, "network_mode": "host"}


def build_context(dockerfile: str) -> io.BytesIO:
    """The repository as `docker build .` would send it (honouring .dockerignore), plus the CA bundle."""
    from docker.utils.build import exclude_paths

    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative in sorted(exclude_paths(str(REPO), patterns, dockerfile=dockerfile)):
            tar.add(REPO / relative, arcname=relative, recursive=False)
        if CA_BUNDLE.is_file():
            tar.add(CA_BUNDLE, arcname="moorage-ca.crt")
    buffer.seek(0)
    return buffer


def build(client, name: str, build_args: dict[str, str]) -> str:
    tag = f"moorage-test/{name}:{TAG}"
    log: list[str] = []
    for chunk in client.api.build(
        fileobj=build_context(f"Dockerfile.{name}"),
        custom_context=True,
        dockerfile=f"Dockerfile.{name}",
        tag=tag,
        buildargs=build_args,
        rm=True,
        forcerm=True,
        decode=True,
    ):
        log.append(chunk.get("stream", ""))
        if "error" in chunk:
            raise AssertionError(f"building {tag} failed: {chunk['error']}\n{''.join(log)[-3000:]}")
    return tag


@pytest.fixture(scope="session")
def docker_client():
    require_docker()
    import docker

    client = docker.from_env(timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_images(docker_client) -> None:
    import docker

    def present() -> bool:
        try:
            for image in (PYTHON_BASE, NGINX_BASE):
                docker_client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        return True

    if not present():
        result = subprocess.run([str(REPO / "scripts/base-images.sh")], capture_output=True, text=True, timeout=900)
        if result.returncode != 0 or not present():
            missing(f"no base images {PYTHON_BASE}, {NGINX_BASE}; scripts/base-images.sh said:\n{result.stderr}")


@pytest.fixture(scope="session")
def images(docker_client, base_images) -> dict[str, str]:
    return {
        "backend": build(docker_client, "backend", {"PYTHON_IMAGE": PYTHON_BASE}),
        "worker": build(docker_client, "worker", {"PYTHON_IMAGE": PYTHON_BASE}),
        "frontend": build(docker_client, "frontend", {"NGINX_IMAGE": NGINX_BASE}),
    }


@pytest.fixture(scope="session")
def app_database(postgres_server) -> Database:
    return postgres_server.create_database()


@pytest.fixture
def run(docker_client) -> Iterator:
    """Start containers with the restricted profile; all of them are removed afterwards."""
    started = []

    def _run(image: str, **kwargs):
        options = {**RUN_LIMITS, **kwargs}
        container = docker_client.containers.run(image, detach=True, **options)
        started.append(container)
        return container

    yield _run
    for container in started:
        container.remove(force=True)


def wait_http(url: str, container, timeout: float = 60.0) -> httpx.Response:
    last: list[httpx.Response] = []

    def answered() -> bool:
        container.reload()
        if container.status == "exited":
            logs = container.logs().decode(errors="replace")[-3000:]
            raise AssertionError(f"container exited ({container.attrs['State']['ExitCode']}):\n{logs}")
        try:
            last[:] = [httpx.get(url, timeout=5)]
        except httpx.TransportError:
            return False
        return last[0].status_code == 200

    try:
        wait_for(answered, timeout, url, interval=0.25)
    except TimeoutError:
        detail = last[0].text if last else "no answer"
        raise AssertionError(f"{url}: {detail}\n{container.logs().decode(errors='replace')[-3000:]}") from None
    return last[0]


def migrate(run, images, database: Database) -> str:
    """The migration Job's exact command, from the backend image."""
    job = run(images["backend"], command=["alembic", "upgrade", "head"], environment={"DATABASE_URL": database.url})
    status = job.wait(timeout=120)
    assert status["StatusCode"] == 0, job.logs().decode(errors="replace")
    return job.logs().decode(errors="replace")


@pytest.fixture
def backend(run, images, app_database, redis_server):
    migrate(run, images, app_database)
    port = free_port()
    container = run(
        images["backend"],
        environment={"DATABASE_URL": app_database.url, "REDIS_URL": redis_server.url, "UVICORN_PORT": str(port)},
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", container)
    return container, base


def uid_gid(container) -> tuple[int, int]:
    exit_code, output = container.exec_run(["sh", "-c", "id -u; id -g"])
    assert exit_code == 0, output
    uid, gid = output.decode().split()
    return int(uid), int(gid)


def test_images_declare_a_numeric_non_root_user(docker_client, images):
    for tag in images.values():
        user = docker_client.images.get(tag).attrs["Config"]["User"]
        uid, _, gid = user.partition(":")
        assert uid.isdigit() and int(uid) >= 10000, f"{tag}: USER {user!r}"
        assert gid.isdigit() and int(gid) >= 10000, f"{tag}: USER {user!r}"


def test_backend_image_is_under_250_mb(docker_client, images):
    size = docker_client.images.get(images["backend"]).attrs["Size"]
    assert size < 250 * 1000 * 1000, f"{size / 1e6:.0f} MB"


def test_proxy_ca_bundle_never_reaches_the_final_images(run, images):
    for name in ("backend", "worker"):
        container = run(images[name], command=["sh", "-c", "test ! -e /build && ! find / -xdev -name moorage-ca.crt"])
        assert container.wait(timeout=60)["StatusCode"] == 0, name


def test_migration_job_command_upgrades_and_alembic_current_reports_head(run, images, app_database):
    migrate(run, images, app_database)
    current = run(images["backend"], command=["alembic", "current"], environment={"DATABASE_URL": app_database.url})
    assert current.wait(timeout=60)["StatusCode"] == 0
    assert "(head)" in current.logs().decode()


def test_backend_container_is_live_and_ready_on_a_read_only_root(backend):
    container, base = backend
    assert uid_gid(container)[0] >= 10000
    ready = httpx.get(base + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "schema": "ok", "redis": "ok"}
    assert "moorage_http_requests_total" in httpx.get(base + "/metrics").text
    exit_code, _ = container.exec_run(["sh", "-c", "touch /app/x"])
    assert exit_code != 0  # the root filesystem really is read-only


def test_worker_container_is_healthy_and_stops_cleanly_on_sigterm(run, images, app_database, redis_server):
    port = free_port()
    container = run(
        images["worker"],
        environment={"DATABASE_URL": app_database.url, "REDIS_URL": redis_server.url, "HEALTH_PORT": str(port)},
    )
    body = wait_http(f"http://127.0.0.1:{port}/healthz", container).json()
    assert body == {"status": "ok", "checks": {"worker": "ok", "redis": "ok"}}
    assert uid_gid(container)[0] >= 10000

    container.stop(timeout=20)
    assert container.wait(timeout=30)["StatusCode"] == 0


def test_frontend_serves_the_page_and_proxies_api_to_the_backend(run, images, backend, app_database, redis_server):
    _, backend_url = backend
    port = free_port()
    frontend = run(images["frontend"], environment={"BACKEND_URL": backend_url, "LISTEN_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"

    assert wait_http(base + "/healthz", frontend).json() == {"status": "ok"}
    assert uid_gid(frontend)[0] >= 10000
    page = httpx.get(base + "/")
    assert page.status_code == 200
    assert "<title>Moorage items</title>" in page.text
    assert httpx.get(base + "/app.js").headers["content-type"].startswith("application/javascript")

    created = httpx.post(base + "/api/items", json={"name": "through the proxy"}, timeout=10)
    assert created.status_code == 201, created.text
    listed = httpx.get(base + "/api/items", timeout=10)
    assert listed.status_code == 200
    assert created.json()["id"] in [item["id"] for item in listed.json()]


def test_frontend_rejects_a_malformed_backend_url(run, images):
    container = run(images["frontend"], environment={"BACKEND_URL": "moorage-backend:8000", "LISTEN_PORT": "1"})
    assert container.wait(timeout=60)["StatusCode"] == 2
    assert "BACKEND_URL must start with http://" in container.logs().decode()
