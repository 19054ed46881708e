"""Pure decisions of moorage.backup: retention, names, listing, swap SQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from moorage import backup as bk
from moorage.core.errors import UserError

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def at(days: float = 0, hours: float = 0) -> dt.datetime:
    return NOW - dt.timedelta(days=days, hours=hours)


def kept(decisions):
    return {d.name for d in decisions if d.keep}


def test_prune_keeps_the_n_newest_when_only_keep_last_applies():
    backups = [(f"b{i}", at(hours=i)) for i in range(10)]
    decisions = bk.prune_plan(backups, bk.RetentionPolicy(keep_last=3, keep_daily=0, keep_weekly=0), NOW)
    assert kept(decisions) == {"b0", "b1", "b2"}
    assert [d.name for d in decisions] == [f"b{i}" for i in range(10)]  # newest first


def test_prune_keeps_the_newest_backup_of_each_day_within_the_daily_span():
    # Two backups a day for ten days: 09:00 and 21:00 (the 21:00 one is the newest of its day).
    backups = []
    for d in range(10):
        day = (NOW - dt.timedelta(days=d)).replace(hour=0)
        backups += [(f"d{d}-am", day.replace(hour=9)), (f"d{d}-pm", day.replace(hour=21))]
    backups = [b for b in backups if b[1] <= NOW]
    decisions = bk.prune_plan(backups, bk.RetentionPolicy(keep_last=1, keep_daily=3, keep_weekly=0), NOW)
    assert kept(decisions) == {"d0-am", "d1-pm", "d2-pm"}


def test_prune_keeps_the_newest_backup_of_each_week_within_the_weekly_span():
    backups = [(f"day{d}", at(days=d)) for d in range(0, 60)]
    decisions = bk.prune_plan(backups, bk.RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=4), NOW)
    weekly = {d.name for d in decisions if any(r.startswith("newest of week") for r in d.reasons)}
    assert len(weekly) == 4
    # NOW is a Monday: each kept one is the newest backup (the Sunday, or today) of its ISO week.
    assert weekly == {"day0", "day1", "day8", "day15"}
    assert kept(decisions) == weekly


def test_prune_explains_every_decision_and_keeps_backups_from_the_future():
    decisions = bk.prune_plan([("future", NOW + dt.timedelta(hours=2)), ("old", at(days=400))],
                              bk.RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0), NOW)
    by_name = {d.name: d for d in decisions}
    assert by_name["future"].keep and "newer than now" in by_name["future"].reasons
    assert not by_name["old"].keep and by_name["old"].reasons == ("outside the retention policy",)


def test_retention_policy_refuses_to_keep_no_newest_backup():
    with pytest.raises(UserError, match="keep-last"):
        bk.RetentionPolicy(keep_last=0)


def test_backup_names_sort_by_time_and_reject_unsafe_labels():
    early = bk.backup_stem(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "dev")
    late = bk.backup_stem(dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=dt.UTC), "dev", "nightly")
    assert early == "20260102T030405Z-dev" and late == "20260102T030406Z-dev-nightly"
    assert sorted([late, early]) == [early, late]
    with pytest.raises(UserError):
        bk.backup_stem(NOW, "dev", "../etc")


def test_temp_database_names_fit_postgres_identifier_limit():
    temp, old = bk.temp_names("x" * 80, NOW)
    assert len(temp.encode()) <= 63 and len(old.encode()) <= 63
    assert temp.endswith("_restore_20261123t120000z") and old.endswith("_pre_restore_20261123t120000z")
    assert bk.stale_temp_pattern("x" * 80).match(temp)
    assert not bk.stale_temp_pattern("x" * 80).match(old)


def test_swap_is_one_transaction_that_renames_both_databases():
    text = bk.swap_sql('app"db', "app_restore_t", "app_pre_restore_t")
    assert text.startswith("BEGIN;") and text.endswith("COMMIT;")
    assert 'ALTER DATABASE "app""db" RENAME TO "app_pre_restore_t";' in text
    assert 'ALTER DATABASE "app_restore_t" RENAME TO "app""db";' in text
    assert text.index("pg_terminate_backend") < text.index("RENAME")


def _write(directory, name, meta=None, data=b"PGDMP..."):
    path = directory / f"{name}.dump"
    path.write_bytes(data)
    if meta is not None:
        path.with_suffix(".json").write_text(json.dumps({"size": len(data), "sha256": "0" * 64, **meta}))
    return path


def test_listing_shows_a_dump_without_metadata_or_with_a_wrong_size_as_invalid(tmp_path):
    _write(tmp_path, "20260101T000000Z-dev", {"finished_at": "2026-01-01T00:00:00+00:00"})
    _write(tmp_path, "20260102T000000Z-dev")
    _write(tmp_path, "20260103T000000Z-dev", {"size": 1})
    (tmp_path / "20260104T000000Z-dev.dump.partial").write_bytes(b"PGD")
    listed = bk.list_backups(tmp_path)
    assert [b.name for b in listed] == ["20260103T000000Z-dev", "20260102T000000Z-dev", "20260101T000000Z-dev"]
    assert [b.valid for b in listed] == [False, False, True]
    assert listed[1].problem == "no metadata"
    assert bk.find_backup(tmp_path, "latest").name == "20260101T000000Z-dev"
    assert bk.remove_stale_partials(tmp_path) == [tmp_path / "20260104T000000Z-dev.dump.partial"]


def test_a_partial_file_still_being_written_is_not_stale(tmp_path):
    import fcntl

    path = tmp_path / "x.dump.partial"
    with open(path, "wb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        assert bk.remove_stale_partials(tmp_path) == []
    assert bk.remove_stale_partials(tmp_path) == [path]


def test_unknown_backup_name_is_bad_input(tmp_path):
    with pytest.raises(UserError, match="not found"):
        bk.find_backup(tmp_path, "nope")
    with pytest.raises(UserError, match="no valid backup"):
        bk.find_backup(tmp_path, "latest")


def test_listing_header_and_table_count_are_read_from_pg_restore_list():
    listing = (";\n; Archive created at 2026-11-23 00:37:39 UTC\n;     dbname: app\n"
               ";     Dumped from database version: 15.18 (Debian 15.18-0+deb12u1)\n"
               ";     Dumped by pg_dump version: 15.18 (Debian 15.18-0+deb12u1)\n;\n"
               "214; 1259 16385 TABLE public t moorage\n3338; 0 16385 TABLE DATA public t moorage\n"
               "215; 1259 16390 TABLE public u moorage\n")
    header = bk.listing_header(listing)
    assert header["dbname"] == "app" and header["dumped by pg_dump version"].startswith("15.18")
    assert bk.listing_tables(listing) == 2


def test_latest_is_the_newest_ordinary_backup_and_safety_backups_are_restored_by_name(tmp_path):
    _write(tmp_path, "20260101T000000Z-dev", {"finished_at": "2026-01-01T00:00:00+00:00"})
    _write(tmp_path, "20260102T000000Z-dev-pre-restore",
           {"finished_at": "2026-01-02T00:00:00+00:00", "kind": "safety", "label": "pre-restore"})
    _write(tmp_path, "20260103T000000Z-dev-pre-downgrade.2", {"finished_at": "2026-01-03T00:00:00+00:00"})
    listed = bk.list_backups(tmp_path)
    assert [(b.name, b.kind) for b in listed] == [("20260103T000000Z-dev-pre-downgrade.2", "safety"),
                                                 ("20260102T000000Z-dev-pre-restore", "safety"),
                                                 ("20260101T000000Z-dev", "ordinary")]
    assert listed[1].kind_label == "safety (pre-restore)" and listed[2].kind_label == "ordinary"
    assert bk.find_backup(tmp_path, "latest").name == "20260101T000000Z-dev"
    assert bk.find_backup(tmp_path, "20260102T000000Z-dev-pre-restore").kind == "safety"


def test_latest_with_only_safety_backups_is_bad_input_pointing_to_their_names(tmp_path):
    _write(tmp_path, "20260102T000000Z-dev-pre-upgrade", {"finished_at": "2026-01-02T00:00:00+00:00"})
    with pytest.raises(UserError, match="only safety backups .*20260102T000000Z-dev-pre-upgrade"):
        bk.find_backup(tmp_path, "latest")


class SwapTarget:
    """A target whose psql answers the swap with the given errors, then succeeds."""

    description = endpoint = "test"
    database = database_name = "app"
    secrets = ()
    kind = "local"

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0

    def run_streaming(self, argv, *, stdin=None, stdout=None, database=None):
        from moorage.pg import Completed

        self.calls += 1
        if self.errors:
            return Completed(1, self.errors.pop(0))
        return Completed(0, "")


def test_the_swap_is_retried_only_when_a_client_reconnected_in_between():
    from moorage.backup.restore import _swap
    from moorage.core.errors import CommandFailed

    busy = 'ERROR:  database "app" is being accessed by other users'
    retried = SwapTarget(busy, busy)
    _swap(retried, "app", "app_restore_t", "app_pre_restore_t")
    assert retried.calls == 3
    other = SwapTarget('ERROR:  permission denied to rename database')
    with pytest.raises(CommandFailed, match="permission denied"):
        _swap(other, "app", "app_restore_t", "app_pre_restore_t")
    assert other.calls == 1
    stuck = SwapTarget(*[busy] * 10)
    with pytest.raises(CommandFailed, match="being accessed"):
        _swap(stuck, "app", "app_restore_t", "app_pre_restore_t", attempts=3)
    assert stuck.calls == 3
