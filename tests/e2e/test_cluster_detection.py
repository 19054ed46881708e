"""Cluster detection on the real local cluster, under a kube context named like nothing any rule knows.

A new user's situation from the issue: the local cluster reached through a context called
``team-laptop``, ``cluster: auto``, no registry. Moorage reads the node, finds that it is this host
running containerd, finds the containerd socket that holds the node's images (no CONTAINERD_ADDRESS
given), and delivers there with ``ctr import``: the image runs in a pod, nothing is pushed.
A cluster taken for remote without a registry is refused in one line before anything is built.
And nerdctl (built from Go modules: scripts/install-nerdctl.sh) loads into the same containerd, the
delivery path of Rancher Desktop and colima with containerd.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.fixtures.tools import missing, require_docker, require_tool

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
INV = str(Path(sys.executable).with_name("inv"))
NAMESPACE = f"moorage-e2e-detect-{uuid.uuid4().hex[:6]}"
CONTEXT = "team-laptop"
BASE = os.environ.get("MOORAGE_PYTHON_IMAGE", "local/python:3.11-slim")


def renamed_kubeconfig(source: str, target: Path) -> None:
    """A copy of the cluster's kubeconfig whose context, cluster and user carry names no rule knows."""
    config = yaml.safe_load(Path(source).read_text())
    (cluster,), (user,), (context,) = config["clusters"], config["users"], config["contexts"]
    cluster["name"], user["name"] = "team-cluster", "team-user"
    context["name"], context["context"] = CONTEXT, {"cluster": "team-cluster", "user": "team-user"}
    config["current-context"] = CONTEXT
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o600)


def write_project(root: Path, marker: str, environments: dict) -> None:
    root.mkdir(parents=True)
    shutil.copy(REPO / "tasks.py", root / "tasks.py")
    (root / "Dockerfile.probe").write_text(
        f'ARG BASE\nFROM ${{BASE}}\nLABEL moorage.test.detection="{marker}"\nCMD ["python3", "-c", "print(\'probe ok\')"]\n')
    (root / "environments").mkdir()
    for name in environments:
        (root / "environments" / f"{name}.yaml").write_text("{}\n")
    (root / "invoke.yaml").write_text(yaml.safe_dump({"moorage": {
        "release": "probe", "default_env": next(iter(environments)),
        "images": [{"name": "probe", "dockerfile": "Dockerfile.probe", "build_args": {"BASE": BASE}}],
        "environments": environments}}))


