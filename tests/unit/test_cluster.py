"""Cluster detection (from Node objects as each distribution writes them, and from kube contexts), the engine to
build in, and delivery plans for every kind: no Docker, no cluster."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import yaml

from moorage.cluster import (
    ClusterTarget,
    EngineFacts,
    NodeFacts,
    adopt_engine,
    build_engine,
    cluster_for,
    cluster_images,
    deliver,
    delivery_method,
    delivery_plan,
    detect_cluster,
    identify,
    kind_from_context,
    parse_docker_env,
    shares_engine,
    stream_image,
)
from moorage.cluster.nodes import local_node, pick_socket
from moorage.core.errors import CommandFailed, Unreachable
from moorage.core.proc import Result
from moorage.core.report import Reporter

NODES = Path(__file__).resolve().parents[1] / "fixtures" / "k8s_objects" / "nodes"


def node(name: str) -> NodeFacts:
    return NodeFacts.from_object(yaml.safe_load((NODES / f"{name}.yaml").read_text()))


def never_local(ip: str) -> bool:
    return False


# --- what the nodes say -----------------------------------------------------------------

@pytest.mark.parametrize("fixture, kind, name, runtime", [
    ("minikube-docker", "minikube", "minikube", "docker"),
    ("minikube-containerd", "minikube", "dev", "containerd"),
    ("kind", "kind", "team", "containerd"),
    ("k3d", "k3d", "mycluster", "containerd"),
    ("docker-desktop", "docker-desktop", "docker-desktop", "docker"),
    ("rancher-desktop-moby", "rancher-desktop", "rancher-desktop", "docker"),
    ("rancher-desktop-containerd", "rancher-desktop", "rancher-desktop", "containerd"),
    ("colima-docker", "colima", "default", "docker"),
    ("colima-containerd", "colima", "work", "containerd"),
    ("orbstack", "orbstack", "orbstack", "docker"),
    ("microk8s", "microk8s", "microk8s", "containerd"),
])
def test_each_distribution_is_told_from_its_node(fixture, kind, name, runtime):
    found = identify([node(fixture)])
    assert (found.kind, found.name, found.runtime) == (kind, name, runtime), found.reason


@pytest.mark.parametrize("fixture", ["moorage-local", "eks"])
def test_nodes_without_a_distributions_marks_are_not_identified(fixture):
    assert identify([node(fixture)]) is None


def test_node_facts_come_from_the_node_object():
    facts = node("moorage-local")
    assert (facts.name, facts.runtime, facts.runtime_version) == ("ci-runner-7", "containerd", "1.6.20~ds1")
    assert facts.internal_ips() == ["10.0.2.15"] and facts.os_image == "Debian GNU/Linux 12 (bookworm)"
    assert {"local/postgres:15", "moorage/backend:3f9a1c2e7b4d", "registry.k8s.io/pause:3.10"} <= facts.images


def test_a_renamed_context_does_not_hide_what_the_cluster_is():
    cluster = detect_cluster("team-laptop", nodes=[node("kind")], is_local=never_local)
    assert (cluster.kind, cluster.name, cluster.context) == ("kind", "team", "team-laptop")
    assert "providerID kind://docker/team/team-control-plane" in cluster.reason


def test_a_minikube_profile_of_any_name_is_minikube_with_that_profile():
    cluster = detect_cluster("dev", nodes=[node("minikube-containerd")], is_local=never_local)
    assert (cluster.kind, cluster.name, cluster.runtime) == ("minikube", "dev", "containerd")


def test_the_local_cluster_is_the_node_that_is_this_host_with_the_socket_holding_its_images(tmp_path, monkeypatch):
    ours, other = tmp_path / "ours.sock", tmp_path / "docker-containerd.sock"
    ours.touch()
    other.touch()
    monkeypatch.setenv("MOORAGE_CONTAINERD_ADDRESS", str(other))
    monkeypatch.setenv("CONTAINERD_ADDRESS", str(ours))
    run = FakeRun({("ctr", "--address", str(other)): "",
                   ("ctr", "--address", str(ours)): "docker.io/local/postgres:15\nregistry.k8s.io/pause:3.10\n",
                   ("ctr",): ""})  # any other containerd on the machine holds none of the node's images
    cluster = detect_cluster("team-laptop", nodes=[node("moorage-local")], is_local=lambda ip: ip == "10.0.2.15", run=run)
    assert (cluster.kind, cluster.name, cluster.address) == ("containerd-local", "team-laptop", str(ours))
    assert "node ci-runner-7 is this host (10.0.2.15) running containerd" in cluster.reason


def test_the_same_node_elsewhere_is_a_remote_cluster():
    cluster = detect_cluster("team-laptop", nodes=[node("moorage-local")], is_local=never_local)
    assert cluster.kind == "remote" and "is not this host" in cluster.reason


def test_a_cloud_node_is_remote_and_says_why():
    cluster = detect_cluster("prod", nodes=[node("eks")], is_local=never_local)
    assert cluster.kind == "remote" and "providerID aws:///eu-west-1a/i-0a1b2c3d4e5f60718" in cluster.reason


def test_only_a_single_node_cluster_can_be_this_host():
    assert local_node([node("moorage-local"), node("eks")], lambda ip: True) is None


def test_the_socket_with_most_of_the_nodes_images_is_picked():
    listings = {"/a.sock": ["registry.k8s.io/pause:3.10"], "/b.sock": None,
                "/c.sock": ["docker.io/local/postgres:15", "registry.k8s.io/pause:3.10"], "/d.sock": []}
    assert pick_socket(node("moorage-local"), listings) == "/c.sock"
    assert pick_socket(node("moorage-local"), {"/d.sock": []}) is None


# --- the configuration wins ---------------------------------------------------------------

def test_configured_cluster_kind_wins_over_the_nodes():
    cluster = detect_cluster("minikube", "kind", nodes=[node("minikube-docker")], is_local=never_local)
    assert cluster.kind == "kind" and "(detected minikube: node minikube has label" in cluster.reason


def test_configured_remote_reads_no_nodes():
    cluster = detect_cluster("kind-team", "remote", nodes=None)
    assert (cluster.kind, cluster.nodes) == ("remote", ())


def test_configured_kind_takes_the_cluster_name_from_the_nodes():
    cluster = detect_cluster("team-laptop", "kind", nodes=[node("kind")], is_local=never_local)
    assert (cluster.kind, cluster.name) == ("kind", "team")


def test_configured_cluster_kind_wins_over_the_context_name():
    assert cluster_for("kind-dev", "remote").kind == "remote"
    target = cluster_for("dev-profile", "minikube")
    assert (target.kind, target.name, target.context) == ("minikube", "dev-profile", "dev-profile")


# --- the context name, when the nodes cannot be read --------------------------------------

def kubeconfig_contexts() -> list[str]:
    return [c["name"] for c in yaml.safe_load((NODES / "contexts.kubeconfig.yaml").read_text())["contexts"]]


@pytest.mark.parametrize("context, kind, name", [
    ("minikube", "minikube", "minikube"), ("dev", "remote", "dev"), ("kind-team", "kind", "team"),
    ("k3d-mycluster", "k3d", "mycluster"), ("docker-desktop", "docker-desktop", "docker-desktop"),
    ("rancher-desktop", "rancher-desktop", "rancher-desktop"), ("colima", "colima", "default"),
    ("colima-work", "colima", "work"), ("orbstack", "orbstack", "orbstack"), ("microk8s", "microk8s", "microk8s"),
    ("moorage-local", "containerd-local", "moorage-local"),
    ("arn:aws:eks:eu-west-1:123456789012:cluster/prod", "remote", "arn:aws:eks:eu-west-1:123456789012:cluster/prod"),
])
def test_context_names_as_each_tool_writes_them(context, kind, name):
    assert context in kubeconfig_contexts()
    found = kind_from_context(context)
    assert (found.kind, found.name) == (kind, name)


def test_unreadable_nodes_fall_back_to_the_context_name_and_say_so():
    cluster = detect_cluster("kind-team", nodes=[])
    assert cluster.kind == "kind" and "context name 'kind-team'" in cluster.reason and "nodes not read" in cluster.reason


def test_no_context_is_remote():
    assert cluster_for(None).kind == "remote" and cluster_for(None).name == ""


# --- does the cluster run on the build engine? --------------------------------------------------

def test_docker_desktop_runs_on_the_engine_of_the_same_name():
    shared, why = shares_engine([node("docker-desktop")], EngineFacts("unix:///var/run/docker.sock", "docker-desktop"))
    assert shared and "engine name docker-desktop" in why


def test_an_image_built_here_and_never_pushed_on_the_node_means_a_shared_engine():
    engine = EngineFacts("tcp://192.168.49.2:2376", "someotherhost", frozenset({"moorage/backend:3f9a1c2e7b4d"}))
    shared, why = shares_engine([node("minikube-docker")], engine)
    assert shared and "moorage/backend:3f9a1c2e7b4d" in why


def test_a_containerd_node_never_shares_a_docker_engine():
    engine = EngineFacts("unix:///var/run/docker.sock", "team-control-plane", frozenset({"moorage/backend:3f9a1c2e7b4d"}))
    assert shares_engine([node("kind")], engine)[0] is False


def test_an_unknown_cluster_on_this_engine_becomes_local_engine():
    docker_node = NodeFacts.from_object({**yaml.safe_load((NODES / "eks.yaml").read_text()),
                                         "status": {"nodeInfo": {"containerRuntimeVersion": "docker://27.4.1"},
                                                    "images": [{"names": ["moorage/backend:3f9a1c2e7b4d"]}]}})
    remote = detect_cluster("lab", nodes=[docker_node], is_local=never_local)
    engine = EngineFacts("unix:///var/run/docker.sock", "laptop", frozenset({"moorage/backend:3f9a1c2e7b4d"}))
    cluster, shared, _ = adopt_engine(remote, engine)
    assert (remote.kind, cluster.kind, shared) == ("remote", "local-engine", True)


def test_a_cluster_configured_remote_stays_remote_on_a_shared_engine():
    remote = detect_cluster("lab", "remote", nodes=None)
    cluster, _, _ = adopt_engine(ClusterTarget("remote", "lab", "lab", "docker", reason=remote.reason,
                                               nodes=(node("docker-desktop"),)),
                                 EngineFacts("unix:///var/run/docker.sock", "docker-desktop"))
    assert cluster.kind == "remote"


# --- the engine to build in ------------------------------------------------------------------

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
    ("minikube", "docker", "none"), ("minikube", "containerd", "minikube-load"), ("minikube", "cri-o", "minikube-load"),
    ("kind", "containerd", "kind-load"), ("k3d", "containerd", "k3d-import"), ("docker-desktop", "docker", "none"),
    ("rancher-desktop", "docker", "none"), ("rancher-desktop", "containerd", "nerdctl-load"),
    ("colima", "docker", "none"), ("colima", "containerd", "nerdctl-load"), ("orbstack", "docker", "none"),
    ("microk8s", "containerd", "microk8s-import"), ("containerd-local", "containerd", "ctr-import"),
    ("local-engine", "docker", "none"), ("remote", "containerd", "push"),
])
def test_delivery_method_per_cluster(cluster, runtime, expected):
    assert delivery_method(cluster, runtime) == expected


def test_minikube_with_containerd_from_its_node_builds_in_the_host_engine_without_asking_minikube():
    cluster = detect_cluster("dev", nodes=[node("minikube-containerd")], is_local=never_local)
    engine = build_engine(cluster, run=FakeRun({}))
    assert (engine.docker_env, engine.cluster_reads_it, engine.runtime) == (None, False, "containerd")


@pytest.mark.parametrize("fixture", ["docker-desktop", "rancher-desktop-moby", "colima-docker", "orbstack"])
def test_clusters_on_the_docker_engine_need_nothing_delivered(fixture):
    cluster = detect_cluster("ctx", nodes=[node(fixture)], is_local=never_local)
    assert build_engine(cluster, run=FakeRun({})).cluster_reads_it
    assert delivery_plan(cluster, REFS, set()) == []


def test_rancher_desktop_with_containerd_streams_into_nerdctl_in_the_k8s_namespace():
    cluster = detect_cluster("rancher-desktop", nodes=[node("rancher-desktop-containerd")], is_local=never_local)
    steps = delivery_plan(cluster, REFS, {"docker.io/demo/backend:aaa"})
    assert [s.render() for s in steps] == ["docker save demo/worker:bbb | nerdctl --namespace k8s.io load"]


def test_colima_with_containerd_loads_through_its_own_nerdctl_for_the_profile():
    cluster = detect_cluster("colima-work", nodes=[node("colima-containerd")], is_local=never_local)
    assert commands(cluster, set())[0] == ["colima", "nerdctl", "--profile", "work", "--", "--namespace", "k8s.io", "load"]


def test_nerdctl_names_the_containerd_socket_when_it_is_known():
    cluster = ClusterTarget("rancher-desktop", "rancher-desktop", "x", "containerd", "/run/k.sock")
    assert commands(cluster, set())[0] == ["nerdctl", "--address", "/run/k.sock", "--namespace", "k8s.io", "load"]


def test_microk8s_imports_each_missing_image_from_a_stream():
    cluster = detect_cluster("microk8s", nodes=[node("microk8s")], is_local=never_local)
    steps = delivery_plan(cluster, REFS, {"demo/worker:bbb"})
    assert [s.render() for s in steps] == ["docker save demo/backend:aaa | microk8s images import"]


def test_the_local_cluster_imports_into_its_own_containerd_socket():
    cluster = ClusterTarget("containerd-local", "moorage-local", "moorage-local", "containerd", "/var/lib/k/c.sock")
    assert commands(cluster, set())[0] == ["ctr", "--address", "/var/lib/k/c.sock", "-n", "k8s.io", "images", "import", "-"]


@pytest.mark.parametrize("cluster, command", [
    (ClusterTarget("containerd-local", "l", "l", "containerd", "/s.sock"),
     ["ctr", "--address", "/s.sock", "-n", "k8s.io", "images", "ls", "-q"]),
    (ClusterTarget("microk8s", "microk8s", "microk8s", "containerd"), ["microk8s", "ctr", "images", "ls", "-q"]),
    (ClusterTarget("rancher-desktop", "rancher-desktop", "rd", "containerd"),
     ["nerdctl", "--namespace", "k8s.io", "images", "--format", "{{.Repository}}:{{.Tag}}"]),
])
def test_containerd_presence_is_read_from_the_k8s_namespace(cluster, command):
    run = FakeRun({tuple(command): "docker.io/demo/backend:aaa\nregistry.k8s.io/pause:3.10\n"})
    assert cluster_images(cluster, REFS, run=run) == {"demo/backend:aaa", "registry.k8s.io/pause:3.10"}
    assert run.calls == [command]


class FakeEngineClient:
    """docker-py's client as far as ``docker save`` goes: ``api.get_image`` yields the archive in chunks."""

    def __init__(self, chunks):
        self.api = self
        self.chunks = chunks

    def get_image(self, ref):
        yield from self.chunks


