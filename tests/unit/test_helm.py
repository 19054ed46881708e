"""Helm decisions: layered values, version-aware commands, pending releases, waited resources."""

import json
import os
import stat
from pathlib import Path

import pytest

from moorage import helm, readiness
from moorage.core.config import load_project
from moorage.core.errors import EXIT_BAD_INPUT, UserError


@pytest.fixture
def project(tmp_path: Path):
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "dev.yaml").write_text("{}\n")
    raw = {
        "release": "shop",
        "images": [{"name": "api", "values_key": "backend.image"}, {"name": "web"}],
        "secrets": {"DB_PASSWORD": "postgresql.auth.password", "KEY": "backend.secretKey"},
        "environments": {"dev": {"namespace": "shop-dev", "timeout": 120}},
    }
    return load_project(raw, tmp_path)


def test_image_values_go_to_each_images_values_path(project):
    values = helm.image_values(project, {"api": ("moorage/api", "abc123"), "web": ("moorage/web", "def456")})
    assert values == {"backend": {"image": {"repository": "moorage/api", "tag": "abc123"}},
                      "web": {"image": {"repository": "moorage/web", "tag": "def456"}}}


def test_secret_values_are_nested_and_empty_ones_dropped(project):
    values = helm.secret_values(project, {"DB_PASSWORD": "pw", "KEY": ""})
    assert values == {"postgresql": {"auth": {"password": "pw"}}}


def test_merge_is_deep_and_last_wins():
    merged = helm.merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"c": 3}, "l": [2]})
    assert merged == {"a": {"b": 1, "c": 3}, "l": [2]}


