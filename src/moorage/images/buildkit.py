"""BuildKit builds: which builder an engine gets, and one build through ``docker buildx build``.

The builder is BuildKit when the ``docker buildx`` CLI plugin is installed
(scripts/install-buildx.sh) and the engine's built-in BuildKit answers through
it (the ``docker`` driver: the image lands in that engine, as the legacy
builder's did); otherwise the legacy builder. ``MOORAGE_BUILDER`` forces one
(``buildkit``, ``legacy``; default ``auto``).

The build context is the same deterministic tar the tag was computed from,
streamed to ``docker buildx build -`` on stdin, so what is hashed is what is
built. A proxy CA bundle is a build secret (``id=moorage-ca``): Dockerfiles
mount it with ``RUN --mount=type=secret,id=moorage-ca`` and it is never in the
context nor in any layer. Progress comes from ``--progress=rawjson``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core import proc
from ..core.config import Project
from ..core.errors import OperationFailed, UserError
from ..core.report import Reporter
from ..engine import docker_host
from .context import CA_ARCNAME, BuildContext, write_context_tar
from .dockerfile import dockerfile_instructions
from .tags import ImageState

log = logging.getLogger(__name__)

BUILDER_ENV = "MOORAGE_BUILDER"
BUILDER_MODES = ("auto", "buildkit", "legacy")
CA_SECRET_ID = "moorage-ca"
INSTALL_HINT = "install the docker buildx plugin: scripts/install-buildx.sh"
LOG_TAIL_LINES = 12
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# "[stage-0 2/4] COPY app/ /app/", "[builder 1/3] FROM ...", "[2/4] RUN ..." (one unnamed stage)
_BUILDKIT_FLAGS = {"RUN --mount", "RUN --network", "RUN --security", "COPY --chmod", "COPY --link",
                   "COPY --parents", "COPY --exclude", "ADD --chmod", "ADD --link", "ADD --checksum",
                   "ADD --keep-git-dir", "ADD --exclude"}
_STEP_RE = re.compile(r"^\[(?:(?P<stage>[^\]]*?) )?(?P<i>\d+)/(?P<n>\d+)\] (?P<instruction>.*)$", re.S)


# --------------------------------------------------------------------------
# Which builder
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Builder:
    """The builder chosen for one engine, and why."""

    kind: str  # "buildkit" or "legacy"
    reason: str
    docker_env: Mapping[str, str] | None = None  # the engine: None is this process's DOCKER_* (the host's)

    def describe(self) -> str:
        return f"{'BuildKit' if self.kind == 'buildkit' else 'legacy builder'} ({self.reason})"


def builder_mode(environ: Mapping[str, str] | None = None) -> str:
    value = (os.environ if environ is None else environ).get(BUILDER_ENV, "").strip().lower() or "auto"
    if value not in BUILDER_MODES:
        raise UserError(f"{BUILDER_ENV}={value} is not a builder", f"use one of: {', '.join(BUILDER_MODES)}")
    return value


def parse_inspect(text: str) -> tuple[bool, str]:
    """Whether ``docker buildx inspect default`` shows a running docker-driver BuildKit, and what it says."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    if fields.get("Error"):
        return False, fields["Error"]
    if fields.get("Driver") != "docker" or fields.get("Status") != "running":
        return False, f"builder 'default' is {fields.get('Status') or 'not running'} (driver {fields.get('Driver') or '?'})"
    return True, f"engine BuildKit {fields.get('BuildKit version') or fields.get('BuildKit') or '?'}"


def build_env(docker_env: Mapping[str, str] | None) -> dict[str, str]:
    """The docker CLI's environment: the chosen engine pinned by DOCKER_HOST (so builder 'default' is it)."""
    env = {**os.environ, **(docker_env or {})}
    env["DOCKER_HOST"] = docker_host(docker_env)  # wins over DOCKER_CONTEXT and the CLI's current context
    env.update(DOCKER_CLI_HINTS="false", BUILDX_NO_DEFAULT_ATTESTATIONS="1")
    return env


