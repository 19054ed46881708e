"""Cluster kind detection, the engine to build in, and delivery plans: no Docker, no cluster."""

from __future__ import annotations

import io

import pytest

from moorage.cluster import (
    ClusterTarget,
    build_engine,
    cluster_for,
    cluster_images,
    deliver,
    delivery_method,
    delivery_plan,
    parse_docker_env,
)
from moorage.core.errors import CommandFailed, Unreachable
from moorage.core.proc import Result
from moorage.core.report import Reporter

# --- cluster detection and engines ----------------------------------------------------

@pytest.mark.parametrize("context, kind, name", [
    ("minikube", "minikube", "minikube"),
    ("kind-dev", "kind", "dev"),
    ("k3d-mycluster", "k3d", "mycluster"),
    ("docker-desktop", "docker-desktop", "docker-desktop"),
    ("gke_project_zone_prod", "remote", "gke_project_zone_prod"),
    (None, "remote", ""),
])
def test_cluster_kind_is_detected_from_the_context_name(context, kind, name):
    cluster = cluster_for(context)
    assert (cluster.kind, cluster.name) == (kind, name)


def test_configured_cluster_kind_wins_over_the_context_name():
    assert cluster_for("kind-dev", "remote").kind == "remote"
    assert cluster_for("dev-profile", "minikube") == ClusterTarget("minikube", "dev-profile", "dev-profile")


MINIKUBE_DOCKER_ENV = '''export DOCKER_TLS_VERIFY="1"
export DOCKER_HOST="tcp://192.168.49.2:2376"
export DOCKER_CERT_PATH="/home/u/.minikube/certs"
export MINIKUBE_ACTIVE_DOCKERD="minikube"

# To point your shell to minikube's docker-daemon, run:
# eval $(minikube -p minikube docker-env)
'''


def test_docker_env_output_is_parsed_into_docker_variables():
    assert parse_docker_env(MINIKUBE_DOCKER_ENV) == {
        "DOCKER_TLS_VERIFY": "1", "DOCKER_HOST": "tcp://192.168.49.2:2376",
        "DOCKER_CERT_PATH": "/home/u/.minikube/certs"}
    assert parse_docker_env("DOCKER_HOST=unix:///tmp/d.sock\n") == {"DOCKER_HOST": "unix:///tmp/d.sock"}


