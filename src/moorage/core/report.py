"""Output for people and for CI: rich on a terminal, plain lines otherwise, JSON on request.

rich is imported only when a terminal is attached, so plain runs (CI, pipes)
and ``inv --list`` never pay for it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO


class Reporter:
    """Line-oriented progress and results.

    ``json_mode`` keeps human lines on stderr so that stdout carries only the
    JSON summary written by :meth:`emit_json`.
    """

    def __init__(self, *, json_mode: bool = False, stream: TextIO | None = None, tty: bool | None = None):
        self.json_mode = json_mode
        self.stream = stream or (sys.stderr if json_mode else sys.stdout)
        self.tty = self.stream.isatty() if tty is None else tty
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        return self._console

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def step(self, text: str) -> None:
        self.line(f"==> {text}")

    def ok(self, text: str) -> None:
        self.line(f"ok: {text}")

    def warn(self, text: str) -> None:
        self.line(f"warning: {text}")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
        rows = [[("" if c is None else str(c)) for c in row] for row in rows]
        if self.tty:
            from rich.table import Table

            table = Table(*headers, title=title)
            for row in rows:
                table.add_row(*row)
            self.console.print(table)
            return
        if title:
            self.line(title)
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
        self.line("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        for row in rows:
            self.line("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())

    def emit_json(self, data: Any) -> None:
        """Write a JSON document to stdout (the machine-readable summary)."""
        print(json.dumps(data, indent=2, sort_keys=True, default=str), file=sys.stdout, flush=True)

    @contextmanager
    def progress(self, description: str, total: float | None = None, unit: str = "") -> Iterator[Progress]:
        """A progress bar on a terminal; start and end lines otherwise."""
        if self.tty:
            from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn
            from rich.progress import Progress as RichProgress

            columns = [TextColumn("{task.description}"), BarColumn()]
            if unit == "bytes":
                columns += [DownloadColumn(), TransferSpeedColumn()]
            columns.append(TimeElapsedColumn())
            with RichProgress(*columns, console=self.console, transient=False) as bar:
                task_id = bar.add_task(description, total=total)
                yield Progress(lambda n, text=None: bar.update(task_id, completed=n, description=text or description))
            return
        start = time.monotonic()
        self.line(f"... {description}")
        state = {"n": 0}
        yield Progress(lambda n, text=None: state.__setitem__("n", n))
        self.line(f"... {description}: done in {time.monotonic() - start:.1f}s")


class Progress:
    def __init__(self, update):
        self._update = update

    def update(self, completed: float, text: str | None = None) -> None:
        self._update(completed, text)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
