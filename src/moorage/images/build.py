"""Builds: one image into an engine, with BuildKit (``buildkit``) or docker-py's legacy builder.

:func:`build_image` takes the :class:`~moorage.images.buildkit.Builder` that
``choose_builder`` picked for the engine; the legacy path follows the legacy
builder's JSON stream for progress. docker-py is imported lazily.
"""

from __future__ import annotations

import re
import tempfile
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.errors import OperationFailed
from ..core.report import Reporter
from .buildkit import Builder, build_with_buildkit
from .context import BuildContext, ca_source, write_context_tar
from .tags import ImageState

LOG_TAIL_LINES = 12
_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NOISE_RE = re.compile(r"^(---> |Removing intermediate container|Successfully (built|tagged) )")


class BuildStream:
    """Follows the legacy builder's JSON stream: current step, its last output lines, image ID, error."""

    def __init__(self, name: str, total: int):
        self.name = name
        self.step, self.total, self.instruction = 0, total, ""
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.image_id: str | None = None
        self.error: str | None = None
        self.log: list[str] = []

    def feed(self, chunk: Mapping[str, Any]) -> list[str]:
        """Take one decoded chunk; return the "Step N/M : ..." lines it started."""
        started = []
        if "stream" in chunk:
            for raw in str(chunk["stream"]).splitlines():
                line = _ANSI_RE.sub("", raw).rstrip()
                self.log.append(line)
                m = _STEP_RE.match(line)
                if m:
                    self.step, self.total, self.instruction = int(m.group(1)), int(m.group(2)), m.group(3)
                    self.tail.clear()
                    started.append(line)
                elif line.strip() and not _NOISE_RE.match(line.strip()):
                    self.tail.append(line.strip())
        elif isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
            self.image_id = chunk["aux"]["ID"]
        elif "error" in chunk or "errorDetail" in chunk:
            self.error = _ANSI_RE.sub("", (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                                      or "unknown error").strip()
            self.log.append(f"ERROR: {self.error}")
        return started

    def failure(self, dockerfile: str, log_path: Path | None) -> OperationFailed:
        where = f" at step {self.step}/{self.total} ({self.instruction})" if self.step else ""
        output = " | ".join(self.tail)
        return OperationFailed(
            f"build of image '{self.name}' failed{where}: {self.error}" + (f"; output: {output}" if output else ""),
            f"fix that step in {dockerfile}" + (f" (full log: {log_path})" if log_path else ""),
        )


def build_image(client, state: ImageState, ctx: BuildContext, *, reporter: Reporter, builder: Builder | None = None,
                ca_bundle: Path | None = None, log_dir: Path | None = None, nocache: bool = False) -> str:
    """Build one image into ``client``'s engine, streaming progress; returns the image ID.

    With a BuildKit ``builder`` the CA bundle is a build secret; with the legacy
    builder (also when ``builder`` is None) it is sent in the context. A failed
    step raises OperationFailed naming the image, the step and the last lines of
    its output. The full log is kept in ``log_dir``.
    """
    log_path = log_dir / f"build-{state.name.replace('/', '_')}.log" if log_dir is not None else None
    ca_file = ca_source(ctx, ca_bundle)
    if builder is not None and builder.kind == "buildkit":
        return build_with_buildkit(builder, state, ctx, reporter=reporter, ca_file=ca_file, log_path=log_path,
                                   nocache=nocache)
    return _build_legacy(client, state, ctx, reporter=reporter, ca_file=ca_file, log_path=log_path, nocache=nocache)


def _build_legacy(client, state: ImageState, ctx: BuildContext, *, reporter: Reporter, ca_file: Path | None,
                  log_path: Path | None, nocache: bool) -> str:
    from docker.errors import APIError

    labels = state.labels()
    stream = BuildStream(state.name, state.steps + len(labels))  # the legacy builder adds a LABEL step per label
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as tar:
        write_context_tar(ctx, tar, ca_file)
        tar.seek(0)
        with reporter.progress(f"build {state.name}", total=stream.total) as bar:
            try:
                for chunk in client.api.build(
                    fileobj=tar, custom_context=True, dockerfile=state.dockerfile_arcname, tag=state.ref,
                    buildargs=dict(state.build_args), target=state.target or None, labels=labels,
                    rm=True, forcerm=True, decode=True, pull=False, nocache=nocache,
                ):
                    for line in stream.feed(chunk):
                        bar.update(stream.step - 1, f"build {state.name}: step {stream.step}/{stream.total} "
                                                    f"{stream.instruction[:60]}")
                        if not reporter.tty:
                            reporter.line(f"{state.name}: {line}")
                    if stream.error:
                        break
            except APIError as exc:
                stream.error = exc.explanation or str(exc)
            finally:
                if log_path is not None:
                    log_path.parent.mkdir(parents=True, exist_ok=True)
                    log_path.write_text("\n".join(stream.log) + "\n")
            if stream.error:
                raise stream.failure(ctx.dockerfile.name, log_path)  # inside the bar: no "done" line
            bar.update(stream.total, f"build {state.name}: done")
    return stream.image_id or client.api.inspect_image(state.ref)["Id"]
