"""The registry settings of an environment, the pull Secret made from them, and the pushed-bytes count."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from moorage import helm, prerequisites
from moorage.cluster import registry
from moorage.core.config import Environment
from moorage.core.errors import ConfigError
from moorage.core.registry_settings import RegistryAccess
from moorage.core.registry_settings import registry as parse


def test_a_plain_address_has_no_credentials_and_no_pull_secret(tmp_path):
    url, access = parse("registry.example.com/shop/", "moorage.environments.staging.registry", "invoke.yaml",
                        tmp_path, "shop")
    assert url == "registry.example.com/shop" and access == RegistryAccess()


def test_a_mapping_names_env_keys_and_defaults_the_pull_secret_to_the_release(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    url, access = parse({"url": "r.example:5000/shop", "ca": "ca.pem", "username": "RU", "password": "RP"},
                        "w", "invoke.yaml", tmp_path, "shop")
    assert url == "r.example:5000/shop" and access.ca == tmp_path / "ca.pem"
    assert access.env_keys == ("RU", "RP") and access.pull_secret == "shop-registry"
    assert access.values_key == "imagePullSecrets"


@pytest.mark.parametrize(("raw", "message"), [
    ({"url": "r/x", "username": "RU"}, "names only one of username and password"),
    ({"url": "r/x", "ca": "missing.pem"}, "w.ca in invoke.yaml: missing.pem does not exist"),
    ({"url": "r/x", "token": "T"}, "unknown key w.token"),
    ({"username": "RU", "password": "RP"}, "w.url is missing"),
])
def test_bad_registry_settings_are_one_line_naming_the_key(tmp_path, raw, message):
    with pytest.raises(ConfigError) as caught:
        parse(raw, "w", "invoke.yaml", tmp_path, "shop")
    assert message in caught.value.message


def _env(**access) -> Environment:
    return Environment("staging", (Path("v.yaml"),), "ns", registry="r.example:5000/shop",
                       registry_access=RegistryAccess(username_key="RU", password_key="RP", **access))


def test_the_pull_secret_holds_the_credentials_for_the_registry_host_only_in_its_data():
    obj = prerequisites.pull_secret_object(_env(pull_secret="shop-registry"), {"RU": "ci", "RP": "s3cret"})
    assert obj["type"] == "kubernetes.io/dockerconfigjson" and obj["metadata"]["name"] == "shop-registry"
    auths = json.loads(base64.b64decode(obj["data"][".dockerconfigjson"]))["auths"]
    assert list(auths) == ["r.example:5000"]
    assert base64.b64decode(auths["r.example:5000"]["auth"]).decode() == "ci:s3cret"
    lines = prerequisites.plan_lines(_env(pull_secret="shop-registry"), Path("/"))
    assert lines == ["apply    Secret/shop-registry (registry r.example:5000) from .env keys RU, RP"]


def test_the_chart_gets_the_pull_secret_at_the_configured_key_or_not_at_all():
    assert helm.pull_secret_values(_env(pull_secret="p")) == {"imagePullSecrets": [{"name": "p"}]}
    assert helm.pull_secret_values(_env(pull_secret="p", values_key="global.pullSecrets")) == \
        {"global": {"pullSecrets": [{"name": "p"}]}}
    assert helm.pull_secret_values(_env(pull_secret="p", values_key="")) == {}


def test_pushed_bytes_count_the_layers_the_engine_uploaded_by_their_short_diff_ids():
    manifest = registry.Manifest("sha256:m", "sha256:c", (1000, 20, 3))
    diff_ids = ["sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64]
    assert registry.pushed_bytes(manifest, diff_ids, {"b" * 12, "c" * 12}) == 23
    assert registry.pushed_bytes(manifest, diff_ids, set()) == 0


def test_a_tag_with_other_content_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "manifests", lambda refs, **kw: {r: registry.Manifest("sha256:m", "sha256:other")
                                                                     for r in refs})
    with pytest.raises(Exception, match="exists in the registry with other content"):
        registry.lookup(["r:5000/shop/app:t1"], {"r:5000/shop/app:t1": "sha256:mine"})
    assert registry.lookup(["r:5000/shop/app:t1"], {}) == {"r:5000/shop/app:t1": "sha256:m"}


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1:5000", True), ("localhost:5000", True),
                                               ("[::1]:5000", True), ("registry.example.com", False),
                                               ("10.0.0.5:5000", False)])
def test_loopback_hosts(host, loopback):
    assert registry._loopback(host) is loopback


def test_a_pinned_image_takes_the_charts_digest_key_where_it_has_one_else_tag_at_digest(tmp_path):
    from moorage.core.config import Image, Project

    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "values.yaml").write_text("api:\n  image: {repository: x, tag: '1', digest: ''}\nweb:\n  image: {repository: y}\n")
    project = Project(root=tmp_path, release="shop", chart=chart, environments_dir=tmp_path, backups_dir=tmp_path,
                      diagnostics_dir=tmp_path, images=(Image("api", "Dockerfile"), Image("web", "Dockerfile"),
                                                        Image("cli", "Dockerfile", values_key="cli",
                                                              values_style="string")),
                      secrets={}, environments={}, default_env="dev")
    refs = {"api": ("r/shop/api", "t1"), "web": ("r/shop/web", "t2"), "cli": ("r/shop/cli", "t3")}
    values = helm.image_values(project, refs, {}, {"api": "sha256:a", "web": "sha256:w", "cli": "sha256:c"})
    assert values["api"]["image"] == {"repository": "r/shop/api", "tag": "t1", "digest": "sha256:a"}
    assert values["web"]["image"] == {"repository": "r/shop/web", "tag": "t2@sha256:w"}
    assert values["cli"] == "r/shop/cli:t3@sha256:c"
    assert helm.image_values(project, refs)["api"]["image"] == {"repository": "r/shop/api", "tag": "t1"}


def test_push_says_whether_a_local_cluster_pulls_from_the_registry(tmp_path):
    _, access = parse({"url": "r/x", "push": True}, "w", "invoke.yaml", tmp_path, "shop")
    assert access.push is True
    assert parse({"url": "r/x"}, "w", "invoke.yaml", tmp_path, "shop")[1].push is False
    with pytest.raises(ConfigError, match="w.push in invoke.yaml must be true or false"):
        parse({"url": "r/x", "push": "yes"}, "w", "invoke.yaml", tmp_path, "shop")


def test_the_watch_finds_containers_running_an_image_pinned_by_digest(monkeypatch):
    from moorage.watch import live

    def pod(name, image):
        return {"metadata": {"name": name, "uid": name}, "status": {"phase": "Running", "containerStatuses": [
            {"name": "app", "state": {"running": {}}, "restartCount": 0}]},
            "spec": {"containers": [{"name": "app", "image": image}]}}

    pods = [pod("a", "r:5000/shop/api@sha256:d1"), pod("b", "r:5000/shop/api:t1@sha256:d1"),
            pod("c", "r:5000/shop/api:t1"), pod("d", "r:5000/shop/api@sha256:other")]
    monkeypatch.setattr(live.kube, "list_pods", lambda api, namespace, selector: pods)
    assert [t.pod for t in live.targets(None, "ns", "r:5000/shop/api:t1", "sha256:d1")] == ["a", "b", "c"]
    assert [t.pod for t in live.targets(None, "ns", "r:5000/shop/api:t1")] == ["c"]
