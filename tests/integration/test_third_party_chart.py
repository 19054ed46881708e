"""A chart that labels its pods only its own way (``app: backend, tier: api``), against the fake cluster.

Moorage finds such a release's pods through the rendered workloads' selectors
and owner references, not through ``app.kubernetes.io/instance``: the deploy
fails fast with the pod's reason (and the bundle holds the pod), ``dev.logs``
finds the pods, ``dev.status`` the workloads, and ``dev.undeploy`` keeps the
PVC the chart renders as a plain template (``helm uninstall`` would delete it).
The stand-in helm keeps its records in the API server and uninstalls as Helm
does (``FAKE_HELM_STORAGE=kube``, tests/fixtures/fake_helm.py).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from moorage import connection
from moorage.core.config import load_project
from moorage.core.errors import OperationFailed
from moorage.core.report import Reporter
from tests.fixtures.fake_cluster import HERE, REPO, FakeCluster, Project
from tests.fixtures.kubeapi import kubeapi  # noqa: F401 - a fixture
from tests.fixtures.tools import require_tool

RELEASE = "shop"
NS = "thirdparty-dev"

CHART = {
    "Chart.yaml": "apiVersion: v2\nname: shop\nversion: 1.0.0\n",
    "templates/deployment.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}-api
        spec:
          replicas: 1
          selector:
            matchLabels: {app: backend, tier: api}
          template:
            metadata:
              labels: {app: backend, tier: api}
            spec:
              containers:
                - name: api
                  image: example.invalid/shop-api:1.0
              volumes:
                - name: uploads
                  persistentVolumeClaim: {claimName: {{ .Release.Name }}-uploads}
        """,
    "templates/statefulset.yaml": """\
        apiVersion: apps/v1
        kind: StatefulSet
        metadata:
          name: {{ .Release.Name }}-db
        spec:
          serviceName: {{ .Release.Name }}-db
          replicas: 1
          selector:
            matchLabels: {app: db}
          template:
            metadata:
              labels: {app: db}
            spec:
              containers:
                - name: db
                  image: example.invalid/shop-db:1.0
          volumeClaimTemplates:
            - metadata: {name: data}
              spec:
                accessModes: [ReadWriteOnce]
                resources: {requests: {storage: 1Gi}}
        """,
    "templates/pvc.yaml": """\
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata:
          name: {{ .Release.Name }}-uploads
        spec:
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 1Gi}}
        """,
}


@pytest.fixture
def project(tmp_path, kubeapi):  # noqa: F811 - the fixture imported above
    require_tool("helm")
    root = tmp_path / "project"
    for rel, text in CHART.items():
        path = root / "chart" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "environments").mkdir()
    (root / "environments" / "dev.yaml").write_text("{}\n")
    shutil.copy(REPO / "tasks.py", root / "tasks.py")
    (root / "invoke.yaml").write_text(textwrap.dedent(f"""\
        moorage:
          release: {RELEASE}
          environments:
            dev:
              namespace: {NS}
              context: {kubeapi.context}
              cluster: kind
              timeout: 30
          images: []
        """))
    cluster = FakeCluster(kubeapi, tmp_path)
    proj = Project(root, cluster, RELEASE)
    yield proj
    cluster.close()


def inv(project: Project, *args: str):
    return project.inv(*args, env={"FAKE_HELM_STORAGE": "kube"})


