"""Chart dependencies: which are missing or stale, and ``helm dependency build``."""

from __future__ import annotations

from pathlib import Path

from ..core import proc
from ..core.config import load_yaml
from ..core.errors import CommandFailed, UserError


def stale_dependencies(listing: str) -> list[str]:
    """The dependencies ``helm dependency list`` reports as not ready (missing, wrong version...)."""
    stale = []
    for line in listing.splitlines()[1:]:
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) >= 4 and cells[0] and cells[3] not in ("ok", "unpacked"):
            stale.append(f"{cells[0]} {cells[1]} ({cells[3]})")
    return stale


def declares_dependencies(chart: Path) -> bool:
    """Does the chart's Chart.yaml list dependencies (cheap: no YAML parse when it does not mention them)?"""
    path = chart / "Chart.yaml"
    if not path.is_file() or "dependencies:" not in path.read_text():
        return False
    return bool((load_yaml(path) or {}).get("dependencies"))


def missing_dependencies(chart: Path) -> list[str]:
    """Dependencies to build before rendering ``chart`` (none when it declares none)."""
    if not declares_dependencies(chart):
        return []
    listing = proc.run(["helm", "dependency", "list", str(chart)], timeout=60, what="helm dependency list").stdout
    return stale_dependencies(listing)


def build_dependencies(chart: Path) -> None:
    """``helm dependency build``: vendored archives and file:// charts work offline; Chart.lock is honoured."""
    try:
        proc.run(["helm", "dependency", "build", str(chart), "--skip-refresh"], timeout=600,
                 what="helm dependency build")
    except CommandFailed as exc:
        if "out of sync" in exc.stderr:
            raise UserError(f"{chart}/Chart.lock is out of sync with the dependencies in Chart.yaml",
                            f"run: helm dependency update {chart}") from None
        raise
