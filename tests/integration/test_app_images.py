"""The reference app's three images, built by `inv images.build` and run as Kubernetes will run them.

Built against the stand-in base images of scripts/base-images.sh (or the bases
named by MOORAGE_PYTHON_IMAGE / MOORAGE_NGINX_IMAGE), with the host's CA bundle
as the BuildKit secret moorage-ca so pip works behind a TLS-inspecting proxy. Each
container runs with a read-only root filesystem, /tmp as tmpfs, and host
networking so it reaches the session's PostgreSQL and Redis on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures import servers
from tests.fixtures.servers import REPO, Database, free_port, wait_for
from tests.fixtures.tools import missing

# Fixtures of tests/fixtures/servers.py, registered in this module by name.
postgres_server = servers.postgres_server
redis_server = servers.redis_server

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.redis]

INV = str(Path(sys.executable).with_name("inv"))
PYTHON_BASE = os.environ.get("MOORAGE_PYTHON_IMAGE", "local/python:3.11-slim")
NGINX_BASE = os.environ.get("MOORAGE_NGINX_IMAGE", "local/nginx:bookworm")
CA_BUNDLE = Path(os.environ.get("MOORAGE_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
RUN_LIMITS = {"read_only": True, "tmpfs": {"/tmp": "rw,size=64m"}, "network_mode": "host"}


def project_copy(dest: Path) -> Path:
    """The files `inv images.build` reads: config, tasks, Dockerfiles with their ignore files, the app."""
    for name in ("tasks.py", "invoke.yaml", ".dockerignore"):
        shutil.copy(REPO / name, dest / name)
    for path in REPO.glob("Dockerfile.*"):
        shutil.copy(path, dest / path.name)
    shutil.copytree(REPO / "app", dest / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(REPO / "environments", dest / "environments")
    return dest


def inv_build(root: Path, *args: str) -> dict:
    """`inv images.build --json` as a user runs it, against the stand-in bases, with the proxy CA bundle."""
    env = {**os.environ, "MOORAGE_PYTHON_IMAGE": PYTHON_BASE, "MOORAGE_NGINX_IMAGE": NGINX_BASE,
           "KUBECONFIG": str(root / "no-kubeconfig")}
    if CA_BUNDLE.is_file():
        env["MOORAGE_CA_BUNDLE"] = str(CA_BUNDLE)
    result = subprocess.run([INV, "images.build", "--json", *args], cwd=root, capture_output=True, text=True,
                            env=env, timeout=1800)
    assert result.returncode == 0, f"images.build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


def actions(summary: dict) -> dict[str, str]:
    return {i["name"]: i["action"] for i in summary["images"]}


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
def built(tmp_path_factory, docker_client, base_images) -> tuple[Path, dict]:
    """The three images built by `inv images.build` in a copy of the project: (project, summary)."""
    root = project_copy(tmp_path_factory.mktemp("project"))
    return root, inv_build(root)


@pytest.fixture(scope="session")
def images(built) -> dict[str, str]:
    return {i["name"]: i["ref"] for i in built[1]["images"]}


def test_a_second_build_with_no_change_builds_nothing(built):
    root, _ = built
    assert actions(inv_build(root)) == {"backend": "skip", "worker": "skip", "frontend": "skip"}


def test_a_one_line_code_change_rebuilds_only_its_image(built, images, docker_client):
    root, _ = built
    tasks = root / "app" / "worker" / "moorage_worker" / "tasks.py"
    # unique per run: the same change made by an earlier run would already be built in this engine
    tasks.write_text(tasks.read_text() + f"\n# a one-line change {uuid.uuid4().hex}\n")
    summary = inv_build(root)
    refs = {i["name"]: i["ref"] for i in summary["images"]}
    try:
        assert actions(summary) == {"backend": "skip", "worker": "build", "frontend": "skip"}
        assert refs["worker"] != images["worker"] and refs["backend"] == images["backend"]
    finally:
        if refs["worker"] != images["worker"]:
            docker_client.images.remove(refs["worker"], force=True)


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