def install(project: Project) -> None:
    """``helm upgrade --install`` through the stand-in helm; the fake controller then plays the cluster."""
    env = {**os.environ, **project.cluster.env(), "FAKE_HELM_STORAGE": "kube"}
    subprocess.run([sys.executable, str(HERE / "fake_helm.py"), "upgrade", "--install", RELEASE,
                    str(project.root / "chart"), "--namespace", NS], env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while project.cluster.kubeapi.get("Pod", NS, f"{RELEASE}-db-r1-0") is None:
        assert time.monotonic() < deadline, "the fake controller did not apply the release"
        time.sleep(0.02)


def test_a_crashlooping_pod_labelled_only_by_the_chart_fails_the_wait_at_once_with_its_reason(
        project, monkeypatch, tmp_path):
    project.cluster.controller.behaviour[f"{RELEASE}-api"] = "crashloop"
    install(project)
    for key, value in project.cluster.env().items():
        monkeypatch.setenv(key, value)
    raw = yaml.safe_load((project.root / "invoke.yaml").read_text())["moorage"]
    proj = load_project(raw, project.root)
    cluster = connection.connect(proj, proj.env("dev"))
    bundle = tmp_path / "bundle"
    start = time.monotonic()
    with pytest.raises(OperationFailed) as info:
        connection.wait_release(cluster, Reporter(stream=io.StringIO(), tty=False), out_dir=bundle)
    assert time.monotonic() - start < 15  # the environment's timeout is 30s: it did not wait for it
    assert info.value.message == (f"release not ready: deployment/{RELEASE}-api: failed pod {RELEASE}-api-r1-0 "
                                  "container api: CrashLoopBackOff: back-off 40s restarting failed container=api")
    assert (bundle / "objects" / f"pod-{RELEASE}-api-r1-0.yaml").exists()
    assert (bundle / "objects" / f"replicaset-{RELEASE}-api-r1.yaml").exists()
    assert (bundle / "objects" / f"persistentvolumeclaim-{RELEASE}-uploads.yaml").exists()
    assert (bundle / "logs" / f"{RELEASE}-api-r1-0" / "api.previous.log").read_text() == "Traceback: boom\nexit 3\n"


def test_status_shows_the_workloads_and_claims_of_the_manifest(project):
    install(project)
    status = json.loads(inv(project, "dev.status", "--json").stdout)
    states = {r["resource"]: r["state"] for r in status["resources"]}
    assert states == {f"deployment/{RELEASE}-api": "ready", f"statefulset/{RELEASE}-db": "ready",
                      f"persistentvolumeclaim/{RELEASE}-uploads": "ready"}


@pytest.mark.parametrize("component", ["api", "backend", f"{RELEASE}-api"])  # name's end, app label, whole name
def test_logs_find_a_components_pods_by_name_or_label(project, component):
    install(project)
    pod = f"{RELEASE}-api-r1-0"
    project.cluster.kubeapi.set_log(NS, pod, "api", "GET /items 200\n")
    logs = inv(project, "dev.logs", "--component", component)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == f"[{pod}/api] GET /items 200\n"


def test_logs_of_an_unknown_component_list_the_known_ones(project):
    install(project)
    unknown = inv(project, "dev.logs", "--component", "frontend")
    assert unknown.returncode == 2
    assert "no workload of release 'shop' is component 'frontend' (known: backend, db)" in unknown.stderr


def test_undeploy_keeps_the_plain_template_claim_and_the_statefulsets_and_says_what_remains(project):
    install(project)
    claims = f"data-{RELEASE}-db-0, {RELEASE}-uploads"
    plan = inv(project, "dev.undeploy", "--dry-run")
    assert f"keep 2 PersistentVolumeClaim(s): {claims} (--purge deletes them)" in plan.stdout
    done = inv(project, "dev.undeploy")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"kept 2 PersistentVolumeClaim(s): {claims};" in done.stdout
    api = project.cluster.kubeapi
    assert api.get("Deployment", NS, f"{RELEASE}-api") is None  # helm did uninstall
    assert api.get("PersistentVolumeClaim", NS, f"{RELEASE}-uploads") is not None
    assert api.get("PersistentVolumeClaim", NS, f"data-{RELEASE}-db-0") is not None


def test_undeploy_purge_deletes_every_claim_of_the_release(project):
    install(project)
    done = inv(project, "dev.undeploy", "--purge", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    for claim in (f"{RELEASE}-uploads", f"data-{RELEASE}-db-0"):
        assert f"deleted PersistentVolumeClaim {claim}" in done.stdout
        assert project.cluster.kubeapi.get("PersistentVolumeClaim", NS, claim) is None
