"""APP_SECRET_KEY: never random, never read from the cluster, so that `helm template`, --dry-run, Argo CD and
Flux render the same manifests (and the same checksum/secret) every time. Outside dev it is required."""

from __future__ import annotations

import re

import pytest

from tests.chart.conftest import CHART, objects_of

pytestmark = pytest.mark.helm

NO_KEY = {"backend": {"secretKey": ""}}


def app_secret(objects: list[dict]) -> dict:
    (secret,) = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "moorage-app"]
    return secret["stringData"]


def backend_env(objects: list[dict]) -> dict:
    (backend,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "moorage-backend"]
    return {v["name"]: v for v in backend["spec"]["template"]["spec"]["containers"][0]["env"]}


def checksums(objects: list[dict]) -> dict:
    return {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
        for o in objects
        if o["kind"] == "Deployment" and "checksum/secret" in o["spec"]["template"]["metadata"].get("annotations", {})
    }


def test_dev_without_a_key_renders_the_same_manifests_twice(render_with):
    first, second = render_with("dev", NO_KEY), render_with("dev", NO_KEY)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout, "two renders differ: pods would roll on every sync"
    key = app_secret(objects_of(first))["APP_SECRET_KEY"]
    assert re.fullmatch(r"[0-9a-f]{64}", key), key
    assert checksums(objects_of(first)) == checksums(objects_of(second)) != {}


def test_dev_derived_key_differs_between_releases_and_namespaces(render_with):
    keys = {
        app_secret(objects_of(render_with("dev", NO_KEY, namespace=namespace)))["APP_SECRET_KEY"]
        for namespace in ("moorage-dev", "moorage-alice", "moorage-bob")
    }
    assert len(keys) == 3


def test_a_given_secret_key_wins_over_the_derived_dev_key(render_with):
    secret = app_secret(objects_of(render_with("dev", {"backend": {"secretKey": "from-dot-env-7c2a"}})))
    assert secret["APP_SECRET_KEY"] == "from-dot-env-7c2a"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_outside_dev_a_missing_secret_key_is_refused_naming_the_values(render_with, env):
    result = render_with(env, NO_KEY)
    assert result.returncode != 0, f"{env} rendered without APP_SECRET_KEY"
    assert "backend.secretKey is required" in result.stderr, result.stderr
    assert "backend.existingSecret" in result.stderr


def test_existing_secret_supplies_the_key_and_the_chart_secret_leaves_it_out(render_with):
    objects = objects_of(
        render_with(
            "staging", {"backend": {"secretKey": "", "existingSecret": "shared-app-key", "existingSecretKey": "key"}}
        )
    )
    assert "APP_SECRET_KEY" not in app_secret(objects)
    for workload in (o for o in objects if o["kind"] in {"Deployment", "Job"}):
        spec = workload["spec"]["template"]["spec"]
        for container in spec["containers"] + spec.get("initContainers", []):
            env = {v["name"]: v for v in container.get("env", [])}
            if "APP_SECRET_KEY" in env:
                ref = env["APP_SECRET_KEY"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "shared-app-key", "key": "key"}, workload["metadata"]["name"]
    assert "APP_SECRET_KEY" in backend_env(objects)


def test_production_refuses_the_derived_dev_key(render_with):
    result = render_with("prod", {"backend": {"devSecretKey": True}})
    assert result.returncode != 0
    assert "/backend/devSecretKey" in result.stderr, result.stderr


def test_template_guard_refuses_the_dev_key_in_production_even_without_the_schema(render_with, chart_without_schema):
    result = render_with("prod", {"backend": {"devSecretKey": True}}, chart=chart_without_schema)
    assert result.returncode != 0
    assert "requires backend.devSecretKey=false (global.production is true)" in result.stderr, result.stderr


def test_templates_never_consult_the_cluster_or_chance():
    """lookup finds nothing under `helm template`, --dry-run and GitOps renders; rand* differs on every render."""
    forbidden = re.compile(r"\b(lookup|randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|uuidv4|now)\b")
    offenders = [
        f"{path.relative_to(CHART)}: {{{{{action.strip()}}}}}"
        for path in (CHART / "templates").rglob("*")
        if path.is_file()
        for action in re.findall(r"\{\{(?!-?\s*/\*)(.*?)\}\}", path.read_text(), flags=re.S)
        if forbidden.search(action)
    ]
    assert not offenders, "\n".join(offenders)