def choose_builder(docker_env: Mapping[str, str] | None = None, *, environ: Mapping[str, str] | None = None,
                   run: Callable[..., proc.Result] | None = None) -> Builder:
    """BuildKit when the buildx plugin drives the engine's BuildKit, else the legacy builder.

    ``MOORAGE_BUILDER=legacy`` skips the probe; ``=buildkit`` turns an unusable
    BuildKit into a UserError instead of a fallback.
    """
    mode = builder_mode(environ)
    if mode == "legacy":
        return Builder("legacy", f"{BUILDER_ENV}=legacy", docker_env)
    ok, detail = _probe(docker_env, run or proc.run)
    if ok:
        return Builder("buildkit", detail, docker_env)
    if mode == "buildkit":
        raise UserError(f"{BUILDER_ENV}=buildkit but {detail}",
                        f"{INSTALL_HINT}, or unset {BUILDER_ENV} to use the legacy builder")
    return Builder("legacy", f"{detail}; for BuildKit: {INSTALL_HINT}", docker_env)


def _probe(docker_env: Mapping[str, str] | None, run: Callable[..., proc.Result]) -> tuple[bool, str]:
    """(usable, detail): the engine's BuildKit as the buildx plugin sees it, or what is missing."""
    env = build_env(docker_env)
    try:
        inspect = run(["docker", "buildx", "inspect", "default"], timeout=60, env=env, check=False)
    except UserError:  # no docker CLI at all
        return False, "no docker CLI on PATH"
    text = inspect.stdout + "\n" + inspect.stderr
    if inspect.returncode != 0:
        if "unknown command" in text or "not a docker command" in text:
            return False, "no docker buildx plugin"
        return False, f"docker buildx inspect failed: {proc.tail_lines(text, 1)}"
    ok, detail = parse_inspect(text)
    if not ok:
        return False, f"the engine at {env['DOCKER_HOST']} has no usable BuildKit: {detail}"
    return True, f"docker buildx, {detail}"


def buildx_version(run: Callable[..., proc.Result] | None = None) -> str | None:
    """The buildx plugin's version ("v0.29.1"), None when it does not answer."""
    try:
        result = (run or proc.run)(["docker", "buildx", "version"], timeout=30, check=False)
    except UserError:
        return None
    words = result.stdout.split()
    return words[1] if result.returncode == 0 and len(words) > 1 else None


def needs_buildkit(dockerfile_text: str) -> list[str]:
    """The BuildKit-only flags a Dockerfile uses ("RUN --mount", "COPY --chmod"...), each named once."""
    found: list[str] = []
    for ins in dockerfile_instructions(dockerfile_text):
        for word in ins.args.split():
            if not word.startswith("--"):
                break  # flags come before the command or the sources
            flag = f"{ins.keyword} --{word[2:].partition('=')[0]}"
            if flag in _BUILDKIT_FLAGS and flag not in found:
                found.append(flag)
    return found


def require_buildable(builder: Builder, contexts: Iterable[tuple[str, BuildContext]]) -> None:
    """UserError before anything is built when the legacy builder gets a Dockerfile it cannot build."""
    if builder.kind != "legacy":
        return
    for name, ctx in contexts:
        features = needs_buildkit(ctx.dockerfile_text)
        if features:
            raise UserError(
                f"{ctx.dockerfile.name} of image '{name}' uses {', '.join(features)}, which needs BuildKit, "
                f"but the builder is the legacy one ({builder.reason})", _to_buildkit(builder),
            )


def _to_buildkit(builder: Builder) -> str:
    forced = builder.reason == f"{BUILDER_ENV}=legacy"
    return f"unset {BUILDER_ENV} (or set it to buildkit)" if forced else INSTALL_HINT


# --------------------------------------------------------------------------
# Following the build: --progress=rawjson
# --------------------------------------------------------------------------

@dataclass
class _Vertex:
    number: int
    name: str
    announced: bool = False
    done: bool = False
    error: str = ""
    partial: str = ""
    tail: deque = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))

    @property
    def step(self) -> re.Match | None:
        return _STEP_RE.match(self.name)


