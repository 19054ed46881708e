"""Watching the images' inputs, the chart and the values files with watchfiles, debounced.

Only what can change an image or the release is watched: each image's build
context as its ``.dockerignore`` leaves it (directories that are wholly left
out are not watched at all; a directory that is partly in is watched without
recursion), its Dockerfile and ignore file, the chart and the environment's
values files. A batch of events becomes one :class:`Batch` on a queue.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.config import Environment, Image, Project
from ..images.dockerignore import IgnoreMatcher, read_dockerignore

STATE_DIR = ".moorage"


@dataclass(frozen=True)
class Batch:
    paths: frozenset[str]  # absolute paths reported changed
    seen_at: float  # wall-clock time the batch was reported


def ignore_rules(project_root: Path, image: Image) -> tuple[Path, Path | None, IgnoreMatcher]:
    """An image's context root, its ignore file and matcher (the Dockerfile's own ignore file wins, as in BuildKit)."""
    root = (project_root / image.context).resolve()
    dockerfile = (project_root / image.dockerfile).resolve()
    own = Path(f"{dockerfile}.dockerignore")
    ignore = own if own.is_file() else root / ".dockerignore"
    patterns = read_dockerignore(ignore.read_text()) if ignore.is_file() else []
    return root, (ignore if ignore.is_file() else None), IgnoreMatcher(patterns)


def _walk(directory: Path, rel: str, matcher: IgnoreMatcher, recursive: set[Path], flat: set[Path]) -> None:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.name == STATE_DIR and not rel:
            continue
        sub = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=False):
            if not matcher.excluded(sub):
                recursive.add(Path(entry.path))
            elif matcher.may_reinclude_below(sub):
                _walk(Path(entry.path), sub, matcher, recursive, flat)
        elif not matcher.excluded(sub):
            flat.add(directory)


def _outermost(paths: Iterable[Path]) -> list[Path]:
    ordered = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in ordered:
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def watch_roots(project: Project, env: Environment) -> tuple[list[Path], list[Path]]:
    """(directories watched with their subdirectories, directories watched alone)."""
    recursive: set[Path] = {project.chart.resolve()}
    flat: set[Path] = {f.resolve().parent for f in env.values_files}
    for image in project.images:
        root, ignore, matcher = ignore_rules(project.root, image)
        flat.add((project.root / image.dockerfile).resolve().parent)
        if ignore is not None:
            flat.add(ignore.parent)
        if not matcher.patterns:
            recursive.add(root)
        else:
            _walk(root, "", matcher, recursive, flat)
    deep = _outermost(p for p in recursive if p.is_dir())
    alone = sorted(p for p in flat if p.is_dir() and not any(p.is_relative_to(d) for d in deep))
    return deep, alone


class Relevance:
    """Whether a reported path can matter: an input of some image, the chart, a values file."""

    def __init__(self, project: Project, env: Environment):
        self.state = (project.root / STATE_DIR).resolve()
        self.chart = project.chart.resolve()
        self.values = {f.resolve() for f in env.values_files}
        self.images = []
        for image in project.images:
            root, ignore, matcher = ignore_rules(project.root, image)
            always = {(project.root / image.dockerfile).resolve(), *([ignore] if ignore else [])}
            self.images.append((root, matcher, always))

    def __call__(self, _change, raw: str) -> bool:
        path = Path(raw)
        if path.is_relative_to(self.state):
            return False
        if path.is_relative_to(self.chart) or path in self.values:
            return True
        for root, matcher, always in self.images:
            if path in always:
                return True
            if path.is_relative_to(root) and path != root and not matcher.excluded(path.relative_to(root).as_posix()):
                return True
        return False


class FileWatcher:
    """Two watchfiles loops (recursive and not) feeding one queue of batches, until :meth:`stop`."""

    def __init__(self, project: Project, env: Environment, *, step_ms: int = 50):
        self.recursive, self.flat = watch_roots(project, env)
        self.relevant = Relevance(project, env)
        self.batches: queue.Queue[Batch] = queue.Queue()
        self.stop_event = threading.Event()
        self.step_ms = step_ms
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for paths, recursive in ((self.recursive, True), (self.flat, False)):
            if paths:
                thread = threading.Thread(target=self._loop, args=(paths, recursive), daemon=True,
                                          name=f"watch {'tree' if recursive else 'dirs'}")
                thread.start()
                self.threads.append(thread)

    def _loop(self, paths: list[Path], recursive: bool) -> None:
        from watchfiles import watch

        for changes in watch(*paths, recursive=recursive, watch_filter=self.relevant, debounce=1600,
                             step=self.step_ms, stop_event=self.stop_event, rust_timeout=500, yield_on_timeout=False,
                             raise_interrupt=False):
            if changes:
                self.batches.put(Batch(frozenset(path for _change, path in changes), time.time()))

    def next(self, timeout: float) -> Batch | None:
        """The next batch, merged with any others already waiting; None after ``timeout`` seconds."""
        try:
            first = self.batches.get(timeout=timeout)
        except queue.Empty:
            return None
        paths, seen = set(first.paths), first.seen_at
        while True:
            try:
                more = self.batches.get_nowait()
            except queue.Empty:
                return Batch(frozenset(paths), seen)
            paths |= more.paths

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=2)
