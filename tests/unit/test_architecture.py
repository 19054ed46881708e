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


def test_long_functions_say_why():
    """A function over ~60 lines carries a `# long: <reason>` comment on the line above its def."""
    import ast

    unexplained = []
    for path in (ROOT / "src" / "moorage").rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - node.lineno + 1 > 65 and "# long:" not in lines[start - 2]:
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert unexplained == []