def test_an_image_is_streamed_into_the_receiving_command(tmp_path):
    out = tmp_path / "received.tar"
    stream_image(FakeEngineClient([b"layer-1|", b"layer-2"]), "demo/backend:aaa",
                 [sys.executable, "-c", f"import sys, shutil; shutil.copyfileobj(sys.stdin.buffer, open({str(out)!r}, 'wb'))"])
    assert out.read_bytes() == b"layer-1|layer-2"


def test_a_receiver_that_fails_is_one_line_with_its_stderr():
    with pytest.raises(CommandFailed) as err:
        stream_image(FakeEngineClient([b"x" * 65536] * 64), "demo/backend:aaa",
                     [sys.executable, "-c", "import sys; sys.stderr.write('ctr: unrecognized image format'); sys.exit(3)"])
    assert "failed (exit 3) for demo/backend:aaa: ctr: unrecognized image format" in err.value.message


# --- the project's local cluster (inv cluster.*) ---------------------------------------------

STATUS_RUNNING = """etcd                     running (pid 4021)
kube-apiserver           running (pid 4057)
kube-controller-manager  running (pid 4133)
kube-scheduler           running (pid 4134)
containerd               running (pid 4140)
kubelet                  running (pid 4188)
kube-proxy               running (pid 4190)
coredns                  not running
NAME          STATUS   ROLES    AGE   VERSION   INTERNAL-IP   EXTERNAL-IP   OS-IMAGE                         KERNEL-VERSION         CONTAINER-RUNTIME
ci-runner-7   Ready    <none>   3d    v1.33.4   10.0.2.15     <none>        Debian GNU/Linux 12 (bookworm)   6.1.0-28-cloud-amd64   containerd://1.6.20~ds1
"""


