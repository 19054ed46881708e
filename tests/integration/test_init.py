"""`inv init` (first run: `python -m moorage init`) on three repositories laid out differently.

Each repository is built in tmp_path as a team would have it before adopting
Moorage: (a) this repository's reference layout (app/, chart/, environments/,
Dockerfile.*); (b) a chart under infrastructure/helm/<name> with values-*.yaml
and a backend/Dockerfile using Alembic; (c) a chart under deploy/charts/<name>,
environment values in deploy/values/ and Dockerfiles under services/*/. The
configuration init writes is then used unchanged: `inv doctor --skip-cluster`
and `inv dev.deploy --dry-run` against the fake cluster (real Helm rendering,
real Docker for the tags, the fake API server; see tests/fixtures/fake_cluster.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from moorage.core.config import load_project
from tests.fixtures.fake_cluster import FakeCluster
from tests.fixtures.kubeapi import kubeconfig_text
from tests.fixtures.tools import require_docker, require_tool

REPO = Path(__file__).resolve().parents[2]
INV = str(Path(sys.executable).with_name("inv"))
QUIET = ("MOORAGE_ENV", "MOORAGE_DEBUG", "POSTGRES_PASSWORD", "POSTGRESQL_PASSWORD")


def child_env(extra: dict | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in QUIET}
    return {**env, **(extra or {})}


def moorage_init(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m moorage init`: what a user runs before the repository has a tasks.py."""
    return subprocess.run([sys.executable, "-m", "moorage", "init", *args], cwd=root, capture_output=True,
                          text=True, env=child_env(env), timeout=120)


def inv(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([INV, *args], cwd=root, capture_output=True, text=True, env=child_env(env), timeout=300)


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def config(root: Path) -> dict:
    return yaml.safe_load((root / "invoke.yaml").read_text())


# --- the three repositories ------------------------------------------------------------------------


def reference_repo(tmp_path: Path) -> Path:
    """(a) A copy of this repository's reference app layout."""
    root = tmp_path / "reference"
    for folder in ("app", "chart", "environments"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for path in REPO.glob("Dockerfile.*"):
        shutil.copy(path, root / path.name)
    return root


def _workload(name: str, port: dict, probes: dict, image_key: str, kind: str = "Deployment") -> str:
    """A Deployment (or StatefulSet) template, labelled as Helm's best practices say."""
    labels = {"app.kubernetes.io/instance": "{{ .Release.Name }}", "app.kubernetes.io/component": name}
    container = {"name": name, "image": f"{{{{ {image_key}.repository }}}}:{{{{ {image_key}.tag }}}}",
                 "ports": [port], **probes}
    spec = {"replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return yaml.safe_dump({"apiVersion": "apps/v1", "kind": kind,
                           "metadata": {"name": f"{{{{ .Release.Name }}}}-{name}", "labels": labels}, "spec": spec},
                          sort_keys=False)


def _service(name: str, ports: list[dict]) -> str:
    return "---\n" + yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{{{{ .Release.Name }}}}-{name}"},
        "spec": {"selector": {"app.kubernetes.io/instance": "{{ .Release.Name }}", "app.kubernetes.io/component": name},
                 "ports": ports}}, sort_keys=False)


def _http(path: str, port) -> dict:
    return {"httpGet": {"path": path, "port": port}}


