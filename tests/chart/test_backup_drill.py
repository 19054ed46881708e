"""The chart's drill CronJob (templates/backup/drill-cronjob.yaml): scheduled restore drills beside the backup
CronJob, on its volume, as one of its pods."""

from __future__ import annotations

import pytest

from tests.chart.conftest import ENVIRONMENTS, RELEASE, objects_of
from tests.chart.test_policies import containers, find, pod_template, selects

pytestmark = pytest.mark.helm

CHECKS = [{"name": "orders-have-customers", "sql": "SELECT NOT EXISTS (SELECT 1 FROM orders WHERE customer_id "
                                                   "IS NULL)"},
          {"name": "items.kept", "sql": "SELECT count(*) > 0 FROM items"}]
ON = {"backup": {"enabled": True, "drill": {"enabled": True, "checks": CHECKS}}, "networkPolicy": {"enabled": True}}


@pytest.fixture
def drilled(render_with) -> list[dict]:
    return objects_of(render_with("dev", ON))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_environment_schedules_drills_unless_asked(render, env):
    assert not [o for o in render(env) if o["metadata"]["name"] == f"{RELEASE}-backup-drill"]


def test_drills_need_the_backup_cronjob(render_with):
    objects = objects_of(render_with("dev", {"backup": {"enabled": False, "drill": {"enabled": True}}}))
    assert not [o for o in objects if o["kind"] == "CronJob"]


def test_the_drill_cronjob_runs_drill_sh_on_the_backup_volume_as_a_backup_pod(drilled):
    backup, drill = find(drilled, "CronJob", f"{RELEASE}-backup"), find(drilled, "CronJob", f"{RELEASE}-backup-drill")
    spec = pod_template(drill)["spec"]
    (container,) = containers(drill)
    assert container["command"] == ["sh", "/scripts/drill.sh"]
    assert container["image"] == containers(backup)[0]["image"]
    claim = {v["name"]: v for v in spec["volumes"]}["backups"]["persistentVolumeClaim"]["claimName"]
    assert claim == {v["name"]: v for v in pod_template(backup)["spec"]["volumes"]}["backups"][
        "persistentVolumeClaim"]["claimName"]
    assert {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]}["/backups"] is False, \
        "the drill writes its result beside the dump"
    assert drill["spec"]["concurrencyPolicy"] == "Forbid" and drill["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    assert spec["securityContext"] == pod_template(backup)["spec"]["securityContext"]
    assert container["securityContext"] == containers(backup)[0]["securityContext"]
    env = {v["name"]: v for v in container["env"]}
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"] and "value" not in env["PGPASSWORD"]
    labels = pod_template(drill)["metadata"]["labels"]
    policies = {p["metadata"]["name"]: p for p in drilled if p["kind"] == "NetworkPolicy"}
    assert selects(policies[f"{RELEASE}-backup"]["spec"]["podSelector"]["matchLabels"], labels), \
        "the backup's egress to the database applies to the drill"
    postgres_peers = policies[f"{RELEASE}-postgresql"]["spec"]["ingress"][0]["from"]
    assert any(selects(p["podSelector"]["matchLabels"], labels) for p in postgres_peers if "podSelector" in p)


def test_each_configured_check_is_a_sql_file_in_the_checks_directory(drilled):
    drill = find(drilled, "CronJob", f"{RELEASE}-backup-drill")
    (container,) = containers(drill)
    checks_dir = {v["name"]: v.get("value") for v in container["env"]}["CHECKS_DIR"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == checks_dir)
    volume = next(v for v in pod_template(drill)["spec"]["volumes"] if v["name"] == mount["name"])
    config = find(drilled, "ConfigMap", volume["configMap"]["name"])
    assert config["data"] == {f"{c['name']}.sql": c["sql"] for c in CHECKS}


def test_a_check_name_used_twice_is_refused_naming_it(render_with):
    twice = [{"name": "same", "sql": "SELECT true"}, {"name": "same", "sql": "SELECT false"}]
    result = render_with("dev", {"backup": {"enabled": True, "drill": {"enabled": True, "checks": twice}}})
    assert result.returncode != 0
    assert 'the check name "same" is used twice' in result.stderr


def test_a_check_name_that_is_not_a_file_name_is_refused(render_with):
    result = render_with("dev", {"backup": {"enabled": True, "drill": {
        "enabled": True, "checks": [{"name": "../etc/passwd", "sql": "SELECT true"}]}}})
    assert result.returncode != 0
    assert "/backup/drill/checks/0/name" in result.stderr
