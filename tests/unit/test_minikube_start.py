"""dev.deploy starts minikube when the environment asks for it and the profile is not running."""

import os
import stat
from pathlib import Path

import pytest

from moorage.cluster import ensure_minikube
from moorage.core.config import Environment
from moorage.core.report import Reporter


@pytest.fixture
def minikube(tmp_path, monkeypatch):
    """A stand-in `minikube` that answers `status` from a file and records every call."""
    state, calls = tmp_path / "state", tmp_path / "calls"
    state.write_text("Stopped")
    script = tmp_path / "bin" / "minikube"
    script.parent.mkdir()
    script.write_text(f"""#!/bin/sh
echo "$*" >> {calls}
case "$1 $3" in
  "-p status") cat {state} ;;
  "start "*) echo Running > {state} ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return state, calls


def env(start: bool = True, cluster: str = "auto") -> Environment:
    return Environment(name="dev", values_files=(Path("environments/dev.yaml"),), namespace="ns",
                       cluster=cluster, start_minikube=start)


def reporter() -> Reporter:
    import io

    return Reporter(stream=io.StringIO(), tty=False)


def test_a_stopped_minikube_is_started(minikube):
    state, calls = minikube
    ensure_minikube(env(), "minikube", dry_run=False, reporter=reporter())
    assert calls.read_text().splitlines() == ["-p minikube status --format {{.APIServer}}", "start -p minikube"]
    assert state.read_text().strip() == "Running"


def test_a_running_minikube_is_left_alone(minikube):
    state, calls = minikube
    state.write_text("Running")
    ensure_minikube(env(), "minikube", dry_run=False, reporter=reporter())
    assert calls.read_text().splitlines() == ["-p minikube status --format {{.APIServer}}"]


def test_dry_run_only_says_it_would_start(minikube):
    _, calls = minikube
    out = reporter()
    ensure_minikube(env(), "minikube", dry_run=True, reporter=out)
    assert "start -p minikube" not in calls.read_text()
    assert "would start minikube profile 'minikube'" in out.stream.getvalue()


@pytest.mark.parametrize("start, context", [(False, "minikube"), (True, "kind-dev")])
def test_nothing_happens_unless_configured_for_minikube(minikube, start, context):
    _, calls = minikube
    ensure_minikube(env(start=start), context, dry_run=False, reporter=reporter())
    assert not calls.exists()