def helm_repo(tmp_path: Path) -> Path:
    """(b) infrastructure/helm/shop with values-*.yaml; backend/Dockerfile with Alembic; frontend/Dockerfile."""
    root = tmp_path / "shop"
    chart = "infrastructure/helm/shop"
    backend = _workload("backend", {"name": "http", "containerPort": 8000},
                        {"readinessProbe": _http("/health/ready", "http"), "livenessProbe": _http("/health/live", "http")},
                        ".Values.backend.image")
    frontend = _workload("frontend", {"name": "web", "containerPort": 8080}, {"readinessProbe": _http("/", 8080)},
                         ".Values.frontend.image")
    database = _workload("postgresql", {"name": "pg", "containerPort": 5432},
                         {"readinessProbe": {"exec": {"command": ["pg_isready"]}}}, ".Values.postgresql.image",
                         kind="StatefulSet")
    return write(root, {
        f"{chart}/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 1.4.0\nappVersion: '1.4'\n",
        f"{chart}/values.yaml": """\
            backend:
              image: {repository: ghcr.io/acme/shop-backend, tag: "", pullPolicy: IfNotPresent}
            frontend:
              image: {repository: ghcr.io/acme/shop-frontend, tag: ""}
            postgresql:
              image: {repository: postgres, tag: "16"}
              auth: {username: shop, database: shop, password: ""}
            """,
        f"{chart}/values-dev.yaml": "backend:\n  logLevel: debug\n",
        f"{chart}/values-staging.yaml": "backend:\n  logLevel: info\n",
        f"{chart}/values-production.yaml": "backend:\n  logLevel: warning\n",
        f"{chart}/templates/backend.yaml": backend + _service("backend", [{"name": "http", "port": 80,
                                                                          "targetPort": "http"}]),
        f"{chart}/templates/frontend.yaml": frontend + _service("frontend", [{"port": 80, "targetPort": 8080}]),
        f"{chart}/templates/postgresql.yaml": database + _service("postgresql", [{"port": 5432, "targetPort": "pg"}])
        + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: \"{{ .Release.Name }}-postgresql\"}\ndata:\n"
          "  password: {{ required \"postgresql.auth.password is required\" .Values.postgresql.auth.password"
          " | b64enc }}\n",
        "backend/Dockerfile": """\
            ARG PYTHON_IMAGE=python:3.12-slim
            FROM ${PYTHON_IMAGE} AS base
            WORKDIR /app
            COPY requirements.txt .
            RUN pip install -r requirements.txt
            FROM base AS runtime
            COPY . .
            CMD ["uvicorn", "shop.main:app", "--host", "0.0.0.0"]
            """,
        "backend/requirements.txt": "fastapi\nalembic\n",
        "backend/alembic.ini": "[alembic]\nscript_location = migrations\n",
        "backend/migrations/env.py": "# alembic environment\n",
        "backend/shop/main.py": "app = None\n",
        "frontend/Dockerfile": "FROM nginxinc/nginx-unprivileged:1.27\nCOPY dist/ /usr/share/nginx/html/\n",
        "frontend/dist/index.html": "<html></html>\n",
        ".gitignore": ".env\n",
    })


def services_repo(tmp_path: Path) -> Path:
    """(c) deploy/charts/market, values in deploy/values/<env>.yaml, Dockerfiles under services/*/."""
    root = tmp_path / "market"
    chart = "deploy/charts/market"
    api = _workload("api", {"name": "http", "containerPort": 8080},
                    {"readinessProbe": _http("/readyz", "http"), "livenessProbe": _http("/livez", "http")},
                    ".Values.images.api")
    web = _workload("web", {"name": "http", "containerPort": 3000}, {"livenessProbe": _http("/", "http")},
                    ".Values.images.web")
    worker = _workload("worker", {"name": "metrics", "containerPort": 9100}, {}, ".Values.images.worker")
    return write(root, {
        f"{chart}/Chart.yaml": "apiVersion: v2\nname: market\nversion: 0.3.0\n",
        f"{chart}/values.yaml": """\
            images:
              api: {repository: registry.acme.dev/market/api, tag: ""}
              web: {repository: registry.acme.dev/market/web, tag: ""}
              worker: {repository: registry.acme.dev/market/worker, tag: ""}
            redis:
              image: redis:7.4
            """,
        f"{chart}/templates/api.yaml": api + _service("api", [{"name": "http", "port": 8080, "targetPort": "http"}]),
        f"{chart}/templates/web.yaml": web + _service("web", [{"name": "http", "port": 80, "targetPort": "http"}]),
        f"{chart}/templates/worker.yaml": worker,
        f"{chart}/templates/redis.yaml": """\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: redis}
            spec:
              selector: {matchLabels: {app: redis}}
              template:
                metadata: {labels: {app: redis}}
                spec:
                  containers: [{name: redis, image: "{{ .Values.redis.image }}"}]
            """,
        "deploy/values/local.yaml": "images:\n  api: {pullPolicy: IfNotPresent}\n",
        "deploy/values/prod.yaml": "web:\n  replicas: 3\n",
        "services/api/Dockerfile": """\
            FROM golang:1.22 AS build
            WORKDIR /src
            COPY go.mod main.go ./
            RUN go build -o /api .
            FROM gcr.io/distroless/static AS runtime
            COPY --from=build /api /api
            ENTRYPOINT ["/api"]
            """,
        "services/api/go.mod": "module market/api\n",
        "services/api/main.go": "package main\nfunc main() {}\n",
        "services/api/migrations/0001_init.up.sql": "CREATE TABLE items (id serial primary key);\n",
        "services/api/migrations/0001_init.down.sql": "DROP TABLE items;\n",
        "services/web/Dockerfile": """\
            FROM node:20-alpine AS dev
            COPY package.json .
            COPY src/ src/
            CMD ["npm", "run", "dev"]
            FROM dev AS prod
            RUN npm run build
            """,
        "services/web/package.json": "{}\n",
        "services/web/src/index.js": "\n",
        # built from the repository root: it copies a shared folder
        "services/worker/Dockerfile": "FROM python:3.12-slim\nCOPY shared/ /shared/\nCOPY services/worker/ /app/\n",
        "services/worker/run.py": "\n",
        "shared/lib.py": "\n",
        "tools/Dockerfile": "FROM alpine:3.20\nCOPY . /tools\n",
    })


