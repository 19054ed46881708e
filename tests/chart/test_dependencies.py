"""Chart dependencies are built when missing or stale, offline (file:// charts), with the real helm."""

from __future__ import annotations

import subprocess

import pytest

from moorage import helm
from moorage.core.errors import UserError
from tests.fixtures.tools import require_tool


def _charts(tmp_path):
    require_tool("helm")
    for name in ("sub", "top"):
        subprocess.run(["helm", "create", name], cwd=tmp_path, check=True, capture_output=True)
    with open(tmp_path / "top" / "Chart.yaml", "a") as handle:
        handle.write("dependencies:\n  - name: sub\n    version: 0.1.0\n    repository: file://../sub\n")
    return tmp_path / "top"


def test_a_missing_dependency_is_found_and_built(tmp_path):
    top = _charts(tmp_path)
    assert helm.missing_dependencies(top) == ["sub 0.1.0 (missing)"]
    helm.build_dependencies(top)
    assert helm.missing_dependencies(top) == []
    assert (top / "charts" / "sub-0.1.0.tgz").is_file()


def test_a_dependency_of_another_version_is_stale(tmp_path):
    top = _charts(tmp_path)
    helm.build_dependencies(top)
    for path, old, new in ((tmp_path / "sub" / "Chart.yaml", "version: 0.1.0", "version: 0.2.0"),
                           (top / "Chart.yaml", "    version: 0.1.0", "    version: 0.2.0")):
        path.write_text(path.read_text().replace(old, new, 1))
    assert helm.missing_dependencies(top) == ["sub 0.2.0 (wrong version)"]


def test_a_chart_without_dependencies_costs_no_helm_call(tmp_path, monkeypatch):
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: plain\nversion: 0.1.0\n")
    monkeypatch.setenv("PATH", "")  # no helm to call
    assert helm.missing_dependencies(tmp_path) == []


def test_a_lock_out_of_sync_is_one_line_saying_how_to_fix(tmp_path):
    top = _charts(tmp_path)
    helm.build_dependencies(top)
    (top / "Chart.yaml").write_text((top / "Chart.yaml").read_text().replace("file://../sub", "file://../sub/"))
    with pytest.raises(UserError, match="Chart.lock is out of sync") as err:
        helm.build_dependencies(top)
    assert "helm dependency update" in err.value.hint