def test_local_cluster_status_is_parsed_into_components_and_nodes():
    from moorage.cluster.local import parse_status

    state = parse_status(STATUS_RUNNING, 0)
    assert state.ok and state.running and len(state.components) == 8
    assert state.components[0].name == "etcd" and state.components[0].pid == 4021
    assert [c.name for c in state.components if not c.running] == ["coredns"]
    assert state.nodes == [{"name": "ci-runner-7", "status": "Ready", "version": "v1.33.4", "internal_ip": "10.0.2.15",
                            "container_runtime": "containerd://1.6.20~ds1"}]


def test_a_stopped_local_cluster_is_not_ok():
    from moorage.cluster.local import parse_status

    state = parse_status("etcd                     not running\nkubelet                  not running\n", 1)
    assert not state.ok and not state.running and state.nodes == []


def kubeconfig(name: str, server: str) -> dict:
    return {"apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": {"server": server}}],
            "users": [{"name": f"{name}-admin", "user": {"token": "t"}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}]}


def test_up_merges_the_local_context_into_the_users_kubeconfig_and_makes_it_current():
    from moorage.cluster.local import merge_context

    mine = kubeconfig("kind-team", "https://127.0.0.1:39211")
    merged = merge_context(mine, kubeconfig("moorage-local", "https://127.0.0.1:6443"), "moorage-local")
    assert merged["current-context"] == "moorage-local"
    assert [c["name"] for c in merged["contexts"]] == ["kind-team", "moorage-local"]
    assert [c["name"] for c in merged["users"]] == ["kind-team-admin", "moorage-local-admin"]


