"""Backups you can trust, against a real PostgreSQL: every data block read back, `latest` never a safety
backup, one change per database at a time, and a restore that stops says what state the database is in."""

from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path

import pytest

from moorage import backup as bk
from moorage.core.errors import Interrupted, OperationFailed
from moorage.pg import LocalTarget, parse_database_url

from .conftest import Gate, fingerprint, inv, load_project, real_tool, seed, spawn_inv, stop_group

pytestmark = pytest.mark.postgres

CUTS = (0.05, 0.3, 0.6, 0.9, 0.999)


def target(pg, database) -> LocalTarget:
    return LocalTarget(parse_database_url(pg.url_for(database)))


def cut_and_reseal(backup: bk.Backup, keep: int) -> None:
    """Truncate the dump to ``keep`` bytes and rewrite its metadata to match (as a careless copy tool might)."""
    with open(backup.path, "r+b") as fh:
        fh.truncate(keep)
    meta = json.loads(backup.meta_path.read_text())
    meta.update(size=keep, sha256=bk.sha256_file(backup.path))
    backup.meta_path.write_text(json.dumps(meta))


def test_a_dump_cut_short_with_its_metadata_rewritten_fails_verify_at_every_cut(pg, database, project_dir):
    seed(pg, database)
    proj = load_project(project_dir)
    directory = bk.backup_dir(proj.backups_dir, "dev")
    whole = bk.create_backup(target(pg, database), directory, environment="dev")
    original = whole.path.read_bytes()
    for fraction in CUTS:
        keep = int(len(original) * fraction)
        whole.path.write_bytes(original)
        cut_and_reseal(whole, keep)
        run = inv(project_dir, "backup.verify", whole.name)
        assert run.returncode == 1, f"cut at {fraction:.0%} ({keep} bytes) passed verify: {run.stdout}"
        assert "does not read back whole" in run.stderr and "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
    quick = inv(project_dir, "backup.verify", whole.name, "--quick")  # the table of contents alone still reads
    assert quick.returncode == 0 and "data not read" in quick.stdout


def test_a_restore_of_a_cut_and_resealed_dump_leaves_the_database_untouched(pg, database, project_dir):
    seed(pg, database)
    proj = load_project(project_dir)
    taken = bk.create_backup(target(pg, database), bk.backup_dir(proj.backups_dir, "dev"), environment="dev")
    cut_and_reseal(taken, int(taken.meta["size"] * 0.6))
    pg.psql("UPDATE customers SET name = 'after' WHERE id = 1", database)
    before, dbs = fingerprint(pg, database), pg.databases()

    run = inv(project_dir, "backup.restore", taken.name, "--yes", "--database-url", pg.url_for(database))

    assert run.returncode == 2 and "refusing to restore" in run.stderr and "does not read back whole" in run.stderr
    assert fingerprint(pg, database) == before and pg.databases() == dbs
    assert len(bk.list_backups(bk.backup_dir(proj.backups_dir, "dev"))) == 1  # not even a safety backup


def test_a_dump_cut_short_while_pg_dump_exits_0_is_never_kept(pg, database, tmp_path):
    seed(pg, database)
    # A pg_dump whose output stops half-way while it still exits 0 (a broken pipe in a wrapper, a full pipe buffer).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pg_dump").write_text(f'#!/bin/bash\n"{real_tool("pg_dump")}" "$@" | head -c 400000\nexit 0\n')
    (bin_dir / "pg_dump").chmod(0o755)
    short = LocalTarget(parse_database_url(pg.url_for(database)), bin_dir=str(bin_dir))

    with pytest.raises(bk.BackupInvalid, match="does not read back whole"):
        bk.create_backup(short, tmp_path / "dev", environment="dev")

    assert list((tmp_path / "dev").iterdir()) == []


def test_latest_is_the_newest_ordinary_backup_so_restoring_it_twice_restores_it_twice(pg, database, project_dir):
    seed(pg, database)
    url = pg.url_for(database)
    assert inv(project_dir, "backup.create", "--database-url", url).returncode == 0
    wanted = fingerprint(pg, database)
    pg.psql("DELETE FROM orders WHERE id % 2 = 0", database)

    for _ in range(2):
        run = inv(project_dir, "backup.restore", "latest", "--yes", "--drop-old", "--database-url", url)
        assert run.returncode == 0, run.stderr
        assert fingerprint(pg, database) == wanted

    listed = json.loads(inv(project_dir, "backup.list", "--json").stdout)["backups"]
    assert sorted(b["kind"] for b in listed) == ["ordinary", "safety", "safety"]
    assert {b["label"] for b in listed if b["kind"] == "safety"} == {"pre-restore"}
    table = inv(project_dir, "backup.list").stdout
    assert "safety (pre-restore)" in table


def test_backup_names_stay_unique_within_one_second(pg, database, tmp_path):
    seed(pg, database)
    directory = tmp_path / "dev"
    directory.mkdir()
    when = bk.store.utcnow()
    stem = bk.backup_stem(when, "dev", "pre-restore")
    # Another run is writing a backup of that name right now: its partial file exists and is locked.
    with open(directory / f"{stem}.dump.partial", "wb") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        first = bk.create_backup(target(pg, database), directory, environment="dev", label="pre-restore", now=when)
        second = bk.create_backup(target(pg, database), directory, environment="dev", label="pre-restore", now=when)
    assert (first.name, second.name) == (f"{stem}.2", f"{stem}.3")
    assert first.kind == second.kind == "safety"


