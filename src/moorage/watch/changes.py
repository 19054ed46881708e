"""What changed and what to do about it (pure): snapshots of the images' inputs, their differences,
and which changes the sync rules cover.

A snapshot maps each input file of an image (its build context as Docker would
receive it, ``.dockerignore`` applied, and its Dockerfile) to its kind, mode and
content digest, by path relative to the project. Two snapshots differ by the
files changed or added and the files removed. A change that every file of it
falls under one of the image's sync rules can be copied into the running
containers; any other change needs a new image.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import Image, SyncRule
from ..images.context import BuildContext
from ..images.dockerignore import IgnoreMatcher

Snapshot = Mapping[str, tuple[str, int, str]]  # project-relative path -> (kind, mode, digest)


def snapshot_of(ctx: BuildContext, project_root: Path) -> dict[str, tuple[str, int, str]]:
    """The files of a scanned build context, by path relative to the project (absolute if outside it)."""
    out = {}
    for entry in ctx.entries:
        if entry.kind == "dir":
            continue
        source = Path(entry.source)
        key = source.relative_to(project_root).as_posix() if source.is_relative_to(project_root) else str(source)
        out[key] = (entry.kind, entry.mode, entry.digest)
    return out


@dataclass(frozen=True)
class Diff:
    changed: tuple[str, ...] = ()  # changed or added
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(sorted(self.changed + self.removed))


def diff(old: Snapshot, new: Snapshot) -> Diff:
    changed = tuple(sorted(p for p, state in new.items() if old.get(p) != state))
    removed = tuple(sorted(p for p in old if p not in new))
    return Diff(changed, removed)


def rule_for(rules: Sequence[SyncRule], path: str) -> SyncRule | None:
    """The first rule whose ``src`` covers ``path`` (a glob, or a directory and everything below it)."""
    for rule in rules:
        if IgnoreMatcher([rule.src]).excluded(path):
            return rule
    return None


def destination(rule: SyncRule, path: str) -> str:
    """Where ``path`` goes in the container under ``rule``."""
    if path == rule.base or not rule.base:
        return rule.dest if path == rule.base else f"{rule.dest}/{path}"
    return f"{rule.dest}/{path[len(rule.base) + 1:]}"


@dataclass
class ImageChange:
    """One image's part of a cycle: files to copy and delete in its containers, or why it needs a build."""

    name: str
    copy: list[tuple[str, str]] = field(default_factory=list)  # (project-relative path, container path)
    delete: list[str] = field(default_factory=list)  # container paths
    actions: list[str] = field(default_factory=list)  # the ``then`` of the rules involved, in rule order
    rebuild: list[str] = field(default_factory=list)  # paths no sync rule covers

    @property
    def files(self) -> int:
        return len(self.copy) + len(self.delete)


def plan_change(image: Image, change: Diff) -> ImageChange:
    """Sort one image's changed inputs into files to sync (with their rules' actions) and ones needing a build."""
    out = ImageChange(image.name)
    touched: list[SyncRule] = []
    for path in change.changed + change.removed:
        rule = rule_for(image.sync, path)
        if rule is None:
            out.rebuild.append(path)
            continue
        if rule not in touched:
            touched.append(rule)
        if path in change.removed:
            out.delete.append(destination(rule, path))
        else:
            out.copy.append((path, destination(rule, path)))
    out.actions = list(dict.fromkeys(rule.then for rule in sorted(touched, key=image.sync.index)))
    return out


def first_save(paths: Iterable[str], root: Path, seen_at: float) -> float:
    """When the earliest of ``paths`` was saved (its mtime), or ``seen_at`` if none is there any more."""
    times = [seen_at]
    for path in paths:
        try:
            times.append(os.stat(root / path).st_mtime)
        except OSError:
            pass
    return min(times)


def describe(paths: Sequence[str], limit: int = 3) -> str:
    """``a.py, b.py and 3 more`` (file names only)."""
    names = [p.rsplit("/", 1)[-1] for p in paths]
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
