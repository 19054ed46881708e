"""The CI reports of a deploy, read back as CI systems read them (junitparser for JUnit XML)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from junitparser import Failure, JUnitXml

from moorage import ci_report
from moorage.core.errors import OperationFailed, UserError

DEPLOYED = {
    "environment": "staging", "namespace": "shop-staging", "release": "shop", "status": "deployed",
    "revision": 7, "rolled_back_to": None, "diagnostics": None, "failed_phase": None,
    "phases": {"preflight": 0.412, "build": 3.5, "deliver": 1.25, "helm": 2.0, "wait": 6.1, "smoke": 0.8},
    "smoke": [{"name": "api-live", "ok": True, "url": "http://127.0.0.1:4711/healthz", "detail": "200"},
              {"name": "home", "ok": True, "url": "http://127.0.0.1:4712/", "detail": "200"}],
}
FAILED = {**DEPLOYED, "status": "failed", "revision": 8, "rolled_back_to": 7, "failed_phase": "wait",
          "diagnostics": "/ci/.moorage/diagnostics/staging-1", "phases": {"preflight": 0.4, "helm": 2.0, "wait": 4.2},
          "smoke": []}
REASON = OperationFailed("release not ready: deployment/api: failed pod api-1 container api: CrashLoopBackOff",
                         hint="see the events and logs above")


def parse(tmp_path, text: str) -> JUnitXml:
    path = tmp_path / "deploy.xml"
    path.write_text(text)
    return JUnitXml.fromfile(str(path))


def test_a_deploy_is_a_suite_with_a_case_per_phase_and_smoke_check(tmp_path):
    xml = parse(tmp_path, ci_report.junit_xml(DEPLOYED, timestamp=datetime(2026, 12, 2, 1, 2, 3, tzinfo=UTC)))
    (suite,) = list(xml)
    assert suite.name == "moorage deploy staging"
    assert (suite.tests, suite.failures, suite.errors) == (8, 0, 0)
    assert {p.name: p.value for p in suite.properties()}["timestamp"] == "2026-12-02T01:02:03"
    cases = {case.name: case for case in suite}
    assert list(cases) == ["phase preflight", "phase build", "phase deliver", "phase helm", "phase wait",
                           "phase smoke", "smoke api-live", "smoke home"]
    assert cases["phase wait"].time == pytest.approx(6.1)
    assert cases["phase build"].classname == "moorage.deploy.staging"
    assert cases["smoke home"].classname == "moorage.deploy.staging.smoke"
    assert all(case.is_passed for case in suite)
    assert {p.name: p.value for p in suite.properties()}["revision"] == "7"


def test_the_phase_that_failed_carries_the_reason_the_fix_and_the_diagnostics(tmp_path):
    (suite,) = list(parse(tmp_path, ci_report.junit_xml(FAILED, REASON)))
    assert (suite.tests, suite.failures) == (3, 1)
    cases = {case.name: case for case in suite}
    (failure,) = cases["phase wait"].result
    assert isinstance(failure, Failure)
    assert failure.message == REASON.message and failure.type == "OperationFailed"
    assert failure.text.splitlines() == [REASON.message, "fix: see the events and logs above",
                                         "rolled back to revision 7",
                                         "diagnostics: /ci/.moorage/diagnostics/staging-1"]
    assert cases["phase helm"].is_passed


def test_a_failed_smoke_check_is_a_failed_case(tmp_path):
    summary = {**DEPLOYED, "smoke": [{"name": "home", "ok": False, "url": "http://127.0.0.1:4712/",
                                      "detail": "HTTP 502"}]}
    (suite,) = list(parse(tmp_path, ci_report.junit_xml(summary)))
    (failure,) = {case.name: case for case in suite}["smoke home"].result
    assert failure.message == "smoke check home failed: http://127.0.0.1:4712/ HTTP 502"


def test_a_deploy_refused_before_any_phase_is_one_failed_case(tmp_path):
    summary = {**DEPLOYED, "phases": {}, "smoke": [], "status": "failed"}
    (suite,) = list(parse(tmp_path, ci_report.junit_xml(summary, UserError("no registry for 'staging'"))))
    (case,) = list(suite)
    assert case.name == "deploy" and not case.is_passed


def test_markdown_summary_says_the_outcome_phases_and_checks():
    text = ci_report.markdown(DEPLOYED)
    assert text.startswith("### Deploy of `shop` to `staging` (namespace `shop-staging`): deployed, revision 7\n")
    assert "| wait | 6.1 s |" in text
    assert "| api-live | yes | http://127.0.0.1:4711/healthz 200 |" in text
    failed = ci_report.markdown(FAILED, REASON)
    assert ": failed, revision 8" in failed.splitlines()[0]
    assert "| wait (failed) | 4.2 s |" in failed
    assert "> rolled back to revision 7  " in failed


def test_the_annotation_is_one_escaped_workflow_command():
    line = ci_report.annotation(FAILED, OperationFailed("50% of pods: down\nsecond line"))
    assert "\n" not in line
    assert line.startswith("::error title=moorage deploy staging::50%25 of pods: down%0Asecond line%0A")


def test_publish_writes_what_the_environment_asks_for(tmp_path, capsys):
    step = tmp_path / "step-summary.md"
    step.write_text("earlier step\n")
    junit = tmp_path / "reports" / "deploy.xml"
    ci_report.publish(FAILED, REASON, junit=str(junit),
                      environ={"GITHUB_STEP_SUMMARY": str(step), "GITHUB_ACTIONS": "true"})
    assert step.read_text().startswith("earlier step\n### Deploy of `shop`"), "the job summary is appended to"
    assert parse(tmp_path, junit.read_text())
    assert capsys.readouterr().out.startswith("::error title=moorage deploy staging::release not ready")
    ci_report.publish(DEPLOYED, None, junit=None, environ={})
    assert capsys.readouterr().out == "", "outside GitHub Actions, no workflow command"


def test_a_report_that_cannot_be_written_is_said_and_does_not_raise(tmp_path):
    said = []
    blocker = tmp_path / "file"
    blocker.write_text("")
    ci_report.publish(DEPLOYED, None, junit=str(blocker / "deploy.xml"), environ={}, say=said.append)
    assert len(said) == 1 and said[0].startswith(f"warning: cannot write the JUnit report to {blocker}/deploy.xml")


def test_a_junit_path_that_is_a_directory_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        ci_report.check_path(str(tmp_path))
    ci_report.check_path(str(tmp_path / "new" / "deploy.xml"))
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file, not a directory"):
        ci_report.check_path(str(tmp_path / "file" / "reports" / "deploy.xml"))


@pytest.mark.parametrize("document", ["deployed", "failed phase", "failed smoke", "refused"])
def test_every_report_shape_is_valid_junit_xml_by_the_published_schema(tmp_path, junit_schema, document):
    summary, error = {
        "deployed": (DEPLOYED, None),
        "failed phase": (FAILED, REASON),
        "failed smoke": ({**DEPLOYED, "smoke": [{"name": "home", "ok": False, "url": "http://x/", "detail": "503"}]},
                         OperationFailed("smoke check home failed")),
        "refused": ({**FAILED, "phases": {}, "failed_phase": None}, UserError("bad <input> & \"quotes\"")),
    }[document]
    path = tmp_path / "deploy.xml"
    path.write_text(ci_report.junit_xml(summary, error))
    assert junit_schema(path) == 1
    broken = tmp_path / "broken.xml"
    broken.write_text(path.read_text().replace('<testcase classname', '<testcase when="now" classname', 1))
    with pytest.raises(Exception, match="when"):
        junit_schema(broken)
