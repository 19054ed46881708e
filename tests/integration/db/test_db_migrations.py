"""db.* against a real PostgreSQL and a tiny two-revision Alembic project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moorage import backup as bk

from .conftest import ROOT, inv

pytestmark = pytest.mark.postgres

ENV_PY = '''\
import logging
import os
from alembic import context
from sqlalchemy import create_engine

logging.basicConfig(level=logging.INFO, format="%(message)s")
url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
with create_engine(url).connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
'''

REVISION = '''\
"""{message}"""
from alembic import op

revision = "{rev}"
down_revision = {down}


def upgrade():
    op.execute("{up}")


def downgrade():
    op.execute("{down_sql}")
'''


@pytest.fixture
def alembic_project(project_dir):
    backend = project_dir / "app" / "backend"
    versions = backend / "migrations" / "versions"
    versions.mkdir(parents=True)
    (backend / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    (backend / "migrations" / "env.py").write_text(ENV_PY)
    (versions / "a1_notes.py").write_text(REVISION.format(
        message="create notes", rev="a1", down="None", up="CREATE TABLE notes (id int PRIMARY KEY, body text)",
        down_sql="DROP TABLE notes"))
    (versions / "b2_tags.py").write_text(REVISION.format(
        message="add tags", rev="b2", down='"a1"', up="ALTER TABLE notes ADD COLUMN tags text",
        down_sql="ALTER TABLE notes DROP COLUMN tags"))
    return project_dir


def status(root, url):
    run = inv(root, "db.status", "--json", "--database-url", url)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_empty_database_reports_every_revision_pending_then_migrates_to_head(pg, database, alembic_project):
    url = pg.url_for(database)
    before = status(alembic_project, url)
    assert before["current"] == [] and before["heads"] == ["b2"] and not before["up_to_date"]
    assert [p["revision"] for p in before["pending"]] == ["a1", "b2"]

    migrated = inv(alembic_project, "db.migrate", "--local", "--database-url", url)
    assert migrated.returncode == 0, migrated.stderr
    assert "Running upgrade a1 -> b2" in migrated.stdout
    after = status(alembic_project, url)
    assert after["current"] == ["b2"] and after["pending"] == [] and after["up_to_date"]
    assert pg.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes'", database) == "3"
    for run in (migrated,):
        assert pg.password not in run.stdout + run.stderr


def test_downgrade_takes_a_verified_backup_first_and_status_shows_the_pending_revision(pg, database,
                                                                                       alembic_project):
    url = pg.url_for(database)
    assert inv(alembic_project, "db.migrate", "--local", "--database-url", url).returncode == 0
    pg.psql("INSERT INTO notes VALUES (1, 'keep me', 'x')", database)

    down = inv(alembic_project, "db.downgrade", "--revision", "a1", "--database-url", url)
    assert down.returncode == 0, down.stderr
    (taken,) = bk.list_backups(alembic_project / "backups" / "dev")
    assert taken.name.endswith("-dev-pre-downgrade") and taken.meta["alembic_heads"] == ["b2"]
    bk.verify_backup(taken)
    assert down.stdout.index("verified") < down.stdout.index("Running downgrade b2 -> a1")
    after = status(alembic_project, url)
    assert after["current"] == ["a1"] and [p["revision"] for p in after["pending"]] == ["b2"]


def test_downgrade_of_a_production_environment_refuses_without_yes(pg, database, alembic_project):
    url = pg.url_for(database)
    assert inv(alembic_project, "db.migrate", "--local", "--database-url", url).returncode == 0
    run = inv(alembic_project, "db.downgrade", "--revision", "a1", "--env", "prod", "--database-url", url)
    assert run.returncode == 2 and "refusing without confirmation" in run.stderr
    assert status(alembic_project, url)["current"] == ["b2"]
    assert not (alembic_project / "backups" / "prod").exists()


def test_the_reference_apps_migrations_reach_head(pg, database, project_dir):
    ini = ROOT / "app" / "backend" / "alembic.ini"
    url = pg.url_for(database)
    run = inv(project_dir, "db.migrate", "--local", "--database-url", url, "--alembic-ini", str(ini))
    assert run.returncode == 0, run.stdout + run.stderr
    assert status_with(project_dir, url, ini)["up_to_date"]


def status_with(root, url, ini):
    run = inv(root, "db.status", "--json", "--database-url", url, "--alembic-ini", str(ini))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


UNREACHABLE = "postgresql://app:sekret-pw@127.0.0.1:{port}/shop"


@pytest.mark.parametrize("task", [
    ("db.migrate", "--local"),
    ("db.status",),
    ("db.history",),
    ("db.downgrade", "--revision", "a1", "--yes"),
    ("db.shell",),
    ("backup.create",),
])
def test_every_db_task_checks_the_connection_first_and_says_host_port_and_reason_in_one_line(alembic_project, task):
    from tests.fixtures.servers import free_port

    port = free_port()  # nobody listens there
    run = inv(alembic_project, *task, "--database-url", UNREACHABLE.format(port=port))
    assert run.returncode == 2, run.stdout + run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot connect to PostgreSQL at 127.0.0.1:{port} (database shop): "
                           "Connection refused")
    assert "sekret-pw" not in run.stdout + run.stderr
    assert not (alembic_project / "backups").exists()


def test_restore_checks_the_connection_before_it_asks_or_changes_anything(pg, database, alembic_project):
    url = pg.url_for(database)
    assert inv(alembic_project, "backup.create", "--database-url", url).returncode == 0
    from tests.fixtures.servers import free_port

    port = free_port()
    run = inv(alembic_project, "backup.restore", "latest", "--database-url", UNREACHABLE.format(port=port))
    assert run.returncode == 2 and f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in run.stderr
    assert "refusing without confirmation" not in run.stderr


def test_migrate_outside_dev_refuses_without_yes_and_without_a_terminal(pg, database, alembic_project):
    url = pg.url_for(database)
    run = inv(alembic_project, "db.migrate", "--local", "--env", "prod", "--database-url", url)
    assert run.returncode == 2 and "refusing without confirmation: migrate the database of 'prod'" in run.stderr
    assert status(alembic_project, url)["current"] == []
    done = inv(alembic_project, "db.migrate", "--local", "--env", "prod", "--yes", "--database-url", url)
    assert done.returncode == 0, done.stderr
    assert status(alembic_project, url)["current"] == ["b2"]


def add_revision(project_dir, rev: str, down: str, *statements: str) -> None:
    """A revision after ``down`` whose upgrade runs ``statements``, one op.execute each."""
    versions = project_dir / "app" / "backend" / "migrations" / "versions"
    upgrade = "".join(f"    op.execute({sql!r})\n" for sql in statements)
    (versions / f"{rev}.py").write_text(f'"""{rev}"""\nfrom alembic import op\n\nrevision = "{rev}"\n'
                                        f'down_revision = "{down}"\n\n\ndef upgrade():\n{upgrade}\n\n'
                                        'def downgrade():\n    pass\n')


def test_a_migration_that_raises_ends_in_one_line_naming_its_error_and_the_log_with_the_traceback(
        pg, database, alembic_project):
    url = pg.url_for(database)
    assert inv(alembic_project, "db.migrate", "--local", "--database-url", url).returncode == 0
    add_revision(alembic_project, "c3", "b2", "ALTER TABLE no_such_table ADD COLUMN x int")
    run = inv(alembic_project, "db.migrate", "--local", "--database-url", url)
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert 'relation "no_such_table" does not exist' in line and "full output: " in line
    log = Path(line.split("full output: ")[1].split(")")[0])
    assert "Traceback (most recent call last)" in log.read_text() and oct(log.stat().st_mode & 0o777) == "0o600"
    assert pg.password not in log.read_text()
    assert status(alembic_project, url)["current"] == ["b2"]  # its transaction was rolled back


def test_an_alembic_run_past_its_timeout_is_stopped_with_one_line_and_rolled_back(pg, database, alembic_project):
    url = pg.url_for(database)
    assert inv(alembic_project, "db.migrate", "--local", "--database-url", url).returncode == 0
    add_revision(alembic_project, "c3", "b2", "ALTER TABLE notes ADD COLUMN slow int", "SELECT pg_sleep(60)")
    config = alembic_project / "invoke.yaml"
    config.write_text(config.read_text() + "db:\n  alembic_timeout: 3\n")

    run = inv(alembic_project, "db.migrate", "--local", "--database-url", url)

    assert run.returncode == 1, run.stdout + run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert "alembic upgrade head did not finish within 3s" in line and "rolled back" in line
    assert "Traceback" not in run.stdout + run.stderr
    assert pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' "
                   "AND application_name LIKE 'moorage-alembic-%'") == "0"  # its session was ended too
    assert status(alembic_project, url)["current"] == ["b2"]
    assert pg.psql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'slow'", database) == "0"
