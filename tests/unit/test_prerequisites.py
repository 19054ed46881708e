"""Prerequisites: what a deploy applies before Helm, read from configuration and manifests (no cluster)."""

import base64

import pytest

from moorage import prerequisites
from moorage.core.config import load_project, load_secrets
from moorage.core.errors import ConfigError

MANIFESTS = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: backend-config}
data: {LOG_LEVEL: info}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: frontend-config}
"""


def make(tmp_path, prereqs, env_prereqs=None):
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "dev.yaml").write_text("{}\n")
    (tmp_path / "k8s" / "manifests").mkdir(parents=True)
    (tmp_path / "k8s" / "manifests" / "configmaps.yaml").write_text(MANIFESTS)
    envs = {"dev": {"prerequisites": env_prereqs}} if env_prereqs else {}
    return load_project({"release": "shop", "prerequisites": prereqs, "environments": envs}, tmp_path)


def test_manifest_folders_and_env_secrets_make_the_objects(tmp_path):
    project = make(tmp_path, {"manifests": ["k8s/manifests"]},
                   {"secrets": [{"name": "app-secrets", "data": {"DATABASE_PASSWORD": "DB_PASSWORD"}}]})
    env = project.env("dev")
    objects = [o for _p, o in prerequisites.manifest_objects(env.prerequisites)]
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [("ConfigMap", "backend-config"),
                                                                      ("ConfigMap", "frontend-config")]
    (secret,) = prerequisites.secret_objects(env.prerequisites, {"DB_PASSWORD": "s3cr3t"})
    assert secret["metadata"]["name"] == "app-secrets"
    assert base64.b64decode(secret["data"]["DATABASE_PASSWORD"]) == b"s3cr3t"


def test_the_plan_names_objects_and_env_keys_never_values(tmp_path):
    project = make(tmp_path, {"manifests": ["k8s/manifests/configmaps.yaml"],
                              "secrets": [{"name": "app-secrets", "data": {"PW": "DB_PASSWORD"}}]})
    lines = prerequisites.plan_lines(project.env("dev"), project.root)
    assert lines == ["apply    ConfigMap/backend-config (from k8s/manifests/configmaps.yaml)",
                     "apply    ConfigMap/frontend-config (from k8s/manifests/configmaps.yaml)",
                     "apply    Secret/app-secrets from .env keys DB_PASSWORD"]


def test_a_secrets_env_key_is_required(tmp_path):
    project = make(tmp_path, {"secrets": [{"name": "app-secrets", "data": {"PW": "DB_PASSWORD"}}]})
    with pytest.raises(ConfigError, match="required secret DB_PASSWORD for environment 'dev' is missing"):
        load_secrets(project, project.env("dev"), environ={})


@pytest.mark.parametrize("prereqs, message", [
    ({"manifests": ["nope/"]}, r"moorage\.prerequisites\.manifests\[0\] .*nope/ does not exist"),
    ({"secrets": [{"name": "Bad_Name", "data": {"A": "B"}}]}, r"secrets\[0\]\.name .* must be a Kubernetes object"),
    ({"secrets": [{"name": "ok", "data": {}}]}, r"secrets\[0\]\.data .* must be a mapping of Secret key"),
    ({"apply": []}, r"unknown key moorage\.prerequisites\.apply"),
])
def test_bad_prerequisites_are_one_line_naming_the_key(tmp_path, prereqs, message):
    with pytest.raises(ConfigError, match=message):
        make(tmp_path, prereqs)


def test_a_document_that_is_not_an_object_names_the_file(tmp_path):
    project = make(tmp_path, {"manifests": ["k8s/manifests"]})
    (tmp_path / "k8s" / "manifests" / "zz.yaml").write_text("just: a mapping\n")
    with pytest.raises(ConfigError, match=r"zz\.yaml: document 1 is not a Kubernetes object"):
        prerequisites.manifest_objects(project.env("dev").prerequisites)
