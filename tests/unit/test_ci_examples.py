"""The example pipelines in examples/ci/ are valid for their CI systems (the official schemas, which
check-jsonschema ships: no network) and call the tasks the way the README says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"
SCHEMAS = {"github-actions.yml": "vendor.github-workflows", "gitlab-ci.yml": "vendor.gitlab-ci"}
CHECK = str(Path(sys.executable).with_name("check-jsonschema"))


def validate(path: Path, schema: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHECK, "--builtin-schema", schema, str(path)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_example_is_valid_for_its_ci_system(name):
    result = validate(EXAMPLES / name, SCHEMAS[name])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("name", "break_it"), [
    ("github-actions.yml", lambda doc: doc["jobs"]["staging"].pop("runs-on")),
    ("gitlab-ci.yml", lambda doc: doc["deploy-staging"].update(when="sometimes")),
])
def test_a_broken_copy_is_rejected(tmp_path, name, break_it):
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    break_it(doc)
    broken = tmp_path / name
    broken.write_text(yaml.safe_dump(doc))
    assert validate(broken, SCHEMAS[name]).returncode == 1


def scripts(name: str) -> str:
    return (EXAMPLES / name).read_text()


def test_github_deploys_staging_then_production_behind_its_environment_and_keeps_the_reports():
    doc = yaml.safe_load(scripts("github-actions.yml"))
    staging, production = doc["jobs"]["staging"], doc["jobs"]["production"]
    assert production["needs"] == "staging" and production["environment"] == "production"
    runs = {job: [s.get("run", "") for s in doc["jobs"][job]["steps"]] for job in doc["jobs"]}
    assert "inv deploy --env staging --junit reports/deploy-staging.xml" in runs["staging"]
    assert "inv deploy --env prod --yes --junit reports/deploy-prod.xml" in runs["production"]
    for job in (staging, production):
        upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
        assert upload["if"] == "always()" and {"reports/", ".moorage/diagnostics/"} <= set(upload["with"]["path"].split())
        assert job["env"]["CI"] == "true"


def test_gitlab_deploys_staging_then_production_by_hand_and_reads_the_junit_reports():
    doc = yaml.safe_load(scripts("gitlab-ci.yml"))
    staging, production = doc["deploy-staging"], doc["deploy-production"]
    assert staging["script"] == ["inv deploy --env staging --junit reports/deploy-staging.xml"]
    assert production["script"] == ["inv deploy --env prod --yes --junit reports/deploy-prod.xml"]
    assert production["needs"] == ["deploy-staging"] and production["rules"][0]["when"] == "manual"
    for job in (staging, production):
        assert job["artifacts"]["when"] == "always" and job["artifacts"]["reports"]["junit"] == "reports/*.xml"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_no_secret_is_put_on_a_command_line(name):
    text = scripts(name)
    assert "--password" not in text and "-p $" not in text and "docker login" not in text
    # the registry credentials reach Moorage as environment variables only (it hands them to the
    # engine in an API header and to the cluster in a Secret)
    mentions = [line.strip() for line in text.splitlines()
                if "REGISTRY_PASSWORD" in line and not line.lstrip().startswith("#")]
    assert mentions and all(line.startswith("REGISTRY_PASSWORD: ") for line in mentions), mentions
