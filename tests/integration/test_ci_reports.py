"""`inv deploy --junit` and GitHub's job summary and annotations, end to end against the fake cluster
(real Docker builds, real chart rendering, the real client watching: tests/integration/test_dev_deploy.py)."""

from __future__ import annotations

import json

import pytest
from junitparser import JUnitXml

from tests.integration.test_dev_deploy import project  # noqa: F401 - the fixture

pytestmark = [pytest.mark.docker, pytest.mark.helm]


def test_a_ci_deploy_writes_its_junit_report_and_the_job_summary(project, tmp_path, junit_schema):  # noqa: F811
    junit, step = tmp_path / "reports" / "deploy.xml", tmp_path / "summary.md"
    result = project.inv("deploy", "--env", "staging", "--json", "--junit", str(junit),
                         env={"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(step)})
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert junit_schema(junit) == 1
    (suite,) = list(JUnitXml.fromfile(str(junit)))
    names = [case.name for case in suite]
    # (the JSON summary's keys are sorted; the report keeps the phases in the order they ran)
    assert names[:len(summary["phases"])] == [f"phase {p}" for p in ("preflight", "build", "deliver", "helm",
                                                                     "wait", "smoke") if p in summary["phases"]]
    assert [n for n in names if n.startswith("smoke ")] == [f"smoke {c['name']}" for c in summary["smoke"]]
    assert suite.failures == 0 and all(case.is_passed for case in suite)
    assert step.read_text().startswith(f"### Deploy of `{project.release}` to `staging`")
    assert f": deployed, revision {summary['revision']}" in step.read_text()


def test_a_failed_ci_deploy_reports_the_failing_phase_and_annotates_the_run(project, tmp_path,  # noqa: F811
                                                                             postgres_database, junit_schema):
    from tests.fixtures.servers import alembic

    alembic("upgrade", "head", database_url=postgres_database.url)
    env = {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
           "DATABASE_URL": postgres_database.url}
    assert project.inv("deploy", "--env", "staging", "--json", env=env).returncode == 0
    project.cluster.controller.behaviour["backend"] = "crashloop"
    (project.root / "backend" / "main.txt").write_text("backend v2 (broken)\n")
    junit = tmp_path / "deploy.xml"
    result = project.inv("deploy", "--env", "staging", "--junit", str(junit), env=env)
    assert result.returncode == 1, result.stderr
    assert junit_schema(junit) == 1
    (suite,) = list(JUnitXml.fromfile(str(junit)))
    failed = [case for case in suite if not case.is_passed]
    assert [case.name for case in failed] == ["phase wait"]
    (failure,) = failed[0].result
    assert "CrashLoopBackOff" in failure.message and "rolled back to revision 1" in failure.text
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    assert len(annotations) == 1 and "CrashLoopBackOff" in annotations[0]
    assert "| wait (failed) |" in (tmp_path / "summary.md").read_text()


def test_an_unwritable_junit_path_is_refused_before_anything_is_built(project, tmp_path):  # noqa: F811
    result = project.inv("deploy", "--env", "staging", "--junit", str(tmp_path), env={"CI": "true"})
    assert result.returncode == 2
    assert f"--junit {tmp_path} is a directory" in result.stderr
    assert project.cluster.helm_calls("upgrade") == []
