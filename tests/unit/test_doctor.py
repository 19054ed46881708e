"""doctor's checks and the context-safety rule."""

from pathlib import Path

import pytest

from moorage import doctor, helm
from moorage.cluster import ClusterTarget
from moorage.core.config import guard_context, load_project
from moorage.core.errors import EXIT_BAD_INPUT, Unreachable, UserError


@pytest.fixture
def project(tmp_path: Path):
    (tmp_path / "environments").mkdir()
    for name in ("dev", "prod"):
        (tmp_path / "environments" / f"{name}.yaml").write_text("{}\n")
    raw = {"environments": {"prod": {"production": True, "context": "prod-ctx"}}}
    return load_project(raw, tmp_path)


def test_dev_task_refuses_a_production_context(project):
    with pytest.raises(UserError) as err:
        guard_context(project, project.env("dev"), "prod-ctx")
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "kube context 'prod-ctx' belongs to production environment 'prod'" in err.value.line()


def test_production_environment_may_use_its_context(project):
    guard_context(project, project.env("prod"), "prod-ctx")
    guard_context(project, project.env("dev"), "minikube")


def test_context_check_stops_at_an_unsafe_context(project):
    called = []
    checks = doctor.check_context(project, project.env("dev"), lambda: "prod-ctx", called.append)
    assert [(c.name, c.ok) for c in checks] == [("context-safety", False)]
    assert called == []


def test_unreachable_cluster_is_a_failed_check_with_a_hint(project):
    def reachable(context):
        raise Unreachable("cluster at https://127.0.0.1:1 is unreachable", "start the cluster")

    checks = doctor.check_context(project, project.env("dev"), lambda: "minikube", reachable)
    assert checks[-1].name == "cluster" and not checks[-1].ok and checks[-1].hint == "start the cluster"


@pytest.mark.parametrize("context, tools", [("minikube", ["minikube"]), ("kind-dev", ["kind"]),
                                            ("k3d-x", ["k3d"]), ("gke_prod", [])])
def test_needed_cluster_tools_follow_the_context(project, context, tools):
    assert doctor.needed_tools(project.env("dev"), context) == tools


@pytest.mark.parametrize("kind, runtime, tools", [
    ("rancher-desktop", "containerd", ["nerdctl"]), ("rancher-desktop", "docker", []), ("colima", "containerd", ["colima"]),
    ("microk8s", "containerd", ["microk8s"]), ("containerd-local", "containerd", ["ctr"]), ("orbstack", "docker", []),
])
def test_needed_cluster_tools_follow_the_detected_cluster(project, kind, runtime, tools):
    cluster = ClusterTarget(kind, kind, "team-laptop", runtime)
    assert doctor.needed_tools(project.env("dev"), "team-laptop", cluster) == tools


def test_doctor_says_what_cluster_it_detected_and_why(project):
    cluster = ClusterTarget("containerd-local", "team-laptop", "team-laptop", "containerd", "/s.sock",
                            "node ci-runner-7 is this host (10.0.2.15) running containerd, socket /s.sock")
    check = doctor.check_cluster_kind(project.env("dev"), cluster)
    assert check.ok and check.name == "cluster-kind"
    assert check.detail == ("containerd-local 'team-laptop' (runtime containerd, delivery ctr-import): "
                            "node ci-runner-7 is this host (10.0.2.15) running containerd, socket /s.sock")


def test_doctor_fails_a_remote_cluster_without_a_registry(project):
    cluster = ClusterTarget("remote", "lab", "lab", "containerd", reason="node n (providerID aws:///x) carries no marks")
    check = doctor.check_cluster_kind(project.env("dev"), cluster)
    assert not check.ok and "no registry" in check.detail and "registry" in check.hint


def test_doctor_reports_the_engine_comparison(project):
    cluster = ClusterTarget("local-engine", "lab", "lab", "docker", reason="node lab is the host of the engine")
    check = doctor.check_cluster_kind(project.env("dev"), cluster, (True, "engine name lab"))
    assert check.ok and check.detail.endswith("build engine shared: engine name lab")


def test_helm_versions_are_parsed():
    assert helm.parse_helm_version("v4.1.4") == (4, 1, 4)
    assert helm.parse_helm_version("v3.15.2+g1a500d5") == (3, 15, 2)
    assert helm.parse_helm_version("nonsense") is None


def test_old_python_fails_with_a_hint():
    check = doctor.check_python((3, 9, 1))
    assert not check.ok and "3.11" in check.hint