class Project:
    def __init__(self, root: Path, kubeconfig: Path):
        self.root, self.kubeconfig = root, kubeconfig

    def inv(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        for key in ("CONTAINERD_ADDRESS", "MOORAGE_CONTAINERD_ADDRESS", "MOORAGE_ENV"):
            env.pop(key, None)  # the socket is found from the node, not told
        return subprocess.run([INV, *args], cwd=self.root, capture_output=True, text=True, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        result = self.inv(*args)
        assert result.returncode == 0, f"inv {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        return result

    def ref(self, env: str | None = None) -> str:
        listing = json.loads(self.ok("images.list", "--json", *(("--env", env) if env else ())).stdout)
        return listing["images"][0]["ref"]


def on_node(cluster, ref: str) -> bool:
    names = subprocess.run(["ctr", "--address", cluster.containerd_address, "-n", "k8s.io", "images", "ls", "-q"],
                           capture_output=True, text=True, check=True, timeout=60).stdout.split()
    return any(name in (ref, f"docker.io/{ref}", f"docker.io/library/{ref}") for name in names)


def run_pod(cluster, name: str, ref: str) -> str:
    """Run ``ref`` once in a pod that may not pull it; its log."""
    cluster.kubectl("-n", NAMESPACE, "run", name, f"--image={ref}", "--image-pull-policy=Never", "--restart=Never")
    waited = cluster.kubectl("-n", NAMESPACE, "wait", f"pod/{name}", "--for=jsonpath={.status.phase}=Succeeded",
                             "--timeout=120s", check=False, timeout=140)
    assert waited.returncode == 0, cluster.kubectl("-n", NAMESPACE, "describe", "pod", name, check=False).stdout[-3000:]
    return cluster.kubectl("-n", NAMESPACE, "logs", name).stdout


def remove_image(cluster, ref: str) -> None:
    subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, timeout=120)
    for name in (ref, f"docker.io/{ref}"):
        subprocess.run(["ctr", "--address", cluster.containerd_address, "-n", "k8s.io", "images", "rm", name],
                       capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def detection(real_cluster, tmp_path_factory):
    require_docker()
    require_tool("ctr", "kubectl")
    base = tmp_path_factory.mktemp("detection")
    kubeconfig = base / "kubeconfig"
    renamed_kubeconfig(real_cluster.kubeconfig, kubeconfig)
    write_project(base / "project", uuid.uuid4().hex, {"e2e": {"namespace": NAMESPACE}})
    project = Project(base / "project", kubeconfig)
    real_cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    refs = []
    yield project, refs
    real_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
    for ref in refs:
        remove_image(real_cluster, ref)


def test_images_reach_the_node_under_a_context_no_rule_knows_and_nothing_is_pushed(detection, real_cluster):
    project, refs = detection
    project.ok("images.build")
    ref = project.ref()
    refs.append(ref)
    assert not on_node(real_cluster, ref)
    plan = project.ok("images.load", "--dry-run").stdout
    assert f"delivery plan for 'e2e' (containerd-local {CONTEXT})" in plan
    assert f"docker save {ref} | ctr --address {real_cluster.containerd_address} -n k8s.io images import -" in plan
    loaded = project.ok("images.load")
    assert "push" not in (loaded.stdout + loaded.stderr).lower()
    assert f"1 image(s) delivered to containerd-local {CONTEXT}" in loaded.stdout + loaded.stderr
    assert on_node(real_cluster, ref)
    assert "probe ok" in run_pod(real_cluster, "probe", ref)


def test_a_second_load_finds_the_image_on_the_node(detection):
    project, _ = detection
    result = project.ok("images.load")
    assert "the containerd-local cluster already has every image: nothing to load" in result.stdout + result.stderr


def test_doctor_says_what_it_detected_and_why(detection, real_cluster):
    project, _ = detection
    report = json.loads(project.inv("doctor", "--json").stdout)
    check = next(c for c in report["checks"] if c["name"] == "cluster-kind")
    assert check["ok"], check
    assert check["detail"].startswith(f"containerd-local '{CONTEXT}' (runtime containerd, delivery ctr-import): node ")
    assert "is this host" in check["detail"] and f"socket {real_cluster.containerd_address}" in check["detail"]


def test_a_remote_environment_without_a_registry_is_refused_before_anything_is_built(real_cluster, tmp_path):
    require_docker()
    kubeconfig = tmp_path / "kubeconfig"
    renamed_kubeconfig(real_cluster.kubeconfig, kubeconfig)
    write_project(tmp_path / "project", uuid.uuid4().hex, {"lab": {"namespace": NAMESPACE, "cluster": "remote"}})
    project = Project(tmp_path / "project", kubeconfig)
    ref = project.ref()
    result = project.inv("dev.deploy")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert lines[-1].startswith(f"error: environment 'lab' deploys to a remote cluster (context '{CONTEXT}': cluster: "
                                "remote in the configuration) but has no registry: nothing was built or pushed")
    assert subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode != 0, "it was built"


def test_nerdctl_loads_into_the_local_clusters_containerd_as_on_rancher_desktop(real_cluster):
    """The delivery of Rancher Desktop with containerd (``nerdctl --namespace k8s.io load``), on the real node."""
    require_docker()
    if shutil.which("nerdctl") is None:
        missing("'nerdctl' is not installed (scripts/install-nerdctl.sh builds it)")
    import docker

    from moorage.cluster import ClusterTarget, deliver, delivery_plan
    from moorage.core.report import Reporter

    ref = f"moorage-e2e/nerdctl-probe:{uuid.uuid4().hex[:12]}"
    client = docker.from_env()
    dockerfile = f'FROM {BASE}\nLABEL moorage.test.nerdctl="{ref}"\nCMD ["python3", "-c", "print(\'nerdctl ok\')"]\n'
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True)
    real_cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    try:
        cluster = ClusterTarget("rancher-desktop", "rancher-desktop", real_cluster.context, "containerd",
                                real_cluster.containerd_address)
        steps = delivery_plan(cluster, [ref], set())
        assert [s.render() for s in steps] == [
            f"docker save {ref} | nerdctl --address {real_cluster.containerd_address} --namespace k8s.io load"]
        deliver(steps, client=client, reporter=Reporter(stream=io.StringIO(), tty=False))
        listed = subprocess.run(["nerdctl", "--address", real_cluster.containerd_address, "--namespace", "k8s.io",
                                 "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True,
                                timeout=60, check=True).stdout.split()
        assert ref in listed or f"docker.io/{ref}" in listed
        assert on_node(real_cluster, ref)
        assert "nerdctl ok" in run_pod(real_cluster, "nerdctl-probe", ref)
    finally:
        real_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        remove_image(real_cluster, ref)


def test_cluster_status_reports_the_running_local_cluster(real_cluster):
    result = subprocess.run([INV, "cluster.status", "--json"], cwd=REPO, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    state = json.loads(result.stdout)
    running = {c["name"] for c in state["components"] if c["running"]}
    assert {"etcd", "kube-apiserver", "containerd", "kubelet"} <= running
    assert [n["status"] for n in state["nodes"]] == ["Ready"]


def test_dev_deploy_takes_the_local_cluster_with_the_repositorys_own_config(real_cluster):
    """This repository's invoke.yaml (``cluster: auto``, no registry) as a new user has it: no edit needed."""
    env = {**os.environ, "KUBECONFIG": real_cluster.kubeconfig, "POSTGRES_PASSWORD": "dry-run-only"}
    for key in ("CONTAINERD_ADDRESS", "MOORAGE_CONTAINERD_ADDRESS", "MOORAGE_ENV"):
        env.pop(key, None)
    result = subprocess.run([INV, "dev.deploy", "--dry-run", "--env", "dev"], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"context {real_cluster.context}, cluster containerd-local" in result.stdout
    # images the node already has (an earlier deploy of the same tags) get no deliver line at all
    delivers = [line for line in result.stdout.splitlines() if line.startswith("deliver ")]
    assert all(line.endswith("via ctr-import") for line in delivers), delivers
    assert "push" not in result.stdout
