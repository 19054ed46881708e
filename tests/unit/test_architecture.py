"""The floors of docs/ARCHITECTURE.md hold: no upward or sideways import in src/moorage."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_floors_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_module_is_a_grab_bag():
    """No module over ~500 lines: a module that grows past it is doing several jobs."""
    big = {p.relative_to(ROOT).as_posix(): n for p in (ROOT / "src" / "moorage").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 520}
    assert big == {}
