"""backup.* against a real PostgreSQL: round trip, interruption, corruption, failed restores."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from moorage import backup as bk
from moorage.core.errors import OperationFailed, UserError
from moorage.pg import LocalTarget, parse_database_url

from .conftest import Gate, fingerprint, inv, load_project, seed, spawn_inv, stop_group

pytestmark = pytest.mark.postgres


def target(pg, database) -> LocalTarget:
    return LocalTarget(parse_database_url(pg.url_for(database)))


def test_round_trip_restores_every_table_exactly_and_never_prints_the_password(pg, database, project_dir):
    seed(pg, database)
    before = fingerprint(pg, database)
    assert sum(n for n, _ in before.values()) >= 100_000
    url = pg.url_for(database)

    made = inv(project_dir, "backup.create", "--database-url", url)
    assert made.returncode == 0, made.stderr

    pg.psql("DELETE FROM orders WHERE id % 3 = 0; UPDATE customers SET name = 'changed' WHERE id < 500; "
            "TRUNCATE events; CREATE TABLE stray (x int)", database)
    assert fingerprint(pg, database) != before

    restored = inv(project_dir, "backup.restore", "latest", "--yes", "--jobs", "2", env={"DATABASE_URL": url})
    assert restored.returncode == 0, restored.stderr
    assert fingerprint(pg, database) == before
    assert pg.psql("SELECT to_regclass('public.stray') IS NULL", database) == "t"

    listed = inv(project_dir, "backup.list", "--json")
    names = [b["name"] for b in json.loads(listed.stdout)["backups"]]
    assert any(n.endswith("-dev-pre-restore") for n in names)  # the safety backup
    assert [d for d in pg.databases() if d.startswith(f"{database}_pre_restore_")]
    assert not [d for d in pg.databases() if d.startswith(f"{database}_restore_")]
    for run in (made, restored, listed):
        assert pg.password not in run.stdout + run.stderr
    assert "******" in made.stdout


def test_restore_without_yes_and_without_a_terminal_refuses_and_changes_nothing(pg, database, project_dir):
    seed(pg, database)
    proj = load_project(project_dir)
    taken = bk.create_backup(target(pg, database), bk.backup_dir(proj.backups_dir, "dev"), environment="dev")
    pg.psql("DELETE FROM customers WHERE id > 19990 AND id NOT IN (SELECT customer_id FROM orders)", database)
    before = fingerprint(pg, database)
    dbs = pg.databases()

    run = inv(project_dir, "backup.restore", taken.name, "--database-url", pg.url_for(database))

    assert run.returncode == 2
    assert "refusing without confirmation" in run.stderr
    assert fingerprint(pg, database) == before and pg.databases() == dbs


def test_interrupted_create_leaves_no_valid_backup_and_the_next_one_works(pg, database, project_dir, tmp_path):
    seed(pg, database)
    # A pg_dump that sends 64 KiB and then stops at a gate: the kill lands mid-stream, deterministically.
    gate = Gate(tmp_path, "pg_dump")
    child = spawn_inv(project_dir, "backup.create", env=gate.env(DATABASE_URL=pg.url_for(database)))
    directory = project_dir / "backups" / "dev"
    try:
        gate.reached(child)
        assert bk.partial_files(directory)
        os.kill(child.pid, signal.SIGKILL)  # Moorage only; its pg_dump gets the parent-death signal
        child.wait(10)
    finally:
        stop_group(child)  # the stopped wrapper
    assert not [b for b in bk.list_backups(directory) if b.valid]
    listed = json.loads(inv(project_dir, "backup.list", "--json").stdout)
    assert listed["backups"] == []

    again = inv(project_dir, "backup.create", env={"DATABASE_URL": pg.url_for(database)})
    assert again.returncode == 0, again.stderr
    valid = [b for b in bk.list_backups(directory) if b.valid]
    assert len(valid) == 1 and bk.partial_files(directory) == []
    bk.verify_backup(valid[0])


def _flip_byte(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_one_flipped_byte_fails_verify_and_restore_refuses_leaving_the_database_untouched(pg, database, project_dir):
    seed(pg, database)
    proj = load_project(project_dir)
    taken = bk.create_backup(target(pg, database), bk.backup_dir(proj.backups_dir, "dev"), environment="dev")
    _flip_byte(taken.path)
    pg.psql("UPDATE customers SET name = 'after' WHERE id = 1", database)
    before = fingerprint(pg, database)
    dbs = pg.databases()

    verified = inv(project_dir, "backup.verify", taken.name)
    assert verified.returncode == 1
    assert "checksum mismatch" in verified.stderr and "Traceback" not in verified.stderr

    refused = inv(project_dir, "backup.restore", taken.name, "--yes", "--database-url", pg.url_for(database))
    assert refused.returncode == 2
    assert "refusing to restore" in refused.stderr and "checksum mismatch" in refused.stderr
    assert fingerprint(pg, database) == before and pg.databases() == dbs
    assert len(bk.list_backups(bk.backup_dir(proj.backups_dir, "dev"))) == 1  # not even a safety backup


def test_truncated_backup_is_refused(pg, database, tmp_path):
    seed(pg, database)
    taken = bk.create_backup(target(pg, database), tmp_path / "dev", environment="dev")
    with open(taken.path, "r+b") as fh:
        fh.truncate(taken.meta["size"] // 2)
    with pytest.raises(UserError, match="truncated"):
        bk.restore_backup(target(pg, database), bk.read_backup(taken.path), environment="dev",
                          backups_root=tmp_path, confirm=lambda plan: None)


class TruncatingTarget(LocalTarget):
    """Feeds pg_restore half the archive after verification passed: a restore that fails half-way."""

    def restore_archive(self, archive, database, jobs=1):
        half = archive.with_name("half.dump")
        half.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
        return super().restore_archive(half, database, jobs)


def test_a_restore_failing_half_way_leaves_the_original_intact_and_no_temp_database(pg, database, tmp_path):
    seed(pg, database)
    taken = bk.create_backup(target(pg, database), tmp_path / "dev", environment="dev")
    pg.psql("DELETE FROM orders WHERE id > 50000", database)
    before = fingerprint(pg, database)
    dbs = pg.databases()

    with pytest.raises(OperationFailed, match="pg_restore into .* failed"):
        bk.restore_backup(TruncatingTarget(parse_database_url(pg.url_for(database))), taken, environment="dev",
                          backups_root=tmp_path, confirm=lambda plan: None)

    assert fingerprint(pg, database) == before
    assert pg.databases() == dbs


def test_a_killed_restore_leaves_the_original_intact_and_the_next_restore_cleans_up(pg, database, project_dir,
                                                                                   tmp_path):
    seed(pg, database)
    proj = load_project(project_dir)
    taken = bk.create_backup(target(pg, database), bk.backup_dir(proj.backups_dir, "dev"), environment="dev")
    pg.psql("UPDATE orders SET total = 0 WHERE id < 100", database)
    before = fingerprint(pg, database)
    gate = Gate(tmp_path, "pg_restore")  # stops as pg_restore starts on the temporary database
    child = spawn_inv(project_dir, "backup.restore", taken.name, "--yes", env=gate.env(DATABASE_URL=pg.url_for(database)))
    try:
        gate.reached(child)
        assert any(d.startswith(f"{database}_restore_") for d in pg.databases())
        os.killpg(child.pid, signal.SIGKILL)  # Moorage and its pg_restore, no cleanup possible
        child.wait(10)
    finally:
        stop_group(child)
    assert fingerprint(pg, database) == before
    assert not any(d.startswith(f"{database}_pre_restore_") for d in pg.databases())

    result = bk.restore_backup(target(pg, database), taken, environment="dev", backups_root=proj.backups_dir,
                               confirm=lambda plan: None, keep_old=False)
    assert result["database"] == database
    assert not any(d.startswith(f"{database}_restore_") or d.startswith(f"{database}_pre_restore_")
                   for d in pg.databases())
    assert fingerprint(pg, database) != before  # the backup's data, not the edited one
    assert pg.psql("SELECT count(*) FROM orders WHERE total = 0 AND id < 100", database) == "0"


def test_backup_from_another_environment_needs_force_env(pg, database, tmp_path):
    seed(pg, database)
    taken = bk.create_backup(target(pg, database), tmp_path / "prod", environment="prod")
    with pytest.raises(UserError, match="environment 'prod', not 'dev'"):
        bk.restore_backup(target(pg, database), taken, environment="dev", backups_root=tmp_path,
                          confirm=lambda plan: None)
    result = bk.restore_backup(target(pg, database), taken, environment="dev", backups_root=tmp_path,
                               confirm=lambda plan: None, force_env=True, keep_old=False)
    assert result["tables"] == 3


def test_unreachable_database_is_a_clean_exit_2_and_writes_no_file(project_dir):
    run = inv(project_dir, "backup.create", "--database-url", "postgresql://u:sekret-pw@127.0.0.1:1/x")
    assert run.returncode == 2
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in run.stderr and "sekret-pw" not in run.stderr + run.stdout
    assert not (project_dir / "backups" / "dev").exists() or not list((project_dir / "backups" / "dev").iterdir())


def test_metadata_records_what_the_backup_holds(pg, database, tmp_path):
    seed(pg, database)
    pg.psql("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
            "INSERT INTO alembic_version VALUES ('abc123')", database)
    taken = bk.create_backup(target(pg, database), tmp_path / "dev", environment="dev", label="nightly",
                             release_revision="7")
    meta = json.loads(taken.meta_path.read_text())
    assert taken.path.name.endswith("-dev-nightly.dump")
    assert meta["alembic_heads"] == ["abc123"] and meta["release_revision"] == "7"
    assert meta["database"] == database and meta["environment"] == "dev" and meta["format"] == "custom"
    assert meta["size"] == taken.path.stat().st_size and meta["server_version"].startswith("15")
    assert meta["sha256"] == bk.sha256_file(taken.path)
    assert pg.password not in taken.meta_path.read_text()
    assert oct(taken.path.stat().st_mode & 0o777) == "0o600"


def test_create_dry_run_names_the_database_and_writes_nothing(pg, database, project_dir):
    run = inv(project_dir, "backup.create", "--dry-run", "--database-url", pg.url_for(database))
    assert run.returncode == 0, run.stderr
    assert database in run.stdout and "dry run: would write pg_dump -Fc" in run.stdout
    assert pg.password not in run.stdout + run.stderr
    assert not (project_dir / "backups" / "dev").exists() or not list((project_dir / "backups" / "dev").iterdir())