LAYOUTS = {"reference": reference_repo, "helm": helm_repo, "services": services_repo}


# --- what init guesses ------------------------------------------------------------------------------


def test_reference_layout_gets_its_images_environments_smoke_checks_secrets_and_alembic(tmp_path):
    require_tool("helm")
    root = reference_repo(tmp_path)
    result = moorage_init(root)
    assert result.returncode == 0, result.stderr
    conf = config(root)["moorage"]
    assert {i["name"]: (i["dockerfile"], i["context"], i["values_key"]) for i in conf["images"]} == {
        name: (f"Dockerfile.{name}", ".", f"{name}.image") for name in ("backend", "worker", "frontend")}
    assert conf["images"][0]["build_args"] == {"PYTHON_IMAGE": "${MOORAGE_PYTHON_IMAGE:-python:3.12-slim}"}
    assert conf["environments_dir"] == "environments" and conf["default_env"] == "dev"
    assert sorted(conf["environments"]) == ["dev", "prod", "staging"]
    assert conf["environments"]["prod"].get("production") is True
    assert {"name": "backend-ready", "service": "backend", "port": 8000, "path": "/readyz", "status": 200} in \
        conf["environments"]["dev"]["smoke"]
    assert conf["secrets"] == {"POSTGRESQL_PASSWORD": "postgresql.auth.password"}
    assert config(root)["db"] == {"alembic_ini": "app/backend/alembic.ini"}
    assert (root / "tasks.py").read_text().count("\n") == 2


def test_helm_layout_links_its_values_files_as_environments(tmp_path):
    require_tool("helm")
    root = helm_repo(tmp_path)
    result = moorage_init(root)
    assert result.returncode == 0, result.stderr
    conf = config(root)["moorage"]
    assert conf["chart"] == "infrastructure/helm/shop" and conf["release"] == "shop"
    # listed under each environment's values: where the loader reads such lists, else linked into environments/
    project = load_project(conf, root)
    assert {name: env.values_file.resolve() for name, env in project.environments.items()} == {
        env: root / "infrastructure/helm/shop" / f"values-{env}.yaml" for env in ("dev", "staging", "production")}
    assert conf["environments"]["production"]["production"] is True
    assert [(i["name"], i["context"], i["values_key"]) for i in conf["images"]] == [
        ("backend", "backend", "backend.image"), ("frontend", "frontend", "frontend.image")]
    assert [(s["name"], s["port"], s["path"]) for s in conf["environments"]["dev"]["smoke"]] == [
        ("backend-ready", 80, "/health/ready"), ("backend-live", 80, "/health/live"), ("frontend-ready", 80, "/")]
    assert conf["environments"]["dev"]["required_secrets"] == ["POSTGRESQL_PASSWORD"]
    assert config(root)["db"] == {"alembic_ini": "backend/alembic.ini"}
    assert "put POSTGRESQL_PASSWORD in .env" in result.stdout
    # its PostgreSQL is found in the release by the db.* tasks: nothing written
    assert all("database" not in env for env in conf["environments"].values())
    assert "database      PostgreSQL in statefulset/shop-postgresql (container postgresql)" in result.stdout
    assert "db.migrate runs as a Job from deployment shop-backend (image 'backend')" in result.stdout