@pytest.mark.parametrize("second", [
    ("backup.restore", "{backup}", "--yes"),
    ("backup.create",),
    ("db.migrate", "--local"),
    ("db.downgrade", "--revision", "-1"),
])
def test_while_a_restore_runs_another_change_of_that_database_refuses_naming_it(pg, database, project_dir,
                                                                                tmp_path, second):
    seed(pg, database)
    url = pg.url_for(database)
    proj = load_project(project_dir)
    taken = bk.create_backup(target(pg, database), bk.backup_dir(proj.backups_dir, "dev"), environment="dev")
    pg.psql("DELETE FROM events", database)
    gate = Gate(tmp_path, "pg_restore")
    first = spawn_inv(project_dir, "backup.restore", taken.name, "--yes", env=gate.env(DATABASE_URL=url))
    try:
        gate.reached(first)  # the first restore holds the database's lock, stopped before its pg_restore

        run = inv(project_dir, *(a.format(backup=taken.name) for a in second), env={"DATABASE_URL": url})

        assert run.returncode == 1, run.stdout + run.stderr
        (line,) = run.stderr.strip().splitlines()
        assert f"backup.restore of database {database} at 127.0.0.1:{pg.port} (dev)" in line
        assert f"(pid {first.pid} on " in line and "started at" in line and "is already running" in line
        gate.release()
        assert first.wait(120) == 0, first.stderr.read()
    finally:
        stop_group(first)
    assert fingerprint(pg, database)["events"][0] == 30000  # the first restore finished, untouched by the second


def test_ctrl_c_during_a_restore_exits_through_the_interrupt_path_saying_the_database_is_unchanged(
        pg, database, project_dir, tmp_path):
    seed(pg, database)
    proj = load_project(project_dir)
    taken = bk.create_backup(target(pg, database), bk.backup_dir(proj.backups_dir, "dev"), environment="dev")
    pg.psql("UPDATE orders SET total = 1 WHERE id < 10", database)
    before = fingerprint(pg, database)
    gate = Gate(tmp_path, "pg_restore")
    child = spawn_inv(project_dir, "backup.restore", taken.name, "--yes",
                      env=gate.env(DATABASE_URL=pg.url_for(database)))
    try:
        gate.reached(child)
        os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group
        out, err = child.communicate(timeout=60)
    finally:
        stop_group(child)
    assert child.returncode == 130
    assert f"restore interrupted: {database} is unchanged" in err and "Traceback" not in err
    assert fingerprint(pg, database) == before
    assert not any(d.startswith(f"{database}_restore_") for d in pg.databases())


class DroppingTarget(LocalTarget):
    """The server goes away right after pg_restore filled the temporary database (before its check)."""

    def __init__(self, url, server):
        super().__init__(url)
        self.server = server

    def restore_archive(self, archive: Path, database: str, jobs: int = 1):
        done = super().restore_archive(archive, database, jobs)
        self.server.stop()
        return done


def test_the_server_going_away_mid_restore_is_an_operation_failure_saying_what_state_the_database_is_in(
        pg, database, tmp_path):
    seed(pg, database)
    taken = bk.create_backup(target(pg, database), tmp_path / "dev", environment="dev")
    pg.psql("DELETE FROM orders WHERE id > 100", database)
    before = fingerprint(pg, database)
    try:
        with pytest.raises(OperationFailed) as err:
            bk.restore_backup(DroppingTarget(parse_database_url(pg.url_for(database)), pg), taken, environment="dev",
                              backups_root=tmp_path, confirm=lambda plan: None)
    finally:
        pg.start()
    assert err.value.exit_code == 1
    message = err.value.message
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{pg.port}" in message
    assert f"{database} is unchanged; the temporary {database}_restore_" in message and "left behind" in message
    assert fingerprint(pg, database) == before
    leftover = [d for d in pg.databases() if d.startswith(f"{database}_restore_")]
    assert len(leftover) == 1
    bk.restore_backup(target(pg, database), taken, environment="dev", backups_root=tmp_path,
                      confirm=lambda plan: None, keep_old=False)
    assert not any(d.startswith(f"{database}_restore_") for d in pg.databases())  # the next restore cleaned up


class InterruptedTarget(LocalTarget):
    def restore_archive(self, archive: Path, database: str, jobs: int = 1):
        raise KeyboardInterrupt


def test_an_interrupted_restore_raises_interrupted_and_drops_its_temporary_database(pg, database, tmp_path):
    seed(pg, database)
    taken = bk.create_backup(target(pg, database), tmp_path / "dev", environment="dev")
    before, dbs = fingerprint(pg, database), pg.databases()
    with pytest.raises(Interrupted, match=f"{database} is unchanged$") as err:
        bk.restore_backup(InterruptedTarget(parse_database_url(pg.url_for(database))), taken, environment="dev",
                          backups_root=tmp_path, confirm=lambda plan: None)
    assert err.value.exit_code == 130
    assert fingerprint(pg, database) == before and pg.databases() == dbs