class BuildKitStream:
    """Follows ``docker buildx build --progress=rawjson``: steps, their output, the first error, a plain log."""

    def __init__(self, name: str):
        self.name = name
        self.vertices: dict[str, _Vertex] = {}
        self.stages: dict[str, int] = {}  # stage -> its step count
        self.messages: deque[str] = deque(maxlen=LOG_TAIL_LINES)  # buildx's own (non-JSON) lines
        self.failed: _Vertex | None = None
        self.current = ""
        self.log: list[str] = []

    @property
    def total(self) -> int:
        return sum(self.stages.values())

    @property
    def done(self) -> int:
        return sum(1 for v in self.vertices.values() if v.done and v.step)

    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def feed(self, line: str) -> list[str]:
        """Take one output line; return the steps it started ("[stage-0 2/4] COPY ...", " (cached)" added)."""
        text = line.rstrip("\r\n")
        doc = None
        if text.startswith("{"):
            try:
                doc = json.loads(text)
            except ValueError:
                doc = None
        if not isinstance(doc, dict):
            text = _ANSI_RE.sub("", text).strip()
            if text:
                self.log.append(text)
                self.messages.append(text)
            return []
        started: list[str] = []
        for v in doc.get("vertexes") or []:
            started += self._vertex(v)
        for entry in doc.get("logs") or []:
            self._output(entry)
        for warning in doc.get("warnings") or []:
            short = warning.get("short")
            if short:
                self.log.append(f"WARNING: {_decode(short)}")
        return started

    def _vertex(self, v: Mapping) -> list[str]:
        digest = str(v.get("digest", ""))
        vx = self.vertices.get(digest)
        if vx is None:
            vx = self.vertices[digest] = _Vertex(len(self.vertices) + 1, str(v.get("name", "")))
            self.log.append(f"#{vx.number} {vx.name}")
            m = vx.step
            if m:
                self.stages[m.group("stage") or ""] = int(m.group("n"))
        started = []
        cached = bool(v.get("cached"))
        if (cached or v.get("started")) and not vx.announced and vx.step:
            vx.announced = True
            self.current = " ".join(vx.name.split())
            started.append(self.current[:160] + (" (cached)" if cached else ""))
        if v.get("error") and not vx.error:
            vx.error = _ANSI_RE.sub("", str(v["error"])).strip()
            self._flush(vx)
            self.log.append(f"#{vx.number} ERROR: {vx.error}")
            if self.failed is None or "context canceled" in self.failed.error:
                self.failed = vx
        elif (cached or v.get("completed")) and not vx.done:
            vx.done = True
            self._flush(vx)
            self.log.append(f"#{vx.number} {'CACHED' if cached else 'DONE'}")
        return started

    def _output(self, entry: Mapping) -> None:
        vx = self.vertices.get(str(entry.get("vertex", "")))
        if vx is None:
            return
        vx.partial += base64.b64decode(entry.get("data") or "").decode(errors="replace")
        *lines, vx.partial = vx.partial.split("\n")
        for raw in lines:
            self._line(vx, raw)

    def _flush(self, vx: _Vertex) -> None:
        if vx.partial:
            self._line(vx, vx.partial)
            vx.partial = ""

    def _line(self, vx: _Vertex, raw: str) -> None:
        line = _ANSI_RE.sub("", raw).rstrip("\r").rstrip()
        if line.strip():
            self.log.append(f"#{vx.number} {line}")
            vx.tail.append(line.strip())

    def failure(self, dockerfile: str, log_path: Path | None, returncode: int) -> OperationFailed:
        """The failed step with its error and last output lines, else buildx's own last error line."""
        vx = self.failed
        output = ""
        if vx is not None:
            m = vx.step
            if m:
                stage = m.group("stage") or ""
                of = f" of stage '{stage}'" if stage and not stage.startswith("stage-") else ""
                where = f" at step {m.group('i')}/{m.group('n')}{of} ({m.group('instruction').strip()[:200]})"
            else:
                where = f" at '{vx.name}'"
            error = vx.error
            output = " | ".join(vx.tail)
        else:
            where = ""
            errors = [m for m in self.messages if m.startswith("ERROR")]
            error = (errors[-1].partition(":")[2].strip() if errors else
                     " | ".join(self.messages) or f"docker buildx build exited {returncode}")
        return OperationFailed(
            f"build of image '{self.name}' failed{where}: {error}" + (f"; output: {output}" if output else ""),
            f"fix that step in {dockerfile}" + (f" (full log: {log_path})" if log_path else ""),
        )


def _decode(value: str) -> str:
    try:
        return base64.b64decode(value).decode(errors="replace")
    except ValueError:
        return value


# --------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------

def buildx_command(state: ImageState, *, iidfile: Path, ca_file: Path | None = None,
                   nocache: bool = False) -> list[str]:
    """``docker buildx build`` for one image, the context (a tar) read from stdin."""
    args = ["docker", "buildx", "build", "--builder", "default", "--load", "--provenance=false",
            "--progress=rawjson", "--file", state.dockerfile_arcname, "--tag", state.ref, "--iidfile", str(iidfile)]
    for key, value in state.build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    if state.target:
        args += ["--target", state.target]
    for key, value in state.labels().items():
        args += ["--label", f"{key}={value}"]
    if ca_file is not None:
        args += ["--secret", f"id={CA_SECRET_ID},src={ca_file}"]
    if nocache:
        args.append("--no-cache")
    return args + ["-"]


