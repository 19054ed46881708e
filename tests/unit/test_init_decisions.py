"""`inv init`'s decisions, without helm or Docker: names, image slots, matching, probes, the written text."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from moorage.core.config import Environment, Image, Project, load_project
from moorage.core.errors import UserError
from moorage.init import chart, guess, scan, write


@pytest.mark.parametrize(("path", "name"), [
    ("Dockerfile.backend", "backend"),
    ("services/api/Dockerfile", "api"),
    ("web/web.Dockerfile", "web"),
    ("backend/Dockerfile.prod", "backend-prod"),
    ("Dockerfile", "shop"),
])
def test_image_name_comes_from_the_dockerfile_path(path, name):
    assert scan.image_name(path, "Shop") == name


def test_image_slots_are_repository_mappings_and_image_strings():
    values = yaml.safe_load(textwrap.dedent("""\
        backend: {image: {repository: acme/backend, tag: ""}}
        images: {api: {registry: ghcr.io, repository: acme/api, tag: ""}}
        redis: {image: "redis:7.4"}
        workers: [{image: {repository: acme/worker}}]
        """))
    assert chart.image_slots(values) == [
        chart.ImageSlot("backend.image", "acme/backend", "mapping"),
        chart.ImageSlot("images.api", "ghcr.io/acme/api", "mapping"),
        chart.ImageSlot("redis.image", "redis:7.4", "string"),
    ]


def test_each_dockerfile_gets_the_slot_that_names_it_and_third_party_slots_stay_free():
    slots = [chart.ImageSlot("postgresql.image", "postgres", "mapping"),
             chart.ImageSlot("api.image", "ghcr.io/acme/shop-backend", "mapping"),
             chart.ImageSlot("frontend.image", "ghcr.io/acme/frontend", "mapping")]
    assert chart.assign(["frontend", "backend"], slots) == {"frontend": slots[2], "backend": slots[1]}


def test_named_stages_become_images_when_the_chart_has_a_slot_for_each():
    dockerfile = scan.Dockerfile("Dockerfile", "app", ".", ("backend", "worker"), {})
    slots = [chart.ImageSlot("backend.image", "acme/backend", "mapping"),
             chart.ImageSlot("worker.image", "acme/worker", "mapping")]
    images, unused = guess.plan_images([dockerfile], slots, [])
    assert [(i.name, i.target, i.values_key) for i in images] == [("backend", "backend", "backend.image"),
                                                                  ("worker", "worker", "worker.image")]
    assert unused == []


def test_a_string_image_slot_is_written_as_such_or_reported():
    dockerfile = scan.Dockerfile("web/Dockerfile", "web", "web", (), {})
    checks: list[str] = []
    (image,), _ = guess.plan_images([dockerfile], [chart.ImageSlot("web.image", "acme/web:1", "string")], checks)
    if guess.loader_has(Image, "values_style"):
        assert image.values_style == "string" and checks == []
    else:
        assert "one 'repository:tag' string" in checks[0]


def test_build_context_follows_the_copy_sources(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "app.py").write_text("\n")
    assert scan.guess_context(tmp_path, "svc/Dockerfile", "FROM x\nCOPY shared/ /s/\n") == "."
    assert scan.guess_context(tmp_path, "svc/Dockerfile", "FROM x\nCOPY app.py /app/\n") == "svc"


def test_base_image_build_args_keep_their_default():
    text = "ARG PYTHON_IMAGE=python:3.12-slim\nARG OTHER=1\nFROM ${PYTHON_IMAGE} AS base\n"
    assert scan.base_args(text) == {"PYTHON_IMAGE": "python:3.12-slim"}


def test_values_files_named_after_environments_are_found_beside_the_chart(tmp_path):
    chart_dir = tmp_path / "helm" / "shop"
    chart_dir.mkdir(parents=True)
    for name in ("Chart.yaml", "values.yaml", "values-dev.yaml", "values.production.yaml", "staging-values.yaml"):
        (chart_dir / name).write_text("a: 1\n")
    tree = scan.walk(tmp_path)
    found, _ = scan.pick_chart(tree, None)
    envs = scan.env_files(tree, found)
    assert envs.folder is None
    assert envs.files == {"dev": "helm/shop/values-dev.yaml", "production": "helm/shop/values.production.yaml",
                          "staging": "helm/shop/staging-values.yaml"}


def test_a_subchart_is_not_a_chart_to_deploy(tmp_path):
    for folder in ("deploy/charts/shop", "deploy/charts/shop/charts/redis"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "Chart.yaml").write_text("name: x\n")
    assert scan.walk(tmp_path).charts == ["deploy/charts/shop"]


def test_a_render_error_names_the_empty_value_to_fill():
    values = {"postgresql": {"auth": {"password": "", "existingSecret": ""}}}
    message = ("Error: execution error at (shop/templates/secret.yaml:4:12): postgresql.auth.password is required "
               "or set postgresql.auth.existingSecret")
    assert chart.required_paths(message, values, {})[:1] == ["postgresql.auth.password"]
    assert chart.is_secret("postgresql.auth.password") and not chart.is_secret("externalDatabase.host")
    assert guess.secret_key("postgresql.auth.password") == "POSTGRESQL_PASSWORD"
    assert guess.secret_key("backend.secretKey") == "BACKEND_SECRET_KEY"


def _manifest() -> list[dict]:
    labels = {"app.kubernetes.io/instance": "shop", "app.kubernetes.io/component": "api"}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop-api"},
         "spec": {"template": {"metadata": {"labels": {**labels, "extra": "x"}}, "spec": {"containers": [{
             "name": "api", "image": "shop/api:0000000000000000", "ports": [{"name": "http", "containerPort": 8080}],
             "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
             "livenessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
             "startupProbe": {"httpGet": {"path": "/startz", "port": 8080}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop-api"},
         "spec": {"selector": labels, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api-admin"},
         "spec": {"selector": labels, "ports": [{"port": 9000, "targetPort": 8080}]}},
    ]


def test_probes_are_reached_through_the_service_ports_that_target_them():
    assert chart.probes(_manifest()) == [chart.Probe("shop-api", 80, "/readyz", "ready"),
                                         chart.Probe("api-admin", 9000, "/readyz", "ready")]


def test_smoke_checks_name_services_without_the_release_prefix_and_skip_others():
    checks: list[str] = []
    smoke = guess.smoke_checks("shop", chart.probes(_manifest()), checks)
    assert smoke == [{"name": "api-ready", "service": "api", "port": 80, "path": "/readyz", "status": 200}]
    assert "Service api-admin" in checks[0]


def _proposal(tmp_path: Path) -> guess.Proposal:
    (tmp_path / "chart").mkdir()
    (tmp_path / "chart" / "values-dev.yaml").write_text("{}\n")
    checks: list[str] = []
    env_dir, envs, links, created = guess.plan_environments(
        "shop", scan.EnvFiles({"dev": "chart/values-dev.yaml"}, None), set(), checks, [])
    envs[0].smoke = [{"name": "api-ready", "service": "api", "port": 80, "path": "/ready?full=1", "status": 200}]
    images = [guess.ImagePlan("api", "api/Dockerfile", "api", "images.api",
                              build_args={"BASE": "${MOORAGE_BASE:-python:3.12}"})]
    return guess.Proposal(release="shop", chart="chart", env_dir=env_dir, default_env="dev", images=images,
                          environments=envs, links=links, created=created, secrets={"DB_PASSWORD": "db.password"},
                          db={"alembic_ini": "api/alembic.ini"})


def test_the_written_text_parses_back_and_the_loader_accepts_it(tmp_path):
    proposal = _proposal(tmp_path)
    text = write.config_text(proposal)
    write.validate(proposal, text, tmp_path)
    assert yaml.safe_load(text) == write.config_data(proposal)
    if guess.loader_has(Environment, "values_files"):
        project = load_project(yaml.safe_load(text)["moorage"], tmp_path)
        assert project.environments["dev"].values_file == tmp_path / "chart" / "values-dev.yaml"


@pytest.mark.parametrize("value", ["/readyz", "1.0", "yes", "${X:-y}", "a: b", "-x", "@a", "null", "chart/values.yaml"])
def test_scalars_read_back_as_themselves(value):
    assert yaml.safe_load(f"k: {write.scalar(value)}") == {"k": value}


def test_refusal_names_the_files_that_exist(tmp_path):
    (tmp_path / "invoke.yaml").write_text("moorage: {}\n")
    (tmp_path / "tasks.py").write_text("from invoke import task\n")
    with pytest.raises(UserError, match=r"invoke.yaml and tasks.py already exist .*nothing was written"):
        write.refuse_existing(tmp_path, force=False)
    (tmp_path / "tasks.py").write_text(write.TASKS_TEXT)
    with pytest.raises(UserError, match=r"^invoke.yaml already exists"):
        write.refuse_existing(tmp_path, force=False)


def test_a_chart_with_fixed_service_names_gets_them_as_they_are():
    found = [chart.Probe("backend", 8000, "/health", "ready")]
    template = guess.service_names("rhesis", found)
    if not guess.loader_has(Project, "service_template"):
        assert template == "{release}-{name}"
        return
    assert template == "{name}"
    assert guess.smoke_checks("rhesis", found, [], template) == [
        {"name": "backend-ready", "service": "backend", "port": 8000, "path": "/health", "status": 200}]


def test_a_loader_without_values_lists_gets_links_to_the_values_files(tmp_path, monkeypatch):
    monkeypatch.setattr(guess, "loader_has", lambda cls, name: name != "values_files")
    proposal = _proposal(tmp_path)
    assert proposal.links == {"environments/dev.yaml": "chart/values-dev.yaml"}
    text = write.config_text(proposal)
    write.validate(proposal, text, tmp_path)
    write.write_files(tmp_path, proposal, text)
    link = tmp_path / "environments" / "dev.yaml"
    assert link.is_symlink() and link.resolve() == tmp_path / "chart" / "values-dev.yaml"
    assert load_project(yaml.safe_load(text)["moorage"], tmp_path).environments["dev"].values_file == link
