"""The drill CronJob's script (chart/files/scripts/drill.sh) run for real, with sh and the PostgreSQL client tools,
against the test server, on a dump the backup CronJob's script (backup.sh) made: what `inv backup.drill` does,
with its result beside the dump where `inv backup.list` reads it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from moorage.backup.remote import parse_listing
from moorage.pg import LocalTarget, parse_database_url

from .conftest import seed
from .test_backup_script import run_script
from .test_drill import drill_databases, dump_sql

pytestmark = pytest.mark.postgres

SCRIPT = Path(__file__).resolve().parents[3] / "chart" / "files" / "scripts" / "drill.sh"


def run_drill(pg, database, volume: Path, checks: dict[str, str]) -> subprocess.CompletedProcess:
    checks_dir = volume.parent / "checks"
    checks_dir.mkdir(exist_ok=True)
    for name, query in checks.items():
        (checks_dir / f"{name}.sql").write_text(query)
    tools = Path(LocalTarget(parse_database_url(pg.url_for(database))).tool("pg_restore")).parent
    env = {"PATH": f"{tools}:{os.environ['PATH']}", "PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.user,
           "PGPASSWORD": pg.password, "PGDATABASE": database, "PGSSLMODE": "disable", "NAMESPACE": "moorage-dev",
           "CHART": "moorage-0.1.0", "BACKUP_DIR": str(volume), "CHECKS_DIR": str(checks_dir),
           "HOSTNAME": "moorage-backup-drill-29412-q8x1z"}
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)


def listed(volume: Path):
    """What the reader pod's listing gives `inv backup.list` for this volume (dump, metadata, drill result)."""
    lines = []
    for dump in sorted(volume.glob("*.dump")):
        meta = dump.with_suffix(".json").read_text().replace("\n", "")
        drill = dump.with_name(dump.stem + ".drill.json")
        lines.append(f"dump\t{dump.name}\t{dump.stat().st_size}\t{meta}\t"
                     + (drill.read_text().replace("\n", "") if drill.exists() else ""))
    backups, _ = parse_listing("\n".join(lines), "in-cluster moorage-dev/pvc/moorage-backup")
    return backups


@pytest.fixture
def volume(pg, database, tmp_path) -> Path:
    """A backup volume holding one backup of the seeded database, made by backup.sh."""
    seed(pg, database)
    folder = tmp_path / "volume"
    folder.mkdir()
    made = run_script(pg, database, folder)
    assert made.returncode == 0, made.stderr
    return folder


def test_a_scheduled_drill_of_a_good_backup_passes_and_records_its_result_beside_the_dump(pg, database, volume):
    before, databases = dump_sql(pg, database), pg.databases()

    run = run_drill(pg, database, volume, {"orders-have-customers": "SELECT count(*) = 60000 FROM orders "
                                                                      "WHERE customer_id IS NOT NULL"})

    assert run.returncode == 0, run.stdout + run.stderr
    assert "drill passed" in run.stdout
    (result_file,) = volume.glob("*.drill.json")
    result = json.loads(result_file.read_text())
    assert result["ok"] is True and result["failed"] == [] and result["dropped"] is True
    assert [c["name"] for c in result["checks"]] == ["archive", "restore", "tables", "row counts",
                                                     "migration head", "orders-have-customers"]
    assert result["made_by"] == "cronjob" and result["database"].startswith(f"{database}_drill_")
    assert dump_sql(pg, database) == before, "the live database was changed by the drill"
    assert pg.databases() == databases and drill_databases(pg, database) == []
    (backup,) = listed(volume)
    assert backup.valid and backup.meta["last_drill"]["ok"] is True
    assert pg.password not in run.stdout + run.stderr + result_file.read_text()


def test_a_scheduled_drill_whose_check_fails_exits_1_naming_it_and_drops_its_database(pg, database, volume):
    databases = pg.databases()

    run = run_drill(pg, database, volume, {"kept": "SELECT true", "no-big-orders": "SELECT max(total) < 100 FROM orders"})

    assert run.returncode == 1, run.stdout + run.stderr
    assert 'drill FAILED: "no-big-orders"' in run.stderr
    assert "check no-big-orders: FAILED: returned 'f', not one row with true" in run.stdout
    result = json.loads(next(volume.glob("*.drill.json")).read_text())
    assert result["ok"] is False and result["failed"] == ["no-big-orders"] and result["dropped"] is True
    assert pg.databases() == databases
    (backup,) = listed(volume)
    assert backup.meta["last_drill"]["failed"] == ["no-big-orders"]


def test_a_scheduled_drill_of_a_tampered_dump_fails_on_the_archive_and_creates_no_database(pg, database, volume):
    (dump,) = volume.glob("*.dump")
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    databases = pg.databases()

    run = run_drill(pg, database, volume, {})

    assert run.returncode == 1, run.stdout + run.stderr
    assert 'drill FAILED: "archive"' in run.stderr
    result = json.loads(next(volume.glob("*.drill.json")).read_text())
    assert result["failed"] == ["archive"] and result["restore_seconds"] is None
    assert pg.databases() == databases
