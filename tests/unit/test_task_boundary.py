"""The task boundary: one clean line and the right exit code, tracebacks only with --debug."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Config, Context, Exit, MockContext

from moorage.core.errors import UserError
from moorage.tasks._boundary import confirm, mtask
from tests.fixtures.tools import IN_CI

ROOT = Path(__file__).resolve().parents[2]
INV = [sys.executable, "-m", "invoke"]


def run_inv(*args, cwd=ROOT, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    full_env.pop("MOORAGE_ENV", None)
    return subprocess.run([*INV, *args], cwd=cwd, capture_output=True, text=True, env=full_env, timeout=60)


def write_project(tmp_path: Path, config: str) -> Path:
    (tmp_path / "tasks.py").write_text((ROOT / "tasks.py").read_text())
    (tmp_path / "invoke.yaml").write_text(config)
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "dev.yaml").write_text("{}\n")
    return tmp_path


def test_list_shows_the_namespaces():
    result = run_inv("--list")
    assert result.returncode == 0, result.stderr
    for name in ("doctor",):
        assert name in result.stdout


def test_unknown_environment_is_one_line_exit_2():
    result = run_inv("doctor", "--env", "nope", "--skip-cluster")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: unknown environment 'nope' (known: dev, prod, staging)")
    assert "Traceback" not in result.stderr


def test_bad_config_type_is_one_line_naming_the_key(tmp_path):
    project = write_project(tmp_path, "moorage:\n  environments:\n    dev:\n      timeout: soon\n")
    result = run_inv("doctor", "--skip-cluster", cwd=project)
    assert result.returncode == 2
    assert "moorage.environments.dev.timeout" in result.stderr and str(project / "invoke.yaml") in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    project = write_project(tmp_path, "moorage:\n  release: 7\n")
    result = run_inv("--debug", "doctor", "--skip-cluster", cwd=project)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


@mtask
def _fails(ctx):
    raise UserError("bad flag", "use a good one")


@mtask
def _interrupted(ctx):
    raise KeyboardInterrupt


def test_boundary_turns_errors_into_exit_codes(capsys):
    with pytest.raises(Exit) as exc:
        _fails(MockContext())
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == "error: bad flag (fix: use a good one)"


def test_ctrl_c_says_what_state_things_are_in(capsys):
    with pytest.raises(Exit) as exc:
        _interrupted(MockContext())
    assert exc.value.code == 130
    assert "interrupted" in capsys.readouterr().err


def test_confirm_refuses_without_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(UserError) as err:
        confirm("restore prod?", yes=False)
    assert "re-run with --yes" in err.value.line()
    confirm("restore prod?", yes=True)


def test_doctor_task_reports_tools_as_json(capsys):
    from moorage.tasks.doctor import doctor

    ctx = Context(Config(overrides={"moorage": {"root": str(ROOT)}}))
    code = 0
    try:
        doctor(ctx, env="dev", json=True, skip_cluster=True)
    except Exit as exc:
        code = exc.code
    import json

    report = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in report["checks"]]
    assert names[:3] == ["python", "docker", "helm"]
    assert report["ok"] == all(c["ok"] for c in report["checks"])
    assert code == (0 if report["ok"] else 1), "the exit code follows the checks"
    if IN_CI:  # CI installs every tool: nothing may be missing there
        assert report["ok"], report["checks"]


def test_malformed_invoke_yaml_is_one_line_naming_file_and_line(tmp_path):
    write_project(tmp_path, "moorage:\n  release: shop\n   images: [\n")
    result = run_inv("--list", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert f"malformed YAML in {tmp_path / 'invoke.yaml'}:3" in result.stderr and "Traceback" not in result.stderr


def test_a_fixed_invoke_yaml_is_parsed_again(tmp_path):
    write_project(tmp_path, "moorage:\n  release: shop\n")
    assert run_inv("--list", cwd=tmp_path).returncode == 0
    (tmp_path / "invoke.yaml").write_text("moorage: [\n")
    assert run_inv("--list", cwd=tmp_path).returncode == 2, "a changed file is not trusted from its stamp"


def test_env_file_that_is_not_utf8_is_one_line(tmp_path):
    write_project(tmp_path, "moorage:\n  release: shop\n  secrets: {KEY: backend.secretKey}\n")
    (tmp_path / ".env").write_bytes(b"KEY=caf\xe9\n")
    result = run_inv("dev.deploy", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert ".env is not UTF-8 text (byte 0xe9 at offset 7)" in result.stderr and "Traceback" not in result.stderr