def test_merging_again_replaces_the_old_entries():
    from moorage.cluster.local import merge_context

    once = merge_context({}, kubeconfig("moorage-local", "https://127.0.0.1:6443"), "moorage-local")
    twice = merge_context(once, kubeconfig("moorage-local", "https://10.0.0.1:6443"), "moorage-local")
    assert [c["cluster"]["server"] for c in twice["clusters"]] == ["https://10.0.0.1:6443"]


def test_down_removes_the_local_context_and_leaves_the_others():
    from moorage.cluster.local import merge_context, remove_context

    merged = merge_context(kubeconfig("kind-team", "https://127.0.0.1:39211"),
                           kubeconfig("moorage-local", "https://127.0.0.1:6443"), "moorage-local")
    left = remove_context(merged, "moorage-local")
    assert [c["name"] for c in left["contexts"]] == ["kind-team"] and left["current-context"] == ""
    assert [c["name"] for c in left["clusters"]] == ["kind-team"]


def test_merge_into_writes_a_private_kubeconfig(tmp_path):
    from moorage.cluster.local import merge_into

    source = tmp_path / "cluster.yaml"
    source.write_text(yaml.safe_dump(kubeconfig("moorage-local", "https://127.0.0.1:6443")))
    target = tmp_path / "home" / "config"
    merge_into(str(target), str(source), "moorage-local")
    assert yaml.safe_load(target.read_text())["current-context"] == "moorage-local"
    assert target.stat().st_mode & 0o777 == 0o600


