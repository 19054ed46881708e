"""The backup CronJob's script (chart/files/scripts/backup.sh) run for real, with sh and the PostgreSQL client
tools, against the test server: what it leaves is a backup Moorage reads, verifies and drills like its own."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from moorage import backup as bk
from moorage.pg import LocalTarget, parse_database_url

from .conftest import inv, seed

pytestmark = pytest.mark.postgres

SCRIPT = Path(__file__).resolve().parents[3] / "chart" / "files" / "scripts" / "backup.sh"


def run_script(pg, database, directory: Path, *, retention: int = 3, password: str | None = None):
    tools = Path(LocalTarget(parse_database_url(pg.url_for(database))).tool("pg_dump")).parent
    env = {"PATH": f"{tools}:{os.environ['PATH']}", "PGHOST": pg.host, "PGPORT": str(pg.port), "PGUSER": pg.user,
           "PGPASSWORD": password or pg.password, "PGDATABASE": database, "PGSSLMODE": "disable",
           "ENVIRONMENT": "dev", "NAMESPACE": "moorage-dev", "RELEASE_REVISION": "4", "CHART": "moorage-0.1.0",
           "RETENTION": str(retention), "BACKUP_DIR": str(directory), "HOSTNAME": "moorage-backup-29412-x7k2p"}
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)


def test_the_cronjob_script_writes_the_metadata_backup_create_writes(pg, database, tmp_path):
    seed(pg, database)
    pg.psql("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
            "INSERT INTO alembic_version VALUES ('0002'); CREATE TABLE \"Odd \"\"Name\"\"\" (x text); "
            "INSERT INTO \"Odd \"\"Name\"\"\" VALUES ('a\\b'), (E'two\\nlines')", database)
    volume = tmp_path / "volume"
    volume.mkdir()

    run = run_script(pg, database, volume)

    assert run.returncode == 0, run.stderr
    (found,) = bk.list_backups(volume)
    assert found.valid and found.name.endswith("-dev-scheduled") and found.kind == "ordinary"
    bk.verify_backup(found)
    ours = bk.create_backup(LocalTarget(parse_database_url(pg.url_for(database))), tmp_path / "local",
                            environment="dev")
    for key in ("database", "environment", "alembic_heads", "tables", "row_counts", "format", "server_version"):
        assert found.meta[key] == ours.meta[key], key
    assert found.meta["row_counts"]['public."Odd ""Name"""'] == 2
    assert found.meta["release_revision"] == "4" and found.meta["made_by"] == "cronjob"
    assert found.meta["target"] == "cronjob moorage-dev/moorage-backup-29412-x7k2p"
    assert found.meta["sha256"] == bk.sha256_file(found.path) and found.meta["size"] == found.path.stat().st_size
    assert pg.password not in found.meta_path.read_text() + run.stdout + run.stderr
    assert oct(found.path.stat().st_mode & 0o777) == "0o600"
    assert bk.partial_files(volume) == []


def test_a_cronjob_backup_drills_like_a_local_one(pg, database, project_dir):
    seed(pg, database)
    directory = project_dir / "backups" / "dev"
    directory.mkdir(parents=True)
    assert run_script(pg, database, directory).returncode == 0
    (found,) = bk.list_backups(directory)

    drill = inv(project_dir, "backup.drill", found.name, env={"DATABASE_URL": pg.url_for(database)})

    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert "3 tables match the recorded counts" in drill.stdout


def test_a_failed_dump_leaves_nothing_behind(pg, database, tmp_path):
    seed(pg, database)
    volume = tmp_path / "volume"
    volume.mkdir()
    run = run_script(pg, database, volume, password="wrong-password")
    assert run.returncode != 0
    assert "password authentication failed" in run.stderr
    assert list(volume.iterdir()) == []


def test_retention_keeps_the_newest_dumps_with_their_metadata(pg, database, tmp_path):
    pg.psql("CREATE TABLE t (x int)", database)
    volume = tmp_path / "volume"
    volume.mkdir()
    names = []
    for stamp in ("20260101T030000Z", "20260102T030000Z", "20260103T030000Z"):
        for suffix in (".dump", ".json"):
            (volume / f"{stamp}-dev-scheduled{suffix}").write_text("old")
            os.utime(volume / f"{stamp}-dev-scheduled{suffix}", (1767000000 + len(names),) * 2)
        names.append(f"{stamp}-dev-scheduled")
    assert run_script(pg, database, volume, retention=2).returncode == 0
    left = sorted(p.name for p in volume.iterdir())
    new = [n for n in left if n.endswith(".dump") and not n.startswith("2026010")]
    assert len(new) == 1
    assert left == sorted([f"{names[2]}.dump", f"{names[2]}.json", new[0], new[0].replace(".dump", ".json")])