def test_private_values_are_0600_and_removed_afterwards():
    with helm.private_values({"secrets": {"postgresql": {"auth": {"password": "pw"}}}}) as paths:
        path = paths["secrets"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert "pw" in path.read_text()
    assert not path.exists() and not path.parent.exists()


def test_private_values_are_removed_on_interrupt():
    with pytest.raises(KeyboardInterrupt):
        with helm.private_values({"s": {"k": "v"}}) as paths:
            kept = paths["s"]
            raise KeyboardInterrupt
    assert not kept.exists()


def test_upgrade_command_for_helm_4_waits_for_hooks_only(project):
    env = project.env("dev")
    args = helm.upgrade_command("shop", project.chart, env, [Path("/v/env.yaml"), Path("/v/images.yaml")], 4,
                                context="minikube")
    assert args[:5] == ["helm", "upgrade", "--install", "shop", str(project.chart)]
    assert args[args.index("--namespace") + 1] == "shop-dev"
    assert args[args.index("--kube-context") + 1] == "minikube"
    assert args[args.index("--timeout") + 1] == "120s"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--values"] == ["/v/env.yaml", "/v/images.yaml"]
    assert "--wait=hookOnly" in args and "--atomic" not in args


@pytest.mark.parametrize("major, expected", [(4, ["--wait=watcher", "--rollback-on-failure"]),
                                             (3, ["--wait", "--atomic"])])
def test_native_wait_uses_each_majors_flags(project, major, expected):
    args = helm.upgrade_command("shop", project.chart, project.env("dev"), [], major, native_wait=True)
    assert args[-2:] == expected


def test_helm_3_default_does_not_wait(project):
    args = helm.upgrade_command("shop", project.chart, project.env("dev"), [], 3)
    assert not any(a.startswith("--wait") for a in args)


STATUS = {"name": "shop", "namespace": "shop-dev", "version": 4,
          "info": {"status": "pending-upgrade"}, "chart": {"metadata": {"name": "moorage", "version": "0.1.0"}}}
HISTORY = [{"revision": 2, "status": "superseded", "chart": "moorage-0.1.0", "description": "Upgrade complete",
            "updated": "x"},
           {"revision": 3, "status": "deployed", "chart": "moorage-0.1.0", "description": "Upgrade complete",
            "updated": "x"},
           {"revision": 4, "status": "pending-upgrade", "chart": "moorage-0.1.0", "description": "Preparing upgrade",
            "updated": "x"}]


def test_pending_release_is_reported_with_the_rollback_that_fixes_it():
    release = helm.parse_status(json.dumps(STATUS))
    with pytest.raises(UserError) as err:
        helm.check_not_pending(release, helm.parse_history(json.dumps(HISTORY)), "minikube")
    line = err.value.line()
    assert "stuck in pending-upgrade at revision 4" in line
    assert "helm rollback shop 3 --namespace shop-dev --kube-context minikube" in line
    assert err.value.exit_code == EXIT_BAD_INPUT


def test_pending_first_install_suggests_uninstall():
    release = helm.parse_status(json.dumps({**STATUS, "version": 1, "info": {"status": "pending-install"}}))
    with pytest.raises(UserError, match="stuck in pending-install") as err:
        helm.check_not_pending(release, [], None)
    assert "helm uninstall shop --namespace shop-dev" in err.value.line()


def test_deployed_release_is_not_pending():
    release = helm.parse_status(json.dumps({**STATUS, "info": {"status": "deployed"}}))
    helm.check_not_pending(release, [], None)


MANIFEST = """
---
apiVersion: v1
kind: Service
metadata: {name: shop-backend}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop-backend}
spec:
  template:
    spec:
      initContainers: [{name: wait, image: "moorage/api:abc"}]
      containers: [{name: api, image: "moorage/api:abc"}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: shop-postgresql, namespace: data}
spec:
  template:
    spec:
      containers: [{name: postgresql, image: "postgres:16.4"}]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: shop-test
  annotations: {helm.sh/hook: test}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: shop-backup}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: dump, image: "postgres:16.4"}]
"""


def test_waited_resources_skip_hooks_and_services():
    objects = helm.parse_manifest(MANIFEST)
    assert [(r.kind, r.name, r.namespace) for r in readiness.resources_in(objects, "shop-dev")] == [
        ("Deployment", "shop-backend", "shop-dev"), ("StatefulSet", "shop-postgresql", "data")]


def test_images_are_collected_from_every_pod_template():
    assert helm.images_in(helm.parse_manifest(MANIFEST)) == ["moorage/api:abc", "postgres:16.4"]


def test_schema_problems_name_each_rejected_key():
    stderr = ("Error: values don't meet the specifications of the schema(s) in the following chart(s):\n"
              "moorage:\n- at '/backend': additional properties 'replicas', 'size' not allowed\n"
              "- at '/backend/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'\n")
    assert helm.schema_problems(stderr) == [
        (("backend", "replicas"), "not allowed by the chart's values schema"),
        (("backend", "size"), "not allowed by the chart's values schema"),
        (("backend", "image", "pullPolicy"), "value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ]


def test_blame_names_the_last_file_that_sets_the_key(tmp_path):
    first, second = tmp_path / "values.yaml", tmp_path / "values-local.yaml"
    first.write_text("backend:\n  replicas: 1\n")
    second.write_text("backend:\n  image: {tag: x}\n")
    assert helm.blame(("backend", "replicas"), [first, second]) == first
    second.write_text("backend:\n  replicas: 2\n")
    assert helm.blame(("backend", "replicas"), [first, second]) == second
    assert helm.blame(("worker",), [first, second]) is None


def _project_with(tmp_path, images, chart_values=""):
    (tmp_path / "environments").mkdir(exist_ok=True)
    (tmp_path / "environments" / "dev.yaml").write_text("{}\n")
    (tmp_path / "chart").mkdir(exist_ok=True)
    (tmp_path / "chart" / "values.yaml").write_text(chart_values)
    return load_project({"release": "shop", "images": images}, tmp_path)


def test_an_image_can_be_a_single_repo_colon_tag_string(tmp_path):
    project = _project_with(tmp_path, [{"name": "api", "values_key": "api.image", "values_style": "string"}])
    assert helm.image_values(project, {"api": ("reg.io/api", "abc")}) == {"api": {"image": "reg.io/api:abc"}}


def test_an_image_can_carry_its_pull_policy(tmp_path):
    project = _project_with(tmp_path, [{"name": "api", "values_key": "images.api", "pull_policy": "Never"}])
    assert helm.image_values(project, {"api": ("api", "abc")}) == {
        "images": {"api": {"repository": "api", "tag": "abc", "pullPolicy": "Never"}}}


def test_a_list_index_keeps_the_rest_of_the_list_helm_would_replace(tmp_path):
    chart = "workers:\n  - name: fast\n    image: {repository: w, tag: old}\n    replicas: 2\n  - name: slow\n"
    project = _project_with(tmp_path, [{"name": "w", "values_key": "workers[0].image"}], chart)
    values = helm.image_values(project, {"w": ("w", "new")}, base={})
    assert values == {"workers": [{"name": "fast", "image": {"repository": "w", "tag": "new"}, "replicas": 2},
                                  {"name": "slow"}]}


def test_a_list_index_past_the_end_is_bad_input_naming_the_path(tmp_path):
    project = _project_with(tmp_path, [{"name": "w", "values_key": "workers[3].image"}], "workers: []\n")
    with pytest.raises(UserError, match=r"workers\[3\]\.image"):
        helm.image_values(project, {"w": ("w", "new")})
