"""Deploy phases that need no cluster: which diagnostics bundle a failed wait reports."""

from pathlib import Path

import pytest

from moorage import deploy, plan
from moorage.core.config import load_project
from moorage.core.errors import OperationFailed
from moorage.core.report import Reporter


@pytest.fixture
def run(tmp_path):
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "dev.yaml").write_text("{}\n")
    project = load_project({"release": "shop"}, tmp_path)
    env = project.env("dev")
    decided = plan.decide(environment="dev", namespace=env.namespace, context="ctx", cluster="kind",
                          delivery="kind-load", images=[], release=plan.ReleaseState(1, "deployed", "d"),
                          digest="d")
    return deploy.Run(project, env, deploy.Options(), Reporter(), deploy.Summary("dev", env.namespace, "shop"),
                      decided=decided)


def test_a_wait_that_failed_before_writing_a_bundle_reports_none(run, monkeypatch):
    older = run.project.diagnostics_dir / "dev-20200101T000000.000000Z"
    older.mkdir(parents=True)

    def fails(cluster, reporter, *, out_dir: Path | None = None):
        raise OperationFailed("the API server went away")

    monkeypatch.setattr(deploy, "wait_release", fails)
    with pytest.raises(OperationFailed):
        deploy.wait(run)
    assert run.summary.diagnostics is None, "an earlier run's bundle is not this run's"


def test_a_wait_that_wrote_its_bundle_reports_that_one(run, monkeypatch):
    def fails_with_bundle(cluster, reporter, *, out_dir: Path | None = None):
        out_dir.mkdir(parents=True)
        raise OperationFailed("deployment/shop-backend: CrashLoopBackOff")

    monkeypatch.setattr(deploy, "wait_release", fails_with_bundle)
    with pytest.raises(OperationFailed):
        deploy.wait(run)
    assert run.summary.diagnostics and Path(run.summary.diagnostics).is_dir()
    assert Path(run.summary.diagnostics).parent == run.project.diagnostics_dir
