"""The project's own files: one walk of its tree that skips what no team writes by hand.

Hidden folders (``.git``, ``.venv``...), dependency and build folders
(:data:`SKIP_DIRS`) and anything deeper than :data:`MAX_DEPTH` levels are
skipped, so a walk of a large monorepo stays in milliseconds. ``inv init``
reads a repository with it, and the tasks find a file the configuration does
not name (the one ``alembic.ini``) the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

MAX_DEPTH = 6
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "venv", "site-packages", "vendor", "dist", "build", "target",
                       "bower_components", "coverage"})


def walk(root: Path) -> Iterator[tuple[Path, str, list[str]]]:
    """(folder, its path relative to ``root`` in POSIX form, its file names sorted), folders in sorted order."""
    base = len(root.parts)
    for current, dirs, files in os.walk(root):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                         and len(here.parts) - base < MAX_DEPTH)
        yield here, here.relative_to(root).as_posix(), sorted(files)


def named(root: Path, name: str) -> list[str]:
    """The project's files called ``name``, relative to ``root``, shallowest first."""
    found = [f"{rel}/{name}" if rel != "." else name for _, rel, files in walk(root) if name in files]
    return sorted(found, key=lambda p: (p.count("/"), p))