def test_services_layout_matches_dockerfiles_to_image_values_and_reports_what_it_cannot_run(tmp_path):
    require_tool("helm")
    root = services_repo(tmp_path)
    result = moorage_init(root)
    assert result.returncode == 0, result.stderr
    conf = config(root)["moorage"]
    assert conf["environments_dir"] == "deploy/values" and conf["default_env"] == "local"
    assert {i["name"]: (i["dockerfile"], i["context"], i["values_key"]) for i in conf["images"]} == {
        "api": ("services/api/Dockerfile", "services/api", "images.api"),
        "web": ("services/web/Dockerfile", "services/web", "images.web"),
        "worker": ("services/worker/Dockerfile", ".", "images.worker")}
    assert [s["name"] for s in conf["environments"]["local"]["smoke"]] == ["api-ready", "api-live", "web-live"]
    assert "db" not in config(root)
    assert {name: env.get("database") for name, env in conf["environments"].items()} == {
        "local": {"kind": "none"}, "prod": {"kind": "none"}}
    out = result.stdout
    assert "the chart runs no PostgreSQL, so database: {kind: none} is written" in out
    assert "golang-migrate SQL files (services/api/migrations" in out
    assert "services/web/Dockerfile has stages dev, prod: image 'web' builds the last one (prod)" in out
    assert "redis:7.4" in out and "tools/Dockerfile" in out
    assert "#   - {name: tools, dockerfile: tools/Dockerfile, context: tools}" in (root / "invoke.yaml").read_text()


# --- the written configuration works as written --------------------------------------------------


@pytest.fixture
def fake_cluster(tmp_path, kubeapi):
    require_docker()
    require_tool("helm")
    cluster = FakeCluster(kubeapi, tmp_path / "cluster")
    # A kind-like cluster (the stand-in `kind` and `docker` answer for its node), reached through the fake API.
    kubeconfig = tmp_path / "kubeconfig-init"
    kubeconfig.write_text(kubeconfig_text(kubeapi.url, "kind-initfake"))
    yield {**cluster.env(), "KUBECONFIG": str(kubeconfig)}
    cluster.close()


@pytest.mark.docker
@pytest.mark.helm
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_written_config_passes_doctor_and_a_dry_run_deploy(tmp_path, fake_cluster, layout):
    root = LAYOUTS[layout](tmp_path)
    assert moorage_init(root).returncode == 0
    secrets = config(root)["moorage"].get("secrets", {})
    (root / ".env").write_text("".join(f"{key}=init-test-secret\n" for key in secrets))
    doctor = inv(root, "doctor", "--skip-cluster")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    plan = inv(root, "dev.deploy", "--dry-run", env=fake_cluster)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    for image in config(root)["moorage"]["images"]:
        assert f"build    {image['name']}" in plan.stdout
    assert "helm     install with values" in plan.stdout
    assert "cluster kind" in plan.stdout


# --- never overwrite without --force --------------------------------------------------------------


def test_a_second_run_refuses_in_one_line_and_changes_nothing(tmp_path):
    require_tool("helm")
    root = helm_repo(tmp_path)
    assert moorage_init(root).returncode == 0
    (root / "invoke.yaml").write_text("# edited by the team\n")
    result = moorage_init(root)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: invoke.yaml already exists") and "--force" in lines[0]
    assert (root / "invoke.yaml").read_text() == "# edited by the team\n"


def test_a_foreign_tasks_py_is_not_replaced_without_force(tmp_path):
    require_tool("helm")
    root = helm_repo(tmp_path)
    (root / "tasks.py").write_text("from invoke import task\n")
    result = moorage_init(root)
    assert result.returncode == 2 and "tasks.py already exists" in result.stderr
    assert not (root / "invoke.yaml").exists() and (root / "tasks.py").read_text() == "from invoke import task\n"


def test_inv_init_force_replaces_and_keeps_the_old_file(tmp_path):
    require_tool("helm")
    root = helm_repo(tmp_path)
    assert moorage_init(root).returncode == 0
    (root / "invoke.yaml").write_text((root / "invoke.yaml").read_text() + "# edited by the team\n")
    result = inv(root, "init", "--force")
    assert result.returncode == 0, result.stderr
    assert (root / "invoke.yaml.bak").read_text().endswith("# edited by the team\n")
    assert "# edited by the team" not in (root / "invoke.yaml").read_text()


def test_dry_run_prints_the_config_and_writes_nothing(tmp_path):
    require_tool("helm")
    root = services_repo(tmp_path)
    result = moorage_init(root, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "values_key: images.api" in result.stdout and "dry run: nothing written" in result.stdout
    assert not (root / "invoke.yaml").exists() and not (root / "tasks.py").exists()


def test_a_repository_without_a_chart_is_refused_in_one_line(tmp_path):
    root = write(tmp_path / "nochart", {"Dockerfile": "FROM alpine:3.20\n"})
    result = moorage_init(root)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: no Helm chart (Chart.yaml) found")
    assert not (root / "invoke.yaml").exists()
