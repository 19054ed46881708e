"""dev.watch decisions without a cluster: sync rules, what changed, what a change needs, what to watch,
the tar sent into a container, and which layers a containerd node already has."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from moorage.cluster import layers
from moorage.cluster.layers import OCI_LAYER, OCI_LAYER_GZIP, containerd_name, parse_content
from moorage.core.config import SyncRule, load_project
from moorage.core.errors import ConfigError
from moorage.kube.sync import tar_of
from moorage.watch.changes import Diff, describe, destination, diff, plan_change, rule_for
from moorage.watch.files import Relevance, watch_roots

RELOAD = "python3 -m moorage_common.devrun reload"


def _project(tmp_path: Path, sync=None):
    (tmp_path / "environments").mkdir(exist_ok=True)
    (tmp_path / "environments" / "dev.yaml").write_text("{}\n")
    (tmp_path / "chart").mkdir(exist_ok=True)
    image = {"name": "backend", "dockerfile": "Dockerfile.backend", "context": "."}
    if sync is not None:
        image["sync"] = sync
    return load_project({"images": [image]}, tmp_path)


def test_sync_rules_are_read_with_their_fixed_prefix_and_default_action(tmp_path):
    project = _project(tmp_path, [{"src": "app/backend/pkg/**", "dest": "/app/pkg/"},
                                  {"src": "app/common/lib", "dest": "/app/lib", "then": RELOAD}])
    first, second = project.image("backend").sync
    assert (first.base, first.dest, first.then) == ("app/backend/pkg", "/app/pkg", "reload")
    assert (second.base, second.then) == ("app/common/lib", RELOAD)


@pytest.mark.parametrize(("rule", "key"), [
    ({"src": "/abs/**", "dest": "/app"}, "src"),
    ({"src": "../up/**", "dest": "/app"}, "src"),
    ({"src": "app/**", "dest": "relative"}, "dest"),
    ({"src": "app/**", "dest": "/app", "then": "sh -c 'unclosed"}, "then"),
    ({"src": "app/**", "dest": "/app", "when": "now"}, "when"),
])
def test_a_bad_sync_rule_names_its_key(tmp_path, rule, key):
    with pytest.raises(ConfigError) as caught:
        _project(tmp_path, [rule])
    assert f"sync[0].{key}" in caught.value.message


def test_snapshot_differences_are_changed_added_and_removed_files():
    old = {"a.py": ("file", 0o644, "1"), "b.py": ("file", 0o644, "2"), "gone.py": ("file", 0o644, "3")}
    new = {"a.py": ("file", 0o644, "1"), "b.py": ("file", 0o755, "2"), "new.py": ("file", 0o644, "4")}
    assert diff(old, new) == Diff(changed=("b.py", "new.py"), removed=("gone.py",))
    assert not diff(old, old)


def test_a_file_under_a_glob_goes_below_the_rules_destination():
    rule = SyncRule("app/backend/pkg/**", "/app/pkg")
    assert rule_for([rule], "app/backend/pkg/sub/x.py") is rule
    assert rule_for([rule], "app/backend/requirements.txt") is None
    assert destination(rule, "app/backend/pkg/sub/x.py") == "/app/pkg/sub/x.py"
    single = SyncRule("app/settings.toml", "/etc/app/settings.toml")
    assert destination(single, "app/settings.toml") == "/etc/app/settings.toml"


def test_a_change_inside_the_sync_rules_is_synced_with_the_rules_actions(tmp_path):
    image = _project(tmp_path, [{"src": "app/pkg/**", "dest": "/app/pkg", "then": RELOAD},
                                {"src": "app/lib/**", "dest": "/app/lib", "then": "restart"}]).image("backend")
    change = plan_change(image, Diff(changed=("app/lib/a.py", "app/pkg/b.py"), removed=("app/pkg/old.py",)))
    assert change.copy == [("app/lib/a.py", "/app/lib/a.py"), ("app/pkg/b.py", "/app/pkg/b.py")]
    assert change.delete == ["/app/pkg/old.py"]
    assert change.actions == [RELOAD, "restart"]
    assert change.rebuild == []


def test_a_change_outside_the_sync_rules_needs_a_build(tmp_path):
    image = _project(tmp_path, [{"src": "app/pkg/**", "dest": "/app/pkg"}]).image("backend")
    change = plan_change(image, Diff(changed=("app/pkg/b.py", "app/requirements.txt")))
    assert change.rebuild == ["app/requirements.txt"]


def test_the_changed_files_are_named_briefly():
    assert describe(["app/a.py"]) == "a.py"
    assert describe(["a/1", "b/2", "c/3", "d/4", "e/5"]) == "1, 2, 3 and 2 more"


def test_only_what_the_dockerignore_lets_in_is_watched(tmp_path):
    project = _project(tmp_path)
    for folder in ("app/backend/pkg", "app/worker", "node_modules/x"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "Dockerfile.backend").write_text("FROM scratch\n")
    (tmp_path / "Dockerfile.backend.dockerignore").write_text("*\n!app/backend/\n**/__pycache__\n")
    recursive, flat = watch_roots(project, project.env("dev"))
    assert (tmp_path / "app" / "backend").resolve() in recursive
    assert (tmp_path / "chart").resolve() in recursive
    assert not any(p.is_relative_to((tmp_path / "app" / "worker").resolve()) for p in recursive + flat)
    assert not any(p.is_relative_to((tmp_path / "node_modules").resolve()) for p in recursive + flat)
    assert tmp_path.resolve() in flat, "the Dockerfile's folder, not its subfolders"
    relevant = Relevance(project, project.env("dev"))
    root = tmp_path.resolve()
    assert relevant(None, str(root / "app/backend/pkg/x.py"))
    assert relevant(None, str(root / "Dockerfile.backend"))
    assert relevant(None, str(root / "environments/dev.yaml"))
    assert not relevant(None, str(root / "app/backend/pkg/__pycache__/x.cpython-311.pyc"))
    assert not relevant(None, str(root / "app/worker/w.py"))
    assert not relevant(None, str(root / ".moorage/cache/context-digests.json"))


def test_the_tar_into_a_container_names_each_file_by_its_destination_and_keeps_its_mode(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    data = tar_of([(str(script), "/app/bin/run.sh"), (str(tmp_path / "vanished.py"), "/app/vanished.py")])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode, tar.extractfile(member).read()) == ("app/bin/run.sh", 0o755, b"echo hi\n")


# ``ctr -n k8s.io content ls`` on the local cluster's node (one blob stored compressed, one as is)
CONTENT_LS = (
    "DIGEST\t\t\t\t\t\t\t\t\tSIZE\tAGE\t\tLABELS\n"
    "sha256:03be9005074fae4fc3d27c2b0624a704eebeb72e4059e1e56aa1d9cb91ba1ac0\t1.914kB\t3 minutes\t"
    "containerd.io/gc.ref.snapshot.overlayfs=sha256:853d838c48ea06effc14534c4b90aacb052799ab6c7231b12d6cce52919efe71\n"
    "sha256:062d3794816a49a27841d2178acc90257123d292566c0afdb1e2f7f774064f09\t15.66MB\tAbout a minute\t"
    "containerd.io/uncompressed=sha256:062d3794816a49a27841d2178acc90257123d292566c0afdb1e2f7f774064f09\n"
    "sha256:aaaa3794816a49a27841d2178acc90257123d292566c0afdb1e2f7f774064f09\t5.1MB\t2 hours\t"
    "containerd.io/distribution.source.docker.io=library/x,"
    "containerd.io/uncompressed=sha256:bbbb3794816a49a27841d2178acc90257123d292566c0afdb1e2f7f774064f09\n"
)


def test_the_nodes_layers_are_known_by_their_uncompressed_digest():
    blobs = parse_content(CONTENT_LS)
    plain = "sha256:062d3794816a49a27841d2178acc90257123d292566c0afdb1e2f7f774064f09"
    assert blobs[plain].digest == plain and blobs[plain].media_type == OCI_LAYER
    gzipped = blobs["sha256:bbbb3794816a49a27841d2178acc90257123d292566c0afdb1e2f7f774064f09"]
    assert gzipped.digest.startswith("sha256:aaaa") and gzipped.media_type == OCI_LAYER_GZIP


def test_a_pulled_layers_exact_size_comes_from_its_manifest_where_ctr_has_no_content_info(monkeypatch):
    """containerd 1.6's ctr lacks `content info`; `content ls` rounds sizes; a manifest names them exactly."""
    layer = "sha256:aaaa3794816a49a27841d2178acc90257123d292566c0afdb1e2f7f774064f09"
    manifest = "sha256:" + "m" * 64
    listing = CONTENT_LS + (f"{manifest}\t1.2kB\t2 hours\tcontainerd.io/gc.ref.content.config=sha256:cc,"
                            f"containerd.io/gc.ref.content.l.0={layer}\n")
    calls = []

    def run(args, **kw):
        calls.append(args[-2:])
        if args[-2] == "info":
            return layers.proc.Result(tuple(args), 1, "", "No help topic for 'info'")
        return layers.proc.Result(tuple(args), 0, f'{{"layers": [{{"digest": "{layer}", "size": 5100123}}]}}', "")

    monkeypatch.setattr(layers.proc, "run", run)
    manifests = layers.referring_manifests(listing)
    assert manifests == {layer: manifest}
    assert layers.blob_size(("ctr", "-n", "k8s.io"), layer, manifests) == 5100123
    assert calls == [["info", layer], ["get", manifest]]


@pytest.mark.parametrize(("ref", "name"), [
    ("moorage/backend:abc", "docker.io/moorage/backend:abc"),
    ("redis:7", "docker.io/library/redis:7"),
    ("registry.example.com/team/app:1", "registry.example.com/team/app:1"),
    ("localhost:5000/app:1", "localhost:5000/app:1"),
])
def test_images_get_the_names_containerd_gives_docker_references(ref, name):
    assert containerd_name(ref) == name