def build_with_buildkit(builder: Builder, state: ImageState, ctx: BuildContext, *, reporter: Reporter,
                        ca_file: Path | None, log_path: Path | None, nocache: bool = False) -> str:
    """Build one image with BuildKit into the builder's engine, streaming progress; returns the image ID."""
    if ca_file is not None and CA_ARCNAME[:-1] in ctx.dockerfile_text:
        reporter.warn(f"{ctx.dockerfile.name} reads {CA_ARCNAME} from the build context, where BuildKit never "
                      f"puts the CA bundle: mount it as a build secret instead "
                      f"(RUN --mount=type=secret,id={CA_SECRET_ID}, then /run/secrets/{CA_SECRET_ID})")
    stream = BuildKitStream(state.name)
    with tempfile.TemporaryDirectory(prefix="moorage-build-") as tmp:
        iidfile = Path(tmp) / "iid"
        args = buildx_command(state, iidfile=iidfile, ca_file=ca_file, nocache=nocache)
        with reporter.progress(f"build {state.name}", total=1000) as bar:

            def on_line(line: str) -> None:
                for step in stream.feed(line):
                    if not reporter.tty:
                        reporter.line(f"{state.name}: {step}")
                bar.update(int(stream.fraction() * 1000), f"build {state.name}: {stream.current[:70]}")

            try:
                returncode = run_streaming(args, build_env(builder.docker_env), ctx, on_line)
            finally:
                if log_path is not None:
                    log_path.parent.mkdir(parents=True, exist_ok=True)
                    log_path.write_text(f"$ {proc.render(args)}\n" + "\n".join(stream.log) + "\n")
            if returncode != 0 or stream.failed is not None:
                raise stream.failure(ctx.dockerfile.name, log_path, returncode)  # inside the bar: no "done" line
            bar.update(1000, f"build {state.name}: done")
        image_id = iidfile.read_text().strip() if iidfile.is_file() else ""
    if not image_id:
        raise OperationFailed(f"docker buildx build of image '{state.name}' reported no image ID",
                              f"check the build log {log_path}" if log_path else "run it again")
    return image_id


def run_streaming(args: list[str], env: Mapping[str, str], ctx: BuildContext,
                  on_line: Callable[[str], None]) -> int:
    """Run ``args`` with the context tar on its stdin, each output line to ``on_line``; its exit code.

    The tar is written by a thread while the output is read. A file that changed
    since it was hashed stops the build (the child is killed) with that error.
    """
    exe = proc.which(args[0])
    log.debug("run: %s", proc.render(args))
    child = subprocess.Popen([exe, *args[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=dict(env))
    failures: list[BaseException] = []

    def feed() -> None:
        try:
            write_context_tar(ctx, child.stdin)
        except OSError:
            pass  # the child stopped reading: its exit code and output say why
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failures.append(exc)
            child.kill()
        finally:
            try:
                child.stdin.close()
            except OSError:
                pass

    writer = threading.Thread(target=feed, name="build-context", daemon=True)
    writer.start()
    try:
        for raw in child.stdout:
            on_line(raw.decode(errors="replace"))
        returncode = child.wait()
    except BaseException:
        child.kill()  # Ctrl-C: buildx already got SIGINT and cancels; do not leave it behind
        child.wait()
        raise
    finally:
        writer.join(timeout=30)
        child.stdout.close()
    if failures:
        raise failures[0]
    return returncode


def builder_status(project: Project, docker_env: Mapping[str, str] | None = None) -> tuple[bool, str, str]:
    """For ``inv doctor``: (ok, which builder and why, how to fix). Not ok when the legacy builder is chosen
    but a Dockerfile of the project needs BuildKit, or when MOORAGE_BUILDER asks for what cannot be had."""
    try:
        builder = choose_builder(docker_env)
    except UserError as exc:
        return False, exc.message, exc.hint or ""
    if builder.kind == "buildkit":
        version = buildx_version()
        builder = Builder("buildkit", builder.reason.replace("docker buildx", f"docker buildx {version}")
                          if version else builder.reason, docker_env)
    if builder.kind == "legacy":
        for image in project.images:
            try:
                features = needs_buildkit((project.root / image.dockerfile).read_text())
            except OSError:
                continue  # a missing Dockerfile is reported by the build itself
            if features:
                return (False, f"{builder.describe()}, but {image.dockerfile} uses {', '.join(features)}",
                        _to_buildkit(builder))
    return True, builder.describe(), ""