class FakeRun:
    """Records commands and answers from a table (command prefix -> Result or exception)."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, args, **kw):
        self.calls.append(list(args))
        for prefix, answer in self.answers.items():
            if tuple(args[:len(prefix)]) == prefix:
                if isinstance(answer, Exception):
                    raise answer
                return Result(tuple(args), 0, answer, "")
        raise AssertionError(f"unexpected command {args}")


def test_minikube_docker_runtime_builds_into_its_daemon():
    run = FakeRun({("minikube",): MINIKUBE_DOCKER_ENV})
    engine = build_engine(ClusterTarget("minikube", "dev", "dev"), run=run)
    assert run.calls == [["minikube", "-p", "dev", "docker-env", "--shell", "bash"]]
    assert engine.host == "tcp://192.168.49.2:2376" and engine.cluster_reads_it
    assert engine.docker_env["DOCKER_TLS_VERIFY"] == "1"


def test_minikube_other_runtime_builds_in_the_host_engine():
    err = CommandFailed("minikube docker-env failed", stderr=(
        'X Exiting due to MK_USAGE: The docker-env command is only compatible with the "docker" runtime, '
        'but this cluster was configured to use the "containerd" runtime.'), returncode=14)
    engine = build_engine(ClusterTarget("minikube", "minikube", "minikube"), run=FakeRun({("minikube",): err}))
    assert engine.docker_env is None and not engine.cluster_reads_it and engine.runtime == "containerd"


def test_minikube_not_running_is_unreachable_with_start_hint():
    err = CommandFailed("minikube docker-env failed", stderr="The control plane node must be running", returncode=89)
    with pytest.raises(Unreachable, match="minikube") as exc:
        build_engine(ClusterTarget("minikube", "minikube", "minikube"), run=FakeRun({("minikube",): err}))
    assert "minikube start -p minikube" in exc.value.hint


def test_non_minikube_clusters_build_in_the_host_engine():
    engine = build_engine(ClusterTarget("kind", "dev", "kind-dev"), run=FakeRun({}))
    assert engine.docker_env is None and not engine.cluster_reads_it


# --- delivery plans ------------------------------------------------------------------

REFS = ["demo/backend:aaa", "demo/worker:bbb"]


def commands(cluster, present, **kw):
    return [list(s.command) for s in delivery_plan(cluster, REFS, present, **kw)]


def test_minikube_docker_runtime_delivers_nothing():
    assert commands(ClusterTarget("minikube", "minikube", "minikube"), set(), engine_shared=True) == []


def test_minikube_other_runtime_loads_only_missing_images():
    assert commands(ClusterTarget("minikube", "minikube", "minikube"), {"docker.io/demo/backend:aaa"}) == [
        ["minikube", "-p", "minikube", "image", "load", "demo/worker:bbb"]]


def test_kind_loads_missing_images_in_one_command():
    assert commands(ClusterTarget("kind", "dev", "kind-dev"), set()) == [
        ["kind", "load", "docker-image", "--name", "dev", "demo/backend:aaa", "demo/worker:bbb"]]


def test_kind_with_every_image_present_loads_nothing():
    assert commands(ClusterTarget("kind", "dev", "kind-dev"), {"docker.io/demo/backend:aaa", "demo/worker:bbb"}) == []


def test_k3d_imports_missing_images():
    assert commands(ClusterTarget("k3d", "mine", "k3d-mine"), {"demo/backend:aaa"}) == [
        ["k3d", "image", "import", "-c", "mine", "demo/worker:bbb"]]


def test_docker_desktop_delivers_nothing():
    assert commands(ClusterTarget("docker-desktop", "docker-desktop", "docker-desktop"), None) == []


def test_remote_pushes_tags_the_registry_lacks():
    steps = delivery_plan(ClusterTarget("remote", "prod", "prod"), REFS, {"demo/backend:aaa"})
    assert [(s.action, s.refs, s.render()) for s in steps] == [("push", ("demo/worker:bbb",), "docker push demo/worker:bbb")]


def test_unknown_presence_delivers_everything():
    assert len(commands(ClusterTarget("minikube", "minikube", "minikube"), None)) == 2


def test_kind_presence_requires_every_node_to_have_the_image():
    node1 = '{"images": [{"repoTags": ["docker.io/demo/backend:aaa", "docker.io/demo/worker:bbb"]}]}'
    node2 = '{"images": [{"repoTags": ["docker.io/demo/backend:aaa"]}]}'
    answers = {("kind", "get", "nodes"): "dev-control-plane\ndev-worker\n",
               ("docker", "exec", "dev-control-plane"): node1, ("docker", "exec", "dev-worker"): node2}
    run = FakeRun(answers)
    assert cluster_images(ClusterTarget("kind", "dev", "kind-dev"), REFS, run=run) == {"demo/backend:aaa"}
    assert ["docker", "exec", "dev-worker", "crictl", "images", "-o", "json"] in run.calls


def test_minikube_presence_comes_from_image_ls():
    run = FakeRun({("minikube", "-p", "minikube", "image", "ls"): "docker.io/demo/backend:aaa\nregistry.k8s.io/pause:3.9\n"})
    present = cluster_images(ClusterTarget("minikube", "minikube", "minikube"), REFS, run=run)
    assert "demo/backend:aaa" in present and "demo/worker:bbb" not in present


def test_load_steps_run_through_the_subprocess_helper():
    run = FakeRun({("kind",): ""})
    steps = delivery_plan(ClusterTarget("kind", "dev", "kind-dev"), REFS, set())
    deliver(steps, client=None, reporter=Reporter(stream=io.StringIO(), tty=False), run=run)
    assert run.calls == [["kind", "load", "docker-image", "--name", "dev", *REFS]]


@pytest.mark.parametrize("cluster, runtime, expected", [
    ("minikube", "docker", "none"), ("minikube", "containerd", "minikube-load"), ("kind", "docker", "kind-load"),
    ("k3d", "docker", "k3d-import"), ("docker-desktop", "docker", "none"), ("remote", "docker", "push"),
    ("containerd-local", "docker", "ctr-import"),
])
def test_delivery_method_per_cluster(cluster, runtime, expected):
    assert delivery_method(cluster, runtime) == expected
