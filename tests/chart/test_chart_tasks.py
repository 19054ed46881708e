"""`inv chart.lint` and `inv chart.template` as a user runs them on this repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.fixtures.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
INV = str(Path(sys.executable).with_name("inv"))


def inv(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    child = {**os.environ, **(env or {})}
    child.pop("MOORAGE_ENV", None)
    return subprocess.run([INV, *args], cwd=cwd, capture_output=True, text=True, env=child, timeout=300)


def test_chart_lint_passes_for_every_environment():
    require_tool("helm")
    result = inv("chart.lint")
    assert result.returncode == 0, result.stderr
    for env in ("dev", "staging", "prod"):
        assert f"chart lints cleanly with environments/{env}.yaml" in result.stdout


def test_chart_template_renders_without_revealing_secrets():
    require_tool("helm")
    result = inv("chart.template", "--env", "prod", env={"POSTGRES_PASSWORD": "real-secret-value-1"})
    assert result.returncode == 0, result.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc}
    assert {"Deployment", "Ingress", "HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds
    assert "real-secret-value-1" not in result.stdout


def test_chart_template_reports_values_the_schema_rejects(tmp_path):
    require_tool("helm")
    for name in ("tasks.py", "invoke.yaml"):
        (tmp_path / name).write_text((REPO / name).read_text())
    (tmp_path / "chart").symlink_to(REPO / "chart")
    (tmp_path / "environments").mkdir()
    for env in ("dev", "staging", "prod"):
        (tmp_path / "environments" / f"{env}.yaml").write_text((REPO / "environments" / f"{env}.yaml").read_text())
    (tmp_path / "environments" / "dev.yaml").write_text("backend:\n  replicaCount: lots\n")
    result = inv("chart.template", "--env", "dev", cwd=tmp_path)
    assert result.returncode == 2
    assert "the values were rejected by the chart" in result.stderr and "Traceback" not in result.stderr
    assert "fix environments/dev.yaml" in result.stderr


def test_chart_lint_names_the_rejected_key_and_its_file(tmp_path):
    require_tool("helm")
    for name in ("tasks.py", "invoke.yaml"):
        (tmp_path / name).write_text((REPO / name).read_text())
    (tmp_path / "chart").symlink_to(REPO / "chart")
    (tmp_path / "environments").mkdir()
    for env in ("dev", "staging", "prod"):
        (tmp_path / "environments" / f"{env}.yaml").write_text((REPO / "environments" / f"{env}.yaml").read_text())
    with open(tmp_path / "environments" / "staging.yaml", "a") as handle:
        handle.write("\nnotAKey: 1\n")
    result = inv("chart.lint", "--env", "staging", cwd=tmp_path)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "notAKey in environments/staging.yaml: not allowed by the chart's values schema" in line
    assert len(line.splitlines()) == 1 and "helm lint --strict" not in line
