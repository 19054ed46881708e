"""values.yaml, values.schema.json and the environment files: documented, consistent, and bad values
rejected with a message naming the problem."""

from __future__ import annotations

import json
import re
import shutil

import jsonschema
import pytest
import yaml

from tests.chart.conftest import CHART, ENVIRONMENTS, env_file, run_helm, template, values_args

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z][A-Za-z0-9]*):")


def merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def test_every_value_is_documented_by_a_comment_starting_with_its_name():
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if not match:
            continue
        comment = []
        for previous in reversed(lines[:number]):
            if not previous.strip().startswith("#"):
                break
            comment.insert(0, previous.strip())
        if not comment or not comment[0].startswith(f"# {match['key']}"):
            undocumented.append(f"values.yaml:{number + 1}: {match['key']}")
    assert not undocumented, "\n".join(undocumented)


def test_values_keys_are_camel_case():
    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if "/" not in key and "." not in key:  # label keys under matchLabels are free-form
                    assert re.fullmatch(r"[a-z][A-Za-z0-9]*", key), f"{path}{key} is not camelCase"
                    walk(value, f"{path}{key}.")

    walk(VALUES, "")


def test_chart_defaults_match_the_schema():
    jsonschema.validate(VALUES, SCHEMA)


def test_schema_describes_every_default_value():
    def walk(node, schema, path):
        for key, value in node.items():
            props = schema.get("properties", {})
            if schema.get("additionalProperties") is False:
                assert key in props, f"{path}{key} is in values.yaml but not in values.schema.json"
            sub = props.get(key, {})
            if "$ref" in sub:
                continue
            if isinstance(value, dict) and sub.get("properties"):
                walk(value, sub, f"{path}{key}.")

    walk(VALUES, SCHEMA, "")
    assert SCHEMA["additionalProperties"] is False


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_merged_over_defaults_matches_the_schema(env):
    jsonschema.validate(merge(VALUES, yaml.safe_load(env_file(env).read_text())), SCHEMA)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_files_hold_no_image_tags_or_secrets(env):
    values = yaml.safe_load(env_file(env).read_text())
    for component in ("backend", "worker", "frontend"):
        assert "tag" not in values.get(component, {}).get("image", {}), f"{env}: {component}.image.tag"
    assert "password" not in values.get("postgresql", {}).get("auth", {})
    assert "password" not in values.get("redis", {}).get("auth", {})
    assert "password" not in values.get("externalDatabase", {})
    assert "secretKey" not in values.get("backend", {})


BAD_VALUES = {
    "wrong type": ("dev", {"backend": {"replicaCount": "three"}}, "/backend/replicaCount"),
    "unknown top-level key": ("dev", {"replicas": 3}, "'replicas' not allowed"),
    "latest image tag": ("dev", {"frontend": {"image": {"tag": "latest"}}}, "/frontend/image/tag"),
    "root user": ("dev", {"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
    "prod without external db host": ("prod", {"externalDatabase": {"host": ""}}, "/externalDatabase/host"),
    "prod with in-chart postgresql": ("prod", {"postgresql": {"enabled": True}}, "/postgresql/enabled"),
    "prod without tls": ("prod", {"ingress": {"tls": []}}, "/ingress/tls"),
    "prod without ingress": ("prod", {"ingress": {"enabled": False}}, "/ingress/enabled"),
}


@pytest.mark.helm
@pytest.mark.parametrize("case", BAD_VALUES, ids=list(BAD_VALUES))
def test_bad_values_are_rejected_with_a_message_naming_them(helm, generated_values, tmp_path, case):
    env, override, expected = BAD_VALUES[case]
    assert env in ENVIRONMENTS, f"environments/{env}.yaml is part of the project"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(override))
    result = template(helm, env, generated_values, bad)
    assert result.returncode != 0, f"{case} was accepted"
    assert expected in result.stderr, result.stderr


@pytest.mark.helm
@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("images", "backend.image.tag is required"),
        ("secrets", "postgresql.auth.password is required"),
    ],
)
def test_missing_generated_values_fail_with_a_required_message(helm, generated_values, missing, expected):
    images, secrets = generated_values
    kept = [secrets] if missing == "images" else [images]
    result = template(helm, "dev", kept)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


@pytest.mark.helm
def test_template_guard_names_the_prod_problem_even_without_the_schema(helm, generated_values, tmp_path):
    """The templates repeat the prod rules, so a chart packaged without its schema still refuses."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"ingress": {"tls": []}}))
    result = run_helm(helm, "template", "moorage", str(chart), *values_args("prod", generated_values, bad))
    assert result.returncode != 0
    assert "global.environment=prod requires ingress.enabled=true with a non-empty ingress.tls" in result.stderr
