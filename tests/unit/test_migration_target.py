"""Where migrations come from when the configuration does not say: the project's one alembic.ini, and the
release's workload running the image whose build context holds it."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from moorage import database
from moorage.core.config import load_project
from moorage.core.errors import UserError
from moorage.core.report import Reporter
from moorage.database import (
    DbSettings,
    alembic_ini_path,
    env_alembic_ini,
    readable_alembic_ini,
    run_migrations_in_cluster,
)
from moorage.targets import image_holding, release_workload_running, repository_of


def project_at(root: Path, images: list[dict], name: str = "dev", **env):
    (root / "environments").mkdir(parents=True, exist_ok=True)
    (root / "environments" / f"{name}.yaml").write_text("{}\n")
    return load_project({"release": "shop", "images": images, "environments": {name: env}}, root)


def touch(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("[alembic]\n")


def workload(kind: str, name: str, containers: list[str], init: list[str] = ()) -> dict:
    return {"kind": kind, "metadata": {"name": name}, "spec": {"template": {"spec": {
        "initContainers": [{"name": f"i{n}", "image": i} for n, i in enumerate(init)],
        "containers": [{"name": f"c{n}", "image": i} for n, i in enumerate(containers)]}}}}


@pytest.mark.parametrize(("ref", "repository"), [
    ("shop/api:5c1e9a0d2b7f", "shop/api"),
    ("registry.local:5000/shop/api:5c1e@sha256:" + "a" * 64, "registry.local:5000/shop/api"),
    ("registry.local:5000/shop/api@sha256:" + "b" * 64, "registry.local:5000/shop/api"),
    ("postgres", "postgres"),
])
def test_an_image_reference_loses_its_tag_and_digest_but_keeps_a_registry_port(ref, repository):
    assert repository_of(ref) == repository


def test_the_project_s_one_alembic_ini_is_found_wherever_it_is_and_dependency_folders_are_skipped(tmp_path):
    project = project_at(tmp_path, [{"name": "api", "dockerfile": "services/api/Dockerfile"}])
    touch(tmp_path, "services/api/alembic.ini", "node_modules/pkg/alembic.ini", ".venv/lib/alembic.ini")
    assert alembic_ini_path(project) == tmp_path / "services/api/alembic.ini"
    assert env_alembic_ini(project, project.env("dev")) == tmp_path / "services/api/alembic.ini"
    assert alembic_ini_path(project, None, "db/alembic.ini") == tmp_path / "db/alembic.ini"


def test_without_an_alembic_ini_the_default_is_alembic_s_own_place_at_the_root(tmp_path):
    project = project_at(tmp_path, [{"name": "api", "dockerfile": "Dockerfile"}])
    assert alembic_ini_path(project) == tmp_path / "alembic.ini"


def test_several_alembic_ini_files_and_none_named_is_one_line_asking_which(tmp_path):
    project = project_at(tmp_path, [{"name": "api", "dockerfile": "Dockerfile"}])
    touch(tmp_path, "api/alembic.ini", "billing/alembic.ini")
    with pytest.raises(UserError) as err:
        alembic_ini_path(project)
    assert "several alembic.ini files (api/alembic.ini, billing/alembic.ini)" in err.value.message
    assert "migrations.alembic_ini" in err.value.hint


def test_the_image_holding_the_scripts_is_the_one_with_the_deepest_context_around_them(tmp_path):
    project = project_at(tmp_path, [{"name": "web", "dockerfile": "Dockerfile"},
                                    {"name": "api", "dockerfile": "services/api/Dockerfile", "context": "services/api"},
                                    {"name": "ui", "dockerfile": "ui/Dockerfile", "context": "ui"}])
    assert image_holding(project, tmp_path / "services/api/alembic.ini", "here").name == "api"
    assert image_holding(project, tmp_path / "alembic.ini", "here").name == "web"
    narrow = project_at(tmp_path / "narrow", [{"name": "ui", "dockerfile": "ui/Dockerfile", "context": "ui"}])
    with pytest.raises(UserError) as err:
        image_holding(narrow, tmp_path / "narrow/db/alembic.ini", "moorage.environments.dev.migrations")
    assert "no image's build context holds db/alembic.ini" in err.value.message
    assert "moorage.environments.dev.migrations.workload" in err.value.hint


def test_the_workload_running_the_image_is_found_in_the_release_a_deployment_first():
    objects = [
        workload("StatefulSet", "api-scheduler", ["reg:5000/shop/api:1@sha256:" + "c" * 64]),
        workload("Deployment", "worker", ["reg:5000/shop/worker:1"], init=["reg:5000/shop/api:1"]),
        workload("Deployment", "web", ["reg:5000/shop/api:1@sha256:" + "c" * 64, "nginx:1.27"]),
        workload("Deployment", "api", ["reg:5000/shop/api:1"]),
        {"kind": "Service", "metadata": {"name": "api"}, "spec": {}},
    ]
    assert release_workload_running(objects, "reg:5000/shop/api", "shop", "w") == ("deployment", "api")
    assert release_workload_running(objects[:2], "reg:5000/shop/api", "shop", "w") == ("statefulset", "api-scheduler")


def test_a_release_whose_workloads_run_the_image_only_in_init_containers_has_none_to_copy():
    objects = [workload("Deployment", "worker", ["shop/worker:1"], init=["shop/api:1"])]
    with pytest.raises(UserError) as err:
        release_workload_running(objects, "shop/api", "shop", "moorage.environments.dev.migrations")
    assert err.value.message.startswith("no workload of release shop runs image shop/api")
    assert "moorage.environments.dev.migrations.workload" in err.value.hint


def test_the_deploy_reads_the_scripts_only_when_it_can_tell_which_and_they_are_here(tmp_path):
    project = project_at(tmp_path, [{"name": "api", "dockerfile": "Dockerfile"}])
    env = project.env("dev")
    assert readable_alembic_ini(project, env) == (None, "alembic.ini is not in this checkout")
    touch(tmp_path, "api/alembic.ini", "billing/alembic.ini")
    ini, why = readable_alembic_ini(project, env)
    assert ini is None and why.startswith("the project holds several alembic.ini files")
    assert readable_alembic_ini(project, env, "api/alembic.ini") == (tmp_path / "api/alembic.ini", "")


def test_a_migration_job_with_no_alembic_ini_and_no_workload_is_one_line_before_any_cluster_call(tmp_path):
    project = project_at(tmp_path, [{"name": "api", "dockerfile": "Dockerfile"}])
    with pytest.raises(UserError) as err:
        run_migrations_in_cluster(project, project.env("dev"), ["alembic", "upgrade", "head"], DbSettings(),
                                  Reporter(stream=io.StringIO(), tty=False))
    assert "holds no alembic.ini" in err.value.message and "migrations names no workload" in err.value.message
    assert "kind: none" in err.value.hint


def test_db_migrate_says_so_before_asking_for_confirmation_and_on_a_dry_run(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)  # the in-cluster path
    project = project_at(tmp_path, [{"name": "api", "dockerfile": "Dockerfile"}], name="staging")
    asked: list[str] = []
    for dry_run in (False, True):
        with pytest.raises(UserError, match="holds no alembic.ini"):
            database.migrate(project, project.env("staging"), "head", Reporter(stream=io.StringIO(), tty=False),
                             dry_run=dry_run, confirm=asked.append)
    assert asked == []


def test_a_ci_deploy_backs_up_when_it_cannot_read_which_migrations_are_pending(tmp_path, monkeypatch):
    project = project_at(tmp_path, [{"name": "api", "dockerfile": "Dockerfile"}])
    touch(tmp_path, "api/alembic.ini", "billing/alembic.ini")
    taken = []
    monkeypatch.setattr(database, "target_for", lambda *a: "the pod")
    monkeypatch.setattr(database, "check_connection", lambda target: {"alembic_heads": ["0001"]})
    monkeypatch.setattr(database, "database_lock", lambda *a: contextlib.nullcontext())
    monkeypatch.setattr(database, "_safety_backup", lambda p, e, target, label, r: taken.append(label) or
                        type("Backup", (), {"path": tmp_path / "backups" / "b.dump"}))
    out = io.StringIO()
    path = database.backup_if_migrating(project, project.env("dev"), None, Reporter(stream=out, tty=False))
    assert taken == ["pre-upgrade"] and path == str(tmp_path / "backups" / "b.dump")
    assert "the Alembic scripts cannot be read here (the project holds several alembic.ini files" in out.getvalue()
