"""backup.drill against a real PostgreSQL: a restore rehearsed in a throwaway database, its invariants checked."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from moorage import backup as bk
from moorage import kube
from moorage.backup.drill import DrillCheck, drill_backup, drill_database_name
from moorage.core.errors import UserError
from moorage.database import KubePods
from moorage.pg import LocalTarget, PodTarget, parse_database_url
from tests.fixtures.kubeapi import kubeapi  # noqa: F401 - fixture

from .conftest import inv, seed
from .test_backup_pod import POSTGRESQL_POD_SELECTOR, container, postgresql_pod

pytestmark = pytest.mark.postgres

CHECKS = [
    {"name": "every-order-has-a-customer",
     "sql": "SELECT NOT EXISTS (SELECT 1 FROM orders o LEFT JOIN customers c ON c.id = o.customer_id "
            "WHERE c.id IS NULL)"},
    {"name": "customers-have-emails", "sql": "SELECT count(*) = 20000 FROM customers WHERE email LIKE '%@%'"},
]


def configure(project_dir, checks) -> None:
    path = project_dir / "invoke.yaml"
    config = yaml.safe_load(path.read_text())
    config["backup"] = {"drill_checks": checks}
    path.write_text(yaml.safe_dump(config))


def dump_sql(pg, database) -> bytes:
    """The whole database as pg_dump's plain SQL: the same bytes if and only if nothing changed.

    pg_dump >= 15.14 brackets its script with ``\\restrict KEY`` lines, a random key per run: left out.
    """
    out = subprocess.run([pg.tool("pg_dump"), "--format=plain", "--no-password"], env={**os.environ, **pg.env(database)},
                         capture_output=True, check=True, timeout=120).stdout
    return b"\n".join(line for line in out.split(b"\n") if not line.startswith((b"\\restrict ", b"\\unrestrict ")))


def drill_databases(pg, database) -> list[str]:
    return sorted(d for d in pg.databases() if d.startswith(f"{database}_drill_"))


def take(pg, database, project_dir) -> bk.Backup:
    made = inv(project_dir, "backup.create", env={"DATABASE_URL": pg.url_for(database)})
    assert made.returncode == 0, made.stderr
    (found,) = bk.list_backups(project_dir / "backups" / "dev")
    return found


def test_a_drill_of_a_good_backup_passes_records_its_result_and_leaves_the_live_database_unchanged(
        pg, database, project_dir):
    seed(pg, database)
    configure(project_dir, CHECKS)
    taken = take(pg, database, project_dir)
    pg.psql("UPDATE customers SET name = 'changed after the backup' WHERE id = 7", database)
    before, databases = dump_sql(pg, database), pg.databases()

    run = inv(project_dir, "backup.drill", taken.name, env={"DATABASE_URL": pg.url_for(database)})

    assert run.returncode == 0, run.stdout + run.stderr
    assert f"drill of {taken.name} passed" in run.stdout
    for check in ("archive", "restore", "tables", "row counts", "migration head", *(c["name"] for c in CHECKS)):
        assert check in run.stdout
    assert dump_sql(pg, database) == before, "the live database was changed by the drill"
    assert pg.databases() == databases, "the throwaway database is still there"
    last = json.loads(taken.meta_path.read_text())["last_drill"]
    assert last["ok"] is True and last["failed"] == [] and last["dropped"] is True
    assert last["restore_seconds"] > 0 and last["database"].startswith(f"{database}_drill_")
    listed = json.loads(inv(project_dir, "backup.list", "--json").stdout)["backups"]
    assert listed[0]["last_drill"]["ok"] is True and listed[0]["location"] == "local"
    assert pg.password not in run.stdout + run.stderr


def test_a_configured_check_returning_false_fails_the_drill_naming_the_check(pg, database, project_dir):
    seed(pg, database)
    configure(project_dir, [*CHECKS, {"name": "no-big-orders", "sql": "SELECT max(total) < 100 FROM orders"}])
    taken = take(pg, database, project_dir)
    databases = pg.databases()

    run = inv(project_dir, "backup.drill", "latest", env={"DATABASE_URL": pg.url_for(database)})

    assert run.returncode == 1, run.stdout + run.stderr
    assert "check 'no-big-orders': returned 'f', not one row with true" in run.stderr
    assert "every-order-has-a-customer" not in run.stderr, "only the failing check is named in the error"
    assert "Traceback" not in run.stderr
    assert pg.databases() == databases
    last = json.loads(taken.meta_path.read_text())["last_drill"]
    assert last["ok"] is False and last["failed"] == ["no-big-orders"]
    listed = inv(project_dir, "backup.list")
    assert "FAILED" in listed.stdout and "no-big-orders" in listed.stdout


def test_a_tampered_row_count_in_the_metadata_fails_the_drill_naming_the_table(pg, database, project_dir):
    seed(pg, database)
    taken = take(pg, database, project_dir)
    meta = json.loads(taken.meta_path.read_text())
    assert meta["row_counts"] == {"public.customers": 20000, "public.events": 30000, "public.orders": 60000}
    meta["row_counts"]["public.orders"] += 1
    taken.meta_path.write_text(json.dumps(meta))
    databases = pg.databases()

    run = inv(project_dir, "backup.drill", taken.name, env={"DATABASE_URL": pg.url_for(database)})

    assert run.returncode == 1, run.stdout + run.stderr
    assert ("check 'row count public.orders': 60000 rows restored, the backup recorded 60001"
            in run.stderr), run.stderr
    assert "public.customers" not in run.stderr
    assert pg.databases() == databases


def test_a_migration_head_other_than_the_recorded_one_fails_the_drill(pg, database, tmp_path):
    seed(pg, database)
    pg.psql("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
            "INSERT INTO alembic_version VALUES ('0002')", database)
    target = LocalTarget(parse_database_url(pg.url_for(database)))
    taken = bk.create_backup(target, tmp_path / "dev", environment="dev")
    assert taken.meta["alembic_heads"] == ["0002"]
    taken.meta["alembic_heads"] = ["0003"]
    taken.meta_path.write_text(json.dumps(taken.meta))

    result = drill_backup(target, bk.read_backup(taken.path))

    assert [c.name for c in result.failed] == ["migration head"]
    assert result.failed[0].detail == "restored at 0002, the backup at 0003"


def test_a_backup_without_recorded_row_counts_still_drills_with_the_other_checks(pg, database, tmp_path):
    seed(pg, database)
    target = LocalTarget(parse_database_url(pg.url_for(database)))
    taken = bk.create_backup(target, tmp_path / "dev", environment="dev")
    del taken.meta["row_counts"]
    taken.meta_path.write_text(json.dumps(taken.meta))

    result = drill_backup(target, bk.read_backup(taken.path), checks=[DrillCheck("orders", "SELECT true")])

    assert result.ok, result.failed
    assert {c.name: c.detail for c in result.checks}["row counts"] == \
        "skipped: this backup has no recorded row counts"


def test_a_drill_refuses_a_name_that_exists_and_leaves_that_database_alone(pg, database, tmp_path):
    seed(pg, database)
    target = LocalTarget(parse_database_url(pg.url_for(database)))
    taken = bk.create_backup(target, tmp_path / "dev", environment="dev")
    when = bk.store.utcnow()
    taken_name = drill_database_name(database, when)
    pg.create_database(taken_name)
    try:
        pg.psql("CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (42)", taken_name)
        with pytest.raises(UserError, match="already exists"):
            drill_backup(target, taken, now=when)
        assert pg.psql("SELECT x FROM keep_me", taken_name) == "42"
        assert "last_drill" not in json.loads(taken.meta_path.read_text())
    finally:
        pg.drop_database(taken_name)


def test_ctrl_c_during_the_restore_drops_the_throwaway_database(pg, database, project_dir, tmp_path):
    seed(pg, database)
    taken = take(pg, database, project_dir)
    # A pg_restore that waits before it starts: the interrupt lands while the drill's database exists.
    slow = tmp_path / "bin"
    slow.mkdir()
    real = LocalTarget(parse_database_url(pg.url_for(database))).tool("pg_restore")
    (slow / "pg_restore").write_text(f'#!/bin/sh\nsleep 60\nexec "{real}" "$@"\n')
    (slow / "pg_restore").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("MOORAGE_PG_BIN", "MOORAGE_ENV")}
    env.update(PATH=f"{slow}:{os.environ['PATH']}", DATABASE_URL=pg.url_for(database))
    child = subprocess.Popen([sys.executable, "-m", "invoke", "backup.drill", taken.name], cwd=project_dir, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not drill_databases(pg, database):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the drill never created its database"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # the wrapper's sleep
    assert child.returncode == 130, out + err
    assert "drill interrupted" in err
    assert drill_databases(pg, database) == []
    assert "last_drill" not in json.loads(taken.meta_path.read_text()), "an interrupted drill is not a result"


def test_a_drill_through_the_pod_exec_stream_passes_and_drops_its_database(pg, database, kubeapi, tmp_path):  # noqa: F811
    seed(pg, database)
    before = dump_sql(pg, database)
    kubeapi.apply(postgresql_pod())
    kubeapi.exec_handler = container(pg, database)
    api = kube.client(kubeapi.context, kubeapi.kubeconfig)
    target = PodTarget.discover(KubePods(api), "demo-dev", POSTGRESQL_POD_SELECTOR, container="postgresql")
    taken = bk.create_backup(target, tmp_path / "dev", environment="dev")

    result = drill_backup(target, taken, checks=[DrillCheck("orders", "SELECT count(*) = 60000 FROM orders")])

    assert result.ok, result.failed
    assert any("pg_restore" in " ".join(c) for c in kubeapi.exec_handler.calls)
    assert drill_databases(pg, database) == []
    assert dump_sql(pg, database) == before
    assert json.loads(taken.meta_path.read_text())["last_drill"]["target"] == "pod demo-dev/demo-postgresql-0"
