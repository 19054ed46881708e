"""Restore drills and in-cluster backups, the parts that need no server: row counting, configuration, names,
the reader pod, the volume's listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from moorage.backup import Backup
from moorage.backup.contents import ArchiveUnreadable, CopyCounter, count_lines, qualified_name
from moorage.backup.drill import DrillCheck, drill_checks, drill_database_name, drill_summary
from moorage.backup.remote import READER_COMPONENT, merged, newest, parse_listing, reader_pod
from moorage.backup.store import utcnow
from moorage.core.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "k8s_objects"

SQL = (b"SET statement_timeout = 0;\n"
       b"COPY public.customers (id, name) FROM stdin;\n1\tann\n2\tbob \\\\. not the end\n3\tline\\nbreak\n\\.\n\n"
       b"COPY \"Odd\".\"Table \"\"x\"\"\" (a) FROM stdin;\n\\.\n\n"
       b"COPY public.t  FROM stdin;\n\n\n\\.\n"
       b"SELECT pg_catalog.setval('public.s', 3, true);\n")
COUNTS = {"public.customers": 3, '"Odd"."Table ""x"""': 0, "public.t": 2}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, len(SQL)])
def test_rows_are_counted_per_copy_block_whatever_the_chunk_boundaries(size):
    chunks = [SQL[i:i + size] for i in range(0, len(SQL), size)]
    assert count_lines(chunks) == COUNTS


def test_a_copy_block_without_its_terminator_is_an_unreadable_archive():
    counter = CopyCounter()
    counter(b"COPY public.a (x) FROM stdin;\n1\n2\n")
    with pytest.raises(ArchiveUnreadable, match="public.a ends without its terminator"):
        counter.finish()


@pytest.mark.parametrize("name", ["public.a", "a", '"Odd"."Table ""x"""', "s1.t_2$"])
def test_table_names_as_pg_dump_writes_them_are_accepted(name):
    assert qualified_name(name) == name


@pytest.mark.parametrize("name", ["public.a; DROP TABLE b", "a b", "", '"unclosed', "a.b.c", 42])
def test_anything_else_is_not_a_table_name(name):
    with pytest.raises(ValueError):
        qualified_name(name)


def test_configured_checks_are_read_in_order():
    raw = [{"name": "a", "sql": "SELECT true"}, {"name": "b", "sql": " SELECT 1 = 1 "}]
    assert drill_checks(raw) == (DrillCheck("a", "SELECT true"), DrillCheck("b", "SELECT 1 = 1"))
    assert drill_checks(None) == ()


@pytest.mark.parametrize("raw, message", [
    ("SELECT true", "must be a list"),
    ([{"name": "a"}], r"backup.drill_checks\[0\] must have exactly the keys name and sql"),
    ([{"name": "a", "sql": "x", "extra": 1}], "exactly the keys"),
    ([{"name": "", "sql": "SELECT true"}], "non-empty strings"),
    ([{"name": "a", "sql": "SELECT 1"}, {"name": "a", "sql": "SELECT 2"}], "used twice"),
])
def test_a_malformed_check_is_a_config_error_naming_the_entry(raw, message):
    with pytest.raises(ConfigError, match=message):
        drill_checks(raw)


def test_the_throwaway_database_name_fits_postgresql_and_never_is_the_live_one():
    when = utcnow()
    long = "x" * 63
    name = drill_database_name(long, when)
    assert len(name.encode()) <= 63 and name != long and "_drill_" in name
    assert drill_database_name("shop", when).startswith("shop_drill_")


def test_the_list_column_shows_the_last_drill():
    assert drill_summary(None) == "-"
    assert drill_summary({"last_drill": {"at": "2026-12-01T03:00:00+00:00", "ok": True,
                                         "restore_seconds": 12.34}}) == "ok 2026-12-01 (12.3s)"
    assert drill_summary({"last_drill": {"at": "2026-12-01T03:00:00+00:00", "ok": False,
                                         "failed": ["row count public.orders"]}}) == \
        "FAILED 2026-12-01: row count public.orders"


def meta(name: str, size: int, **extra) -> str:
    return json.dumps({"name": name, "sha256": "ab" * 32, "size": size,
                       "finished_at": f"{name[:4]}-{name[4:6]}-{name[6:8]}T{name[9:11]}:{name[11:13]}:{name[13:15]}+00:00",
                       **extra}, indent=2)


def listing(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def test_the_volume_listing_judges_each_backup_like_a_local_one():
    a, b, c = "20261201T030000Z-prod-scheduled", "20261202T030000Z-prod-scheduled", "20261203T030000Z-prod-scheduled"
    drill = json.dumps({"at": "2026-12-02T04:00:00+00:00", "ok": True})
    text = listing(f"dump\t{a}.dump\t100\t{meta(a, 100)}\t".replace("\n", ""),
                   f"dump\t{b}.dump\t999\t{meta(b, 100)}\t{drill}".replace("\n", ""),
                   f"dump\t{c}.dump\t50\t\t",
                   "dump\t../etc/passwd.dump\t1\t{}\t",
                   f"partial\t{c}.dump.partial\t4096")
    backups, partials = parse_listing(text, "in-cluster prod/pvc/moorage-backup")
    assert [x.name for x in backups] == [c, b, a]
    assert [x.problem for x in backups] == ["no metadata", "size 999 differs from the recorded 100", None]
    assert backups[1].meta["last_drill"]["ok"] is True
    assert {x.location for x in backups} == {"in-cluster"} and str(backups[2].path) == f"/backups/{a}.dump"
    assert partials == [f"{c}.dump.partial"]
    assert newest(backups) is backups[2]


def test_a_fetched_copy_is_listed_once_as_both_and_a_local_only_one_as_local(tmp_path):
    a, b = "20261201T030000Z-prod-scheduled", "20261202T030000Z-prod"
    remote, _ = parse_listing(listing(f"dump\t{a}.dump\t100\t{meta(a, 100)}\t".replace("\n", "")), "v")
    local = [Backup(tmp_path / f"{a}.dump", json.loads(meta(a, 100))), Backup(tmp_path / f"{b}.dump",
                                                                             json.loads(meta(b, 7)))]
    assert [(x.name, where) for x, where in merged(local, remote)] == [(b, "local"), (a, "local+in-cluster")]
    assert [(x.name, where) for x, where in merged(local[1:], remote)] == [(b, "local"), (a, "in-cluster")]


@pytest.fixture
def cronjob() -> dict:
    return yaml.safe_load((FIXTURES / "cronjob-backup.yaml").read_text())


def test_the_reader_pod_mounts_only_the_backup_claim_read_only_and_carries_no_secret(cronjob):
    pod = reader_pod(cronjob, "moorage-backup-reader-abc123")
    spec = pod["spec"]
    (container,) = spec["containers"]
    source = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert container["image"] == source["containers"][0]["image"]
    assert container["volumeMounts"] == [{"name": "backups", "mountPath": "/backups", "readOnly": True}]
    assert spec["volumes"] == [{"name": "backups", "persistentVolumeClaim": {"claimName": "moorage-backup"}}]
    assert "env" not in container and "envFrom" not in container
    assert container["securityContext"] == source["containers"][0]["securityContext"]
    assert spec["securityContext"] == source["securityContext"] and spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never" and 0 < spec["activeDeadlineSeconds"] <= 24 * 3600
    assert container["command"][0] == "sleep"
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == READER_COMPONENT
    assert labels["app.kubernetes.io/instance"] == "moorage" and labels["app.kubernetes.io/managed-by"] == "moorage"
    assert pod["metadata"]["namespace"] == cronjob["metadata"]["namespace"]
