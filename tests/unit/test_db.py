"""Pure parts of moorage.pg, moorage.migrations and moorage.database: URLs, the pod command, the pod
selector, the migration Job manifest."""

from __future__ import annotations

import pytest

from moorage import database, migrations, pg
from moorage.core.config import load_project
from moorage.core.errors import UserError

URL = "postgresql+psycopg://app:p%40ss%3Aw0rd@db.example.org:6543/shop?sslmode=require"


def test_url_is_parsed_and_the_password_is_masked_everywhere_it_is_shown():
    url = pg.parse_database_url(URL)
    assert (url.user, url.password, url.host, url.port, url.database) == (
        "app", "p@ss:w0rd", "db.example.org", 6543, "shop")
    assert url.masked == "postgresql://app:******@db.example.org:6543/shop?sslmode=require"
    assert "p@ss" not in str(url) and "p@ss" not in repr(url)


def test_url_becomes_libpq_environment_variables_not_arguments():
    env = pg.parse_database_url(URL).libpq_env()
    assert env["PGPASSWORD"] == "p@ss:w0rd" and env["PGSSLMODE"] == "require"
    assert env["PGHOST"] == "db.example.org" and env["PGPORT"] == "6543" and env["PGDATABASE"] == "shop"
    assert pg.parse_database_url(URL).libpq_env("other")["PGDATABASE"] == "other"


@pytest.mark.parametrize("bad", ["mysql://u:secretpw@h/db", "postgresql://u:secretpw@h:99999/db",
                                 "postgresql://u:secretpw@h/", "postgresql://u:secretpw@h/db?evil=1"])
def test_a_bad_url_is_bad_input_and_the_error_does_not_echo_the_password(bad):
    with pytest.raises(UserError) as err:
        pg.parse_database_url(bad)
    assert "secretpw" not in err.value.line()


def test_flag_wins_over_database_url_environment_variable():
    assert pg.database_url_from(None, {}) is None
    assert pg.database_url_from(None, {"DATABASE_URL": "postgresql://h/a"}).database == "a"
    assert pg.database_url_from("postgresql://h/b", {"DATABASE_URL": "postgresql://h/a"}).database == "b"


class FakePods:
    def __init__(self):
        self.calls = []

    def find_pod(self, namespace, label_selector):
        self.calls.append(("find", namespace, label_selector))
        return "demo-postgresql-0"

    def exec_stream(self, namespace, pod, container, command, *, stdin, on_stdout):
        self.calls.append(("exec", namespace, pod, container, list(command)))
        on_stdout(b"15.4|f\n")
        return 0, ""


def test_pod_target_finds_the_release_postgresql_pod_and_runs_tools_through_sh_with_the_pod_credentials():
    manifest = [
        {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
         "template": {"spec": {"containers": [{"name": "web", "image": "shop/web:1", "ports": [{"containerPort": 80}]}]}}}},
        {"kind": "StatefulSet", "metadata": {"name": "db"}, "spec": {"selector": {"matchLabels": {"tier": "db", "app": "shop"}},
         "template": {"spec": {"containers": [{"name": "metrics", "image": "exporter:1"},
                                               {"name": "pg", "image": "mirror.example/lib/postgres:16@sha256:ab"}]}}}},
    ]
    selector, container = database.release_database(manifest, "demo", "w")
    assert (selector, container) == ("app=shop,tier=db", "pg")
    pods = FakePods()
    target = pg.PodTarget.discover(pods, "demo-dev", selector, container=container)
    assert pods.calls[0] == ("find", "demo-dev", "app=shop,tier=db")
    info = pg.database_info(target)
    assert info == {"server_version": "15.4", "alembic_heads": []}
    _, ns, pod, container, command = pods.calls[1]
    assert (ns, pod, container) == ("demo-dev", "demo-postgresql-0", "pg")
    assert command[:2] == ["sh", "-c"] and 'PGUSER="${POSTGRES_USER' in command[2] and "POSTGRES_DB" in command[2]
    assert command[4] == "" and command[5] == "psql"  # no database override: the pod's POSTGRES_DB


@pytest.mark.parametrize(("containers", "message"), [
    ([{"name": "web", "image": "nginx:1"}], "release demo runs no PostgreSQL that Moorage can tell"),
    ([{"name": "a", "image": "postgres:16"}, {"name": "b", "image": "x", "ports": [{"containerPort": 5432}]}],
     "release demo runs several PostgreSQL workloads (statefulset/a, statefulset/b)"),
])
def test_a_release_without_one_postgresql_workload_asks_for_the_selector(containers, message):
    manifest = [{"kind": "StatefulSet", "metadata": {"name": c["name"]}, "spec": {
        "selector": {"matchLabels": {"app": c["name"]}}, "template": {"spec": {"containers": [c]}}}}
        for c in containers]
    with pytest.raises(UserError) as caught:
        database.release_database(manifest, "demo", "moorage.environments.dev.database")
    assert message in caught.value.message
    assert "moorage.environments.dev.database.selector" in caught.value.hint


def test_pod_command_passes_the_database_as_an_argument_not_inside_the_script():
    target = pg.PodTarget(FakePods(), "ns", "pod", database="x'; rm -rf /")
    command = target.command(["pg_dump", "-Fc"], "evil'name")
    assert command[3:] == ["sh", "evil'name", "pg_dump", "-Fc"]
    assert "evil" not in command[2]


