"""The in-cluster path: backup and restore through moorage.kube's exec stream.

The fake API server (tests/fixtures/kubeapi.py) speaks the real exec
WebSocket protocol; its exec handler plays the PostgreSQL container by
running the command here with the container's environment (POSTGRES_USER,
POSTGRES_DB, POSTGRES_PASSWORD) pointed at the test server.
"""

from __future__ import annotations

import copy
import os
import subprocess
import threading

import pytest

from moorage import backup as bk
from moorage import kube
from moorage.database import KubePods
from moorage.pg import PodTarget
from tests.fixtures.kubeapi import kubeapi, load_object  # noqa: F401 - fixture

from .conftest import fingerprint, seed

pytestmark = pytest.mark.postgres


POSTGRESQL_POD_SELECTOR = "app.kubernetes.io/instance=demo,app.kubernetes.io/component=postgresql"


def postgresql_pod():
    pod = copy.deepcopy(load_object("pod"))
    pod["metadata"].update(name="demo-postgresql-0", namespace="demo-dev", generateName=None,
                           labels={"app.kubernetes.io/instance": "demo",
                                   "app.kubernetes.io/component": "postgresql"})
    pod["spec"]["containers"][0]["name"] = "postgresql"
    return pod


def container(pg, database):
    """An exec handler that runs the command as the PostgreSQL container would."""
    env = {**os.environ, "POSTGRES_USER": pg.user, "POSTGRES_DB": database, "POSTGRES_PASSWORD": pg.password,
           "PGHOST": pg.host, "PGPORT": str(pg.port)}
    calls = []

    def handle(call):
        calls.append(call.command)
        child = subprocess.Popen(call.command, env=env, stdin=subprocess.PIPE if call.stdin_requested else None,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def feed():
            while data := call.stdin.read(1 << 16):
                child.stdin.write(data)
            child.stdin.close()

        if call.stdin_requested:
            threading.Thread(target=feed, daemon=True).start()
        while chunk := child.stdout.read1(1 << 16):
            call.stdout(chunk)
        call.stderr(child.stderr.read())
        return child.wait()

    handle.calls = calls
    return handle


def test_backup_and_restore_through_the_pod_exec_stream(pg, database, kubeapi, tmp_path):  # noqa: F811
    seed(pg, database)
    before = fingerprint(pg, database)
    kubeapi.apply(postgresql_pod())
    kubeapi.exec_handler = container(pg, database)
    api = kube.client(kubeapi.context, kubeapi.kubeconfig)
    target = PodTarget.discover(KubePods(api), "demo-dev", POSTGRESQL_POD_SELECTOR, container="postgresql")
    assert target.pod == "demo-postgresql-0" and target.database == database

    taken = bk.create_backup(target, tmp_path / "dev", environment="dev")
    assert bk.verify_backup(taken)["tables"] == 3
    assert taken.meta["target"] == "pod demo-dev/demo-postgresql-0"
    assert any("pg_dump" in c for c in kubeapi.exec_handler.calls)

    pg.psql("DELETE FROM orders; DELETE FROM events", database)
    result = bk.restore_backup(target, taken, environment="dev", backups_root=tmp_path,
                               confirm=lambda plan: None, jobs=2, keep_old=False)
    assert result["tables"] == 3
    assert fingerprint(pg, database) == before
    for command in kubeapi.exec_handler.calls:
        assert pg.password not in " ".join(command)  # the password stays in the "pod"
