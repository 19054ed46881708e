"""The one subprocess helper: redaction, timeouts, clean errors."""

import logging
import sys

import pytest

from moorage.core import proc
from moorage.core.errors import EXIT_BAD_INPUT, CommandFailed, ToolMissing


def test_secrets_are_redacted_in_logs_and_errors(caplog):
    secret = "s3cr3t-value"
    caplog.set_level(logging.DEBUG, logger="moorage.core.proc")
    script = f"import sys; print('password is {secret}', file=sys.stderr); sys.exit(3)"
    with pytest.raises(CommandFailed) as err:
        proc.run([sys.executable, "-c", script], secrets=[secret], what="probe")
    assert secret not in err.value.line()
    assert secret not in err.value.stderr
    assert proc.MASK in err.value.stderr
    assert err.value.returncode == 3
    assert "probe failed (exit 3)" in err.value.line()
    assert secret not in caplog.text and proc.MASK in caplog.text


def test_longest_secret_is_masked_whole():
    assert proc.redact("abc abcdef", ["abc", "abcdef"]) == f"{proc.MASK} {proc.MASK}"


def test_missing_tool_is_bad_input_with_a_hint():
    with pytest.raises(ToolMissing) as err:
        proc.run(["moorage-no-such-tool", "x"])
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "'moorage-no-such-tool' is not installed" in err.value.line()


def test_timeout_raises_command_failed():
    with pytest.raises(CommandFailed, match="did not finish within 0.2s"):
        proc.run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2)


def test_output_is_returned_and_env_is_passed():
    result = proc.run([sys.executable, "-c", "import os; print(os.environ['MOORAGE_T'])"], env={"MOORAGE_T": "x1"})
    assert result.stdout.strip() == "x1" and result.returncode == 0


def test_stderr_tail_stays_on_one_line():
    script = "import sys; [print(f'line{i}', file=sys.stderr) for i in range(40)]; sys.exit(1)"
    with pytest.raises(CommandFailed) as err:
        proc.run([sys.executable, "-c", script])
    assert "\n" not in err.value.line()
    assert "line39" in err.value.line() and "line5 " not in err.value.line()


SHIELD_SCRIPT = r"""
import sys
from moorage.core import proc
from moorage.core.errors import Interrupted
marker, ready = sys.argv[1], sys.argv[2]
child = (f"import time, pathlib; pathlib.Path({ready!r}).write_text('started'); "
         f"time.sleep(1.0); pathlib.Path({marker!r}).write_text('finished')")
try:
    proc.run([sys.executable, "-c", child], shield=True, timeout=30)
except Interrupted as exc:
    print("INTERRUPTED", exc.message)
"""


def test_shielded_command_finishes_its_step_on_ctrl_c(tmp_path):
    import os
    import signal
    import subprocess

    marker, ready = tmp_path / "marker", tmp_path / "ready"
    os.mkfifo(ready)
    script = subprocess.Popen([sys.executable, "-c", SHIELD_SCRIPT, str(marker), str(ready)], stdout=subprocess.PIPE,
                              text=True, start_new_session=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert ready.read_text() == "started"  # blocks until the child is running its step
    os.killpg(script.pid, signal.SIGINT)  # what a terminal's Ctrl-C does to the foreground group
    out, _ = script.communicate(timeout=30)
    assert marker.read_text() == "finished"
    assert out.startswith("INTERRUPTED") and "allowed to finish its step" in out


def test_a_failed_command_keeps_a_few_lines_and_leaves_its_whole_output_in_a_log(tmp_path):
    secret = "hunter2-secret"
    script = ("import sys\nfor i in range(50): print(f'line{i}', file=sys.stderr)\n"
              f"print('token {secret}', file=sys.stderr); sys.exit(4)")
    proc.set_log_dir(tmp_path / "logs")
    try:
        with pytest.raises(CommandFailed) as err:
            proc.run([sys.executable, "-c", script], secrets=[secret], what="noisy step")
    finally:
        proc.set_log_dir(None)
    line = err.value.line()
    assert "line49" in line and "line46" not in line, "the message keeps the last few lines"
    logs = list((tmp_path / "logs").glob("*-noisy-step-*.log"))
    assert len(logs) == 1 and f"(full output: {logs[0]})" in line
    text = logs[0].read_text()
    assert "line0\n" in text and "line49" in text and secret not in text and proc.MASK in text
    assert oct(logs[0].stat().st_mode & 0o777) == "0o600"