def test_quoting_of_identifiers_and_literals():
    assert pg.quote_ident('a"b') == '"a""b"'
    assert pg.quote_literal("it's") == "'it''s'"


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "demo-backend", "namespace": "demo-dev",
        "labels": {"app.kubernetes.io/instance": "demo", "app.kubernetes.io/name": "moorage",
                   "app.kubernetes.io/component": "backend", "app.kubernetes.io/managed-by": "Helm",
                   "helm.sh/chart": "moorage-0.1.0"},
    },
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app.kubernetes.io/component": "backend"}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/component": "backend"}},
            "spec": {
                "serviceAccountName": "demo-backend",
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "volumes": [{"name": "tmp", "emptyDir": {}}],
                "containers": [{
                    "name": "backend",
                    "image": "registry.example.org/backend:0123456789abcdef",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 8000, "name": "http"}],
                    "envFrom": [{"configMapRef": {"name": "demo-backend"}}],
                    "env": [{"name": "DATABASE_URL",
                             "valueFrom": {"secretKeyRef": {"name": "demo-db", "key": "url"}}}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                    "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }],
            },
        },
    },
}


def test_migration_job_uses_the_backend_image_config_and_secrets_without_probes_or_retries():
    job = migrations.migration_job(DEPLOYMENT, ["alembic", "upgrade", "head"], name="demo-migrate-abc")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert job["kind"] == "Job" and job["metadata"] == {
        "name": "demo-migrate-abc", "namespace": "demo-dev",
        "labels": {"app.kubernetes.io/instance": "demo", "app.kubernetes.io/name": "moorage",
                   "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/component": "migration"}}
    assert job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert container["image"] == "registry.example.org/backend:0123456789abcdef"
    assert container["command"] == ["alembic", "upgrade", "head"]
    assert container["envFrom"] == DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "demo-db"
    assert "readinessProbe" not in container and "ports" not in container
    assert pod["serviceAccountName"] == "demo-backend" and pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_migration_job_name_is_a_valid_kubernetes_name():
    name = migrations.migration_job_name("r" * 70, "20261123T004512Z")
    assert len(name) <= 63 and name.endswith("-migrate-20261123t004512z")


def test_unreachable_and_bad_credentials_are_told_apart():
    target = pg.LocalTarget(pg.parse_database_url("postgresql://u:pw1234@h/d"))
    down = pg.pg_error("pg_dump", 'connection to server at "h", port 5432 failed: Connection refused', target)
    denied = pg.pg_error("pg_dump", 'FATAL:  password authentication failed for user "u"', target)
    assert down.exit_code == 2 and "cannot connect to PostgreSQL at h:5432" in down.message
    assert denied.exit_code == 2 and "credentials" in denied.message


@pytest.mark.parametrize(("stderr", "reason"), [
    ('psql: error: connection to server at "10.0.0.9", port 6543 failed: Connection refused\n'
     "\tIs the server running on that host and accepting TCP/IP connections?", "Connection refused"),
    ('psql: error: connection to server at "10.0.0.9", port 6543 failed: timeout expired', "timeout expired"),
    ('psql: error: could not translate host name "db.example.org" to address: Name or service not known',
     "unknown host db.example.org (Name or service not known)"),
])
def test_an_unreachable_server_is_one_line_with_host_port_and_reason(stderr, reason):
    target = pg.LocalTarget(pg.parse_database_url("postgresql://u:pw1234@db.example.org:6543/shop"))
    err = pg.pg_error("reading the server version", stderr, target)
    assert err.line().startswith(f"cannot connect to PostgreSQL at db.example.org:6543 (database shop): {reason}")
    assert "\n" not in err.line() and "pw1234" not in err.line()


def test_a_connection_lost_in_use_says_so_and_names_the_step():
    target = pg.LocalTarget(pg.parse_database_url("postgresql://u@h:5432/d"))
    err = pg.pg_error("counting restored tables", "psql: error: server closed the connection unexpectedly\n"
                      "\tThis probably means the server terminated abnormally", target)
    assert err.message == ("lost the connection to PostgreSQL at h:5432 (counting restored tables): "
                           "server closed the connection unexpectedly")


def test_client_programs_are_started_without_preexec_fn(monkeypatch, tmp_path):
    """preexec_fn runs Python between fork and exec, which can deadlock when other threads hold locks."""
    import subprocess

    seen = []
    real = subprocess.Popen

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    (tmp_path / "psql").write_text("#!/bin/sh\necho 15.4\\|f\n")
    (tmp_path / "psql").chmod(0o755)
    target = pg.LocalTarget(pg.parse_database_url("postgresql://u@h/d"), bin_dir=str(tmp_path))
    assert pg.database_info(target)["server_version"] == "15.4"
    assert seen and all(kw.get("preexec_fn") is None for kw in seen)


CHILD_OF_A_THREAD = """
import sys, threading
from moorage.core import proc

def run():
    child = proc.start(["sleep", "300"])
    print(child.pid, flush=True)
    child.wait()

threading.Thread(target=run).start()
sys.stdin.readline()
"""


def test_a_child_started_from_a_thread_dies_with_moorage_when_moorage_is_killed():
    import os
    import select
    import signal
    import subprocess
    import sys

    moorage = subprocess.Popen([sys.executable, "-c", CHILD_OF_A_THREAD], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        child = int(moorage.stdout.readline())
        pidfd = os.pidfd_open(child)
        os.kill(moorage.pid, signal.SIGKILL)  # no cleanup code runs: only the parent-death signal can help
        moorage.wait(10)
        assert select.select([pidfd], [], [], 10)[0] == [pidfd], "the child outlived Moorage"
        os.close(pidfd)
    finally:
        if moorage.poll() is None:
            moorage.kill()


def test_a_user_backup_cannot_take_a_safety_label(tmp_path):
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "dev.yaml").write_text("{}\n")
    project = load_project({"release": "demo"}, tmp_path)
    with pytest.raises(UserError, match="'pre-restore' is the label of the safety backups"):
        database.take_backup(project, project.env("dev"), "postgresql://u@127.0.0.1:1/d", None, label="pre-restore")