# --- a remote cluster without a registry is refused --------------------------------------------

def workspace(cluster: ClusterTarget):
    from moorage.artifacts import Workspace
    from moorage.cluster import Engine

    return Workspace(cluster, Engine(None, "unix:///var/run/docker.sock", False), None, [], {}, set())


def environment(registry: str = ""):
    from moorage.core.config import Environment

    return Environment(name="dev", values_files=(Path("environments/dev.yaml"),), namespace="ns", registry=registry)


def test_a_remote_cluster_without_a_registry_is_refused_in_one_line():
    from moorage.artifacts import require_delivery_target
    from moorage.core.errors import UserError

    cluster = detect_cluster("team-laptop", nodes=[node("eks")], is_local=never_local)
    with pytest.raises(UserError) as err:
        require_delivery_target(workspace(cluster), environment())
    line = err.value.line()
    assert "\n" not in line and err.value.exit_code == 2
    assert line.startswith("environment 'dev' deploys to a remote cluster (context 'team-laptop': node ip-10-12-3-45")
    assert "has no registry: nothing was built or pushed" in line and "moorage.environments.dev.registry" in line


def test_a_remote_cluster_with_a_registry_and_every_local_cluster_pass():
    from moorage.artifacts import require_delivery_target

    require_delivery_target(workspace(ClusterTarget("remote", "prod", "prod")), environment("registry.example.com/shop"))
    for fixture in ("kind", "minikube-containerd", "rancher-desktop-containerd", "microk8s"):
        require_delivery_target(workspace(detect_cluster("x", nodes=[node(fixture)], is_local=never_local)), environment())
