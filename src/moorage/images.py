"""Images: content-hash tags, change detection, builds, and delivery to clusters.

The tag of an image is a hash of everything that decides its content: the
Dockerfile, the build context as Docker sends it (``.dockerignore`` applied:
paths, modes, contents), the build arguments, the target stage and the IDs of
the base images its ``FROM`` lines name. An unchanged image keeps its tag, so
"is ``<repo>:<tag>`` present?" is the whole change detection, and a build is
skipped when the answer is yes.

The context is walked once; file digests are cached by (path, size, mtime_ns,
inode) under ``.moorage/cache/`` so an unchanged file is never re-read. The
same walk produces the deterministic tar that is sent to the engine, and each
file is re-hashed while it is written, so what is hashed is what is built.

Decisions are pure functions (:func:`plan_builds`, :func:`cluster_kind`,
:func:`delivery_plan`, :func:`parse_docker_env`); effects (:func:`build`,
:func:`deliver`, :func:`push`) execute them. docker-py is imported lazily.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import stat
import tarfile
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .core import proc
from .core.config import Environment, Image, Project, cluster_kind
from .core.errors import CommandFailed, ConfigError, OperationFailed, Unreachable, UserError
from .core.report import Reporter, human_bytes

TAG_LENGTH = 16
HASH_VERSION = "moorage-image-inputs/1"
CACHE_FILE = Path(".moorage") / "cache" / "context-digests.json"
STATE_DIR = ".moorage"
CA_ENV = "MOORAGE_CA_BUNDLE"
CA_ARCNAME = "moorage-ca.crt"
OUTSIDE_DOCKERFILE = ".dockerfile.moorage"
# A fixed mtime for every tar member: the tag ignores mtimes, so the tar must too.
# 2000-01-01 rather than 0: zip-based tools refuse dates before 1980.
TAR_MTIME = 946684800
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
LOG_TAIL_LINES = 12
CLUSTER_KINDS = ("minikube", "kind", "k3d", "docker-desktop", "containerd-local", "remote")
_REF_RE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)$"
)


# --------------------------------------------------------------------------
# .dockerignore (Docker's semantics, as in moby/patternmatcher)
# --------------------------------------------------------------------------

def read_dockerignore(text: str) -> list[str]:
    """The patterns of a .dockerignore, cleaned the way the Docker CLI cleans them."""
    patterns = []
    for raw in text.lstrip("\ufeff").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = os.path.normpath(line).replace(os.sep, "/")
            if line.startswith("//"):
                line = "/" + line.lstrip("/")
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append(("!" if invert else "") + line)
    return patterns


def _pattern_regex(pattern: str) -> re.Pattern:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                out.append(".*" if i + 1 >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out.append(re.escape(pattern[i]))
            else:
                out.append(r"\\")
        elif ch in "[]":
            out.append(ch)
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    try:
        return re.compile("".join(out))
    except re.error as exc:
        raise ConfigError(f"bad .dockerignore pattern '{pattern}': {exc}", "fix the pattern") from None


class IgnoreMatcher:
    """Decides which context paths Docker would leave out.

    The last matching pattern wins; ``!pattern`` re-includes; a pattern that
    matches a parent directory matches everything below it.
    """

    def __init__(self, patterns: Sequence[str]):
        self.patterns: list[tuple[bool, str, re.Pattern]] = []
        for p in patterns:
            exclusion = p.startswith("!")
            body = p[1:] if exclusion else p
            if body:
                self.patterns.append((exclusion, body, _pattern_regex(body)))
        self.has_exceptions = any(e for e, _, _ in self.patterns)

    def excluded(self, rel: str) -> bool:
        """Whether the context-relative posix path ``rel`` is left out."""
        matched = False
        parents = rel.split("/")[:-1]
        for exclusion, _body, regex in self.patterns:
            if exclusion != matched:
                continue
            match = regex.match(rel) is not None
            if not match and parents:
                for i in range(1, len(parents) + 1):
                    if regex.match("/".join(parents[:i])):
                        match = True
                        break
            if match:
                matched = not exclusion
        return matched

    def may_reinclude_below(self, rel_dir: str) -> bool:
        """Whether some ``!pattern`` could re-include a path under an excluded directory."""
        prefix = rel_dir + "/"
        return any(exclusion and (body + "/").startswith(prefix) for exclusion, body, _ in self.patterns)


# --------------------------------------------------------------------------
# Dockerfile: base images and step count
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Logical instructions of a Dockerfile (continuations joined, comments dropped)."""
    escape = "\\"
    lines = text.splitlines()
    # Parser directives: leading "# key=value" comments.
    for line in lines:
        m = re.match(r"^\s*#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$", line)
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
    out: list[Instruction] = []
    buf: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and (stripped.startswith("#") or not stripped):
            continue
        body = line.rstrip()
        if body.endswith(escape):
            buf.append(body[:-1])
            continue
        buf.append(body)
        logical = " ".join(part.strip() for part in buf).strip()
        buf = []
        if logical:
            keyword, _, args = logical.partition(" ")
            out.append(Instruction(keyword.upper(), args.strip()))
    if buf:
        logical = " ".join(part.strip() for part in buf).strip()
        keyword, _, args = logical.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


_VAR = re.compile(r"\$(?:\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-+])(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def substitute(value: str, variables: Mapping[str, str | None]) -> str:
    """Dockerfile variable expansion: $V, ${V}, ${V:-word}, ${V:+word}, ${V-word}."""

    def sub(m: re.Match) -> str:
        name = m.group("name") or m.group("bare")
        current = variables.get(name)
        op = m.group("op")
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return m.group("word") if unset else current
        if op in (":+", "+"):
            setv = current is not None and (op == "+" or current != "")
            return m.group("word") if setv else ""
        return current or ""

    return _VAR.sub(sub, value)


@dataclass(frozen=True)
class DockerfileInfo:
    bases: tuple[str, ...]  # external images named by FROM / COPY --from, after ARG substitution
    steps: int  # instructions the legacy builder reports as "Step N/M" (without the label step)
    stages: tuple[str, ...]


def analyse_dockerfile(text: str, build_args: Mapping[str, str], target: str | None = None) -> DockerfileInfo:
    """The external base images and the step count of a Dockerfile."""
    instructions = dockerfile_instructions(text)
    global_args: dict[str, str | None] = {}
    bases: list[str] = []
    stages: list[str] = []
    steps = 0
    seen_from = False
    stop_after_stage = False
    for ins in instructions:
        if ins.keyword == "FROM":
            if stop_after_stage:
                break
            seen_from = True
            words = [w for w in ins.args.split() if not w.startswith("--")]
            if not words:
                continue
            ref = substitute(words[0], global_args)
            name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else ""
            if ref.lower() not in stages and ref != "scratch" and ref not in bases:
                bases.append(ref)
            stages.append(name or str(len(stages)))
            if target and name == target.lower():
                stop_after_stage = True
        elif ins.keyword == "ARG" and not seen_from:
            for decl in shlex.split(ins.args):
                key, eq, default = decl.partition("=")
                global_args[key] = build_args.get(key, default if eq else None)
        elif ins.keyword in ("COPY", "ADD"):
            m = re.search(r"--from=(\S+)", ins.args)
            if m:
                ref = m.group(1)
                if ref.lower() not in stages and not ref.isdigit() and ref not in bases:
                    bases.append(ref)
        steps += 1
    return DockerfileInfo(tuple(bases), steps, tuple(stages))


# --------------------------------------------------------------------------
# Build context: walk, digests, deterministic tar
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ContextEntry:
    """One member of the build context tar."""

    arcname: str
    kind: str  # "file", "dir" or "symlink"
    mode: int  # permission bits
    size: int
    digest: str  # sha256 of a file, target of a symlink, "" for a directory
    source: str  # absolute path on disk


@dataclass(frozen=True)
class BuildContext:
    """What Docker receives for one image: the context entries and the Dockerfile."""

    root: Path
    dockerfile: Path
    dockerfile_arcname: str  # the Dockerfile's path inside the tar
    dockerfile_text: str
    entries: tuple[ContextEntry, ...]
    ca_file: str | None = None  # a moorage-ca.crt at the context root: sent, never hashed

    def files_digest(self) -> str:
        h = hashlib.sha256()
        for e in self.entries:
            h.update(f"{e.kind}\t{e.mode:o}\t{e.size}\t{e.digest}\t{e.arcname}\n".encode())
        return h.hexdigest()


class DigestCache:
    """sha256 of files keyed by (path, size, mtime_ns, inode), kept in a small JSON file."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, list] = {}
        self.seen: set[str] = set()
        self.roots: set[str] = set()
        self.dirty = False
        self.reads = 0
        if path is not None:
            try:
                data = json.loads(path.read_text())
                if data.get("version") == 1:
                    self.entries = data.get("files", {})
            except (OSError, ValueError, AttributeError):
                self.entries = {}

    def digest(self, path: str, st: os.stat_result) -> str:
        self.seen.add(path)
        key = [st.st_size, st.st_mtime_ns, st.st_ino]
        cached = self.entries.get(path)
        if cached is not None and cached[:3] == key:
            return cached[3]
        value = file_sha256(path)
        self.reads += 1
        self.entries[path] = key + [value]
        self.dirty = True
        return value

    def save(self) -> None:
        if self.path is None:
            return
        # Forget files that vanished from the contexts walked in this run.
        stale = [p for p in self.entries if p not in self.seen and any(p.startswith(r) for r in self.roots)]
        for p in stale:
            del self.entries[p]
        if not (self.dirty or stale):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": 1, "files": self.entries}, separators=(",", ":")))
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError:
            pass  # a cache that cannot be written only costs time


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def scan_context(image: Image, project_root: Path, cache: DigestCache | None = None) -> BuildContext:
    """Walk an image's context as Docker would send it; digests come from the cache when valid."""
    root = (project_root / image.context).resolve()
    dockerfile = (project_root / image.dockerfile).resolve()
    if not root.is_dir():
        raise ConfigError(f"build context '{image.context}' of image '{image.name}' is not a directory",
                          f"fix moorage.images[{image.name}].context in invoke.yaml")
    try:
        dockerfile_text = dockerfile.read_text()
    except OSError:
        raise ConfigError(f"Dockerfile '{image.dockerfile}' of image '{image.name}' does not exist",
                          f"create {image.dockerfile} or fix its dockerfile: in invoke.yaml") from None
    cache = cache if cache is not None else DigestCache(None)
    cache.roots.add(str(root) + os.sep)

    # BuildKit's per-Dockerfile ignore file wins over the context's .dockerignore.
    ignore_file = Path(str(dockerfile) + ".dockerignore")
    if not ignore_file.is_file():
        ignore_file = root / ".dockerignore"
    patterns = read_dockerignore(ignore_file.read_text()) if ignore_file.is_file() else []

    inside = dockerfile.is_relative_to(root)
    dockerfile_arcname = dockerfile.relative_to(root).as_posix() if inside else OUTSIDE_DOCKERFILE
    # The Dockerfile and .dockerignore are always sent (the daemon needs them).
    if patterns:
        patterns += ["!.dockerignore"] + ([f"!{dockerfile_arcname}"] if inside else [])
    matcher = IgnoreMatcher(patterns)
    state_dir = str((project_root / STATE_DIR).resolve())

    entries: list[ContextEntry] = []
    ca_file: list[str] = []

    def walk(directory: str, rel_dir: str) -> None:
        try:
            with os.scandir(directory) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise ConfigError(f"cannot read {directory} in the context of image '{image.name}': {exc.strerror}",
                              "fix its permissions or add it to .dockerignore") from None
        for item in items:
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            path = item.path
            if path == state_dir:
                continue  # Moorage's own state is never context
            st = item.stat(follow_symlinks=False)
            if not rel_dir and item.name == CA_ARCNAME:
                # The proxy CA changes no image content that matters: sent, not hashed.
                if stat.S_ISREG(st.st_mode) and not matcher.excluded(rel):
                    ca_file.append(path)
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if matcher.patterns and matcher.excluded(rel):
                if is_dir and matcher.may_reinclude_below(rel):
                    walk(path, rel)
                continue
            mode = stat.S_IMODE(st.st_mode)
            if is_dir:
                entries.append(ContextEntry(rel, "dir", mode, 0, "", path))
                walk(path, rel)
            elif stat.S_ISLNK(st.st_mode):
                entries.append(ContextEntry(rel, "symlink", mode, 0, os.readlink(path), path))
            elif stat.S_ISREG(st.st_mode):
                entries.append(ContextEntry(rel, "file", mode, st.st_size, cache.digest(path, st), path))
            # sockets, fifos and devices are not sent (Docker skips them too)

    walk(str(root), "")
    if not inside:
        st = dockerfile.stat()
        entries.append(ContextEntry(OUTSIDE_DOCKERFILE, "file", stat.S_IMODE(st.st_mode), st.st_size,
                                    cache.digest(str(dockerfile), st), str(dockerfile)))
    return BuildContext(root, dockerfile, dockerfile_arcname, dockerfile_text, tuple(entries),
                        ca_file[0] if ca_file else None)


def write_context_tar(ctx: BuildContext, fileobj, ca_bundle: Path | None = None) -> None:
    """Write the context as a deterministic tar (sorted, fixed mtime, root-owned).

    Each file is re-hashed as it is written; if it no longer matches the digest
    the tag was computed from, the build stops instead of building something else.
    The CA bundle (``ca_bundle``, else a ``moorage-ca.crt`` already at the
    context root) is added as ``moorage-ca.crt`` at the root; it is not part of
    the tag. Without one, no such file is sent.
    """
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for e in ctx.entries:
            info = tarfile.TarInfo(e.arcname)
            info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = e.mode, TAR_MTIME, 0, 0, "", ""
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e.digest
                tar.addfile(info)
            else:
                data = Path(e.source).read_bytes()
                if hashlib.sha256(data).hexdigest() != e.digest:
                    raise OperationFailed(f"{e.source} changed while the image was being built",
                                          "re-run the build once the file is saved")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        source = ca_bundle or ctx.ca_file
        if source is None:
            return
        try:
            ca = Path(source).read_bytes()
        except OSError:
            raise UserError(f"CA bundle {source} cannot be read",
                            f"point {CA_ENV} at a readable PEM file or unset it") from None
        info = tarfile.TarInfo(CA_ARCNAME)
        info.mode, info.mtime, info.size = 0o644, TAR_MTIME, len(ca)
        tar.addfile(info, io.BytesIO(ca))


def ca_bundle_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    value = (os.environ if environ is None else environ).get(CA_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"{CA_ENV}={value} is not a file", f"point {CA_ENV} at a PEM CA bundle or unset it")
    return path


# --------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageState:
    """An image of the stack with its computed tag and where it goes."""

    name: str
    repository: str
    tag: str
    inputs_digest: str  # the full sha256 the tag is cut from
    bases: Mapping[str, str | None]  # base reference -> image ID in the engine (None: absent)
    steps: int
    dockerfile_arcname: str
    build_args: Mapping[str, str]
    target: str | None

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    def labels(self) -> dict[str, str]:
        return {
            "org.opencontainers.image.title": self.name,
            "org.opencontainers.image.version": self.tag,
            "dev.moorage.image": self.name,
            "dev.moorage.inputs": self.inputs_digest,
            "dev.moorage.base-images": json.dumps(dict(self.bases), sort_keys=True),
        }


def inputs_digest(ctx: BuildContext, build_args: Mapping[str, str], target: str | None,
                  bases: Mapping[str, str | None]) -> str:
    """The sha256 of an image's build inputs; the tag is its prefix."""
    doc = {
        "v": HASH_VERSION,
        "dockerfile": hashlib.sha256(ctx.dockerfile_text.encode()).hexdigest(),
        "dockerfile_path": ctx.dockerfile_arcname,
        "files": ctx.files_digest(),
        "build_args": dict(sorted(build_args.items())),
        "target": target or "",
        "bases": dict(sorted(bases.items())),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def repository(image: Image, env: Environment | None, release: str) -> str:
    """``<registry>/<name>`` when the environment has a registry, else ``<release>/<name>``."""
    registry = env.registry if env is not None else ""
    repo = f"{registry}/{image.name}" if registry else f"{release}/{image.name}"
    if not _REF_RE.match(repo) or len(repo) > 255:
        where = f"moorage.environments.{env.name}.registry" if registry else f"image '{image.name}'"
        raise ConfigError(f"bad image repository '{repo}' (from {where})",
                          "use a lowercase registry host[:port]/path and lowercase image names")
    return repo


def image_states(project: Project, env: Environment | None, *, images: Sequence[Image] | None = None,
                 resolve_base: Callable[[str], str | None] = lambda ref: None,
                 cache: DigestCache | None = None, contexts: dict | None = None) -> list[ImageState]:
    """Compute each image's tag. ``resolve_base`` maps a base reference to its image ID."""
    own_cache = cache is None
    if own_cache:
        cache = DigestCache(project.root / CACHE_FILE)
    states = []
    for image in images if images is not None else project.images:
        ctx = scan_context(image, project.root, cache)
        if contexts is not None:
            contexts[image.name] = ctx
        info = analyse_dockerfile(ctx.dockerfile_text, image.build_args, image.target)
        if image.target and image.target.lower() not in info.stages:
            raise ConfigError(f"target '{image.target}' of image '{image.name}' is not a stage of {image.dockerfile}",
                              f"use one of: {', '.join(s for s in info.stages if not s.isdigit()) or 'none'}")
        bases = {ref: resolve_base(ref) for ref in info.bases}
        digest = inputs_digest(ctx, image.build_args, image.target, bases)
        states.append(ImageState(
            name=image.name, repository=repository(image, env, project.release), tag=digest[:TAG_LENGTH],
            inputs_digest=digest, bases=bases, steps=info.steps, dockerfile_arcname=ctx.dockerfile_arcname,
            build_args=dict(image.build_args), target=image.target,
        ))
    if own_cache:
        cache.save()
    return states


def select_images(project: Project, only: str | Iterable[str] | None) -> list[Image]:
    """The images named by ``--only`` (comma-separated), in config order; all by default."""
    if not only:
        return list(project.images)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    wanted = {project.image(n).name for n in names}
    return [i for i in project.images if i.name in wanted]


# --------------------------------------------------------------------------
# Build plan (pure)
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedBuild:
    name: str
    ref: str
    action: str  # "build" or "skip"
    reason: str


def plan_builds(states: Sequence[ImageState], present: Iterable[str], *, force: bool = False) -> list[PlannedBuild]:
    """Which images to build: those whose tag is not in the engine yet (all with ``force``)."""
    present = set(present)
    plan = []
    for s in states:
        if force:
            plan.append(PlannedBuild(s.name, s.ref, "build", "forced"))
        elif s.ref in present:
            plan.append(PlannedBuild(s.name, s.ref, "skip", "already built"))
        else:
            plan.append(PlannedBuild(s.name, s.ref, "build", "inputs changed (tag not in the engine)"))
    return plan


def missing_bases(states: Sequence[ImageState], plan: Sequence[PlannedBuild]) -> list[tuple[str, str]]:
    """(image, base) pairs a planned build needs but the engine lacks (there is no registry to pull from)."""
    building = {p.name for p in plan if p.action == "build"}
    return [(s.name, ref) for s in states if s.name in building for ref, iid in s.bases.items() if iid is None]


# --------------------------------------------------------------------------
# Docker engine
# --------------------------------------------------------------------------

def docker_host(docker_env: Mapping[str, str] | None = None) -> str:
    env = os.environ if docker_env is None else {**os.environ, **docker_env}
    return env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def connect(docker_env: Mapping[str, str] | None = None, timeout: int = 600):
    """A docker-py client for the engine described by DOCKER_* variables (default: this process's)."""
    import docker
    from docker.errors import DockerException

    environment = dict(os.environ)
    if docker_env:
        environment.update(docker_env)
    host = environment.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    try:
        client = docker.DockerClient.from_env(environment=environment, timeout=timeout)
        client.ping()
    except (DockerException, OSError) as exc:
        raise Unreachable(
            f"Docker engine at {host} is not reachable",
            "start the Docker daemon (dockerd), or point DOCKER_HOST at a running engine"
            + ("" if docker_env is None else " (for minikube: minikube start)"),
        ) from exc
    return client


def _not_found():
    from docker.errors import ImageNotFound, NotFound

    return (ImageNotFound, NotFound)


def resolver(client) -> Callable[[str], str | None]:
    """A base resolver for :func:`image_states` asking ``client``'s engine."""
    missing = _not_found()

    def resolve(ref: str) -> str | None:
        try:
            return client.api.inspect_image(ref)["Id"]
        except missing:
            return None

    return resolve


def inspect_refs(client, refs: Iterable[str]) -> dict[str, dict | None]:
    """``docker inspect`` of each reference in the engine; None for an absent one."""
    missing = _not_found()
    out = {}
    for ref in refs:
        try:
            out[ref] = client.api.inspect_image(ref)
        except missing:
            out[ref] = None
    return out


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


def build(client, state: ImageState, ctx: BuildContext, *, reporter: Reporter,
          ca_bundle: Path | None = None, log_dir: Path | None = None, nocache: bool = False) -> str:
    """Build one image into ``client``'s engine, streaming progress; returns the image ID.

    A failed step raises OperationFailed naming the image, the step and the last
    lines of its output. The full log is kept in ``log_dir``.
    """
    from docker.errors import APIError

    labels = state.labels()
    stream = BuildStream(state.name, state.steps + len(labels))  # the legacy builder adds a LABEL step per label
    log_path = log_dir / f"build-{state.name.replace('/', '_')}.log" if log_dir is not None else None
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as tar:
        write_context_tar(ctx, tar, ca_bundle)
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


# --------------------------------------------------------------------------
# Clusters: detection and the engine to build against
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Cluster:
    kind: str  # one of CLUSTER_KINDS
    name: str  # minikube profile, kind/k3d cluster name, or the context name
    context: str | None


def cluster_for(context: str | None, configured: str = "auto") -> Cluster:
    """The cluster kind from the kube context name (``cluster:`` in the config wins over the name)."""
    name = context or ""
    kind = cluster_kind(context, configured)
    if kind == "kind":
        cluster_name = name[len("kind-"):] if name.startswith("kind-") else (name or "kind")
    elif kind == "k3d":
        cluster_name = name[len("k3d-"):] if name.startswith("k3d-") else (name or "k3s-default")
    elif kind == "minikube":
        cluster_name = name or "minikube"
    else:
        cluster_name = name
    return Cluster(kind, cluster_name, context)


def current_context(env: Environment | None) -> str | None:
    """The kube context an environment deploys to: its ``context:``, else kubeconfig's current one."""
    if env is not None and env.context:
        return env.context
    from . import kube

    try:
        return kube.current_context()
    except UserError:
        return None  # no kubeconfig: images can still be built into the local engine


def parse_docker_env(text: str) -> dict[str, str]:
    """DOCKER_* variables from ``minikube docker-env`` output (bash/sh ``export K="V"`` or ``K=V``)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not key.startswith("DOCKER_"):
            continue
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip().strip('"')]
        out[key] = parts[0] if parts else ""
    return out


@dataclass(frozen=True)
class Engine:
    """The Docker engine to build against, and whether the cluster reads from it directly."""

    docker_env: Mapping[str, str] | None  # None: this process's DOCKER_* (the host engine)
    host: str
    cluster_reads_it: bool  # minikube docker runtime, docker-desktop: nothing to deliver
    runtime: str = "docker"


def build_engine(cluster: Cluster, *, run=None) -> Engine:
    """Where to build: minikube's own Docker daemon when its runtime is docker, else the host engine."""
    run = run or proc.run
    if cluster.kind == "minikube":
        try:
            result = run(["minikube", "-p", cluster.name, "docker-env", "--shell", "bash"],
                         timeout=60, what="minikube docker-env")
        except CommandFailed as exc:
            text = f"{exc.stderr} {exc.message}"
            if "only compatible with the" in text and "runtime" in text:
                m = re.search(r'use the "([a-z-]+)" runtime', text)
                return Engine(None, docker_host(), False, m.group(1) if m else "containerd")
            raise Unreachable(f"minikube profile '{cluster.name}' has no reachable Docker daemon: {proc.tail_lines(exc.stderr, 3)}",
                              f"start it with: minikube start -p {cluster.name}") from None
        env = parse_docker_env(result.stdout)
        if not env.get("DOCKER_HOST"):
            raise Unreachable(f"'minikube -p {cluster.name} docker-env' printed no DOCKER_HOST",
                              f"check the profile with: minikube status -p {cluster.name}")
        return Engine(env, env["DOCKER_HOST"], True)
    return Engine(None, docker_host(), cluster.kind == "docker-desktop")


# --------------------------------------------------------------------------
# Delivery: plan (pure) and effects
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryStep:
    """One action that makes images readable by the cluster."""

    action: str  # "load" (a CLI command) or "push" (docker-py push)
    refs: tuple[str, ...]
    command: tuple[str, ...]  # the exact command (for push, the equivalent docker CLI line)

    def render(self) -> str:
        return proc.render(self.command)


def normalise_ref(ref: str) -> str:
    """``docker.io/library/x:t`` and ``docker.io/x:t`` compare equal to ``x:t``."""
    for prefix in ("docker.io/library/", "docker.io/", "localhost/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def delivery_plan(cluster: Cluster, refs: Sequence[str], present: Iterable[str] | None,
                  *, engine_shared: bool = False) -> list[DeliveryStep]:
    """The steps that make ``refs`` readable by the cluster, skipping those it already has.

    ``present`` holds the references the cluster's nodes (or registry) already
    have; None means unknown, so everything is delivered. ``engine_shared`` is
    true when the images were built straight into the engine the cluster uses.
    """
    if engine_shared or cluster.kind == "docker-desktop":
        return []
    have = {normalise_ref(r) for r in (present or ())}
    missing = [r for r in refs if normalise_ref(r) not in have]
    if not missing:
        return []
    if cluster.kind == "minikube":
        return [DeliveryStep("load", (r,), ("minikube", "-p", cluster.name, "image", "load", r)) for r in missing]
    if cluster.kind == "kind":
        return [DeliveryStep("load", tuple(missing), ("kind", "load", "docker-image", "--name", cluster.name, *missing))]
    if cluster.kind == "k3d":
        return [DeliveryStep("load", tuple(missing), ("k3d", "image", "import", "-c", cluster.name, *missing))]
    if cluster.kind == "containerd-local":
        return [DeliveryStep("load", (r,), ("ctr", "-n", "k8s.io", "images", "import", f"<docker save {r}>"))
                for r in missing]
    return [DeliveryStep("push", (r,), ("docker", "push", r)) for r in missing]


def _crictl_tags(output: str) -> set[str]:
    try:
        data = json.loads(output or "{}")
    except ValueError:
        return set()
    return {normalise_ref(t) for img in data.get("images") or [] for t in img.get("repoTags") or []}


def cluster_images(cluster: Cluster, refs: Sequence[str], *, client=None, run=None) -> set[str] | None:
    """References the cluster already has; an image counts only if every node has it.

    kind and k3d: ``crictl images -o json`` in each node container (one exec per
    node for all images, where ``kind load`` would inspect per image and node);
    minikube: ``minikube image ls``; remote: the registry's manifest (docker-py
    ``inspect_distribution``). None when it cannot be told.
    """
    run = run or proc.run
    if cluster.kind in ("kind", "k3d"):
        if cluster.kind == "kind":
            nodes = run(["kind", "get", "nodes", "--name", cluster.name], timeout=60, what="kind get nodes").stdout.split()
        else:
            listing = run(["docker", "ps", "--filter", f"label=k3d.cluster={cluster.name}",
                           "--format", '{{.Names}} {{.Label "k3d.role"}}'], timeout=60, what="docker ps").stdout
            nodes = [ln.split()[0] for ln in listing.splitlines() if ln.split()[1:2] in (["server"], ["agent"])]
        if not nodes:
            return None
        per_node = []
        for node in nodes:
            out = run(["docker", "exec", node, "crictl", "images", "-o", "json"], timeout=60, check=False,
                      what="crictl images")
            if out.returncode != 0:
                return None
            per_node.append(_crictl_tags(out.stdout))
        return set.intersection(*per_node)
    if cluster.kind == "minikube":
        out = run(["minikube", "-p", cluster.name, "image", "ls"], timeout=120, check=False, what="minikube image ls")
        if out.returncode != 0:
            return None
        return {normalise_ref(line.strip()) for line in out.stdout.splitlines() if line.strip()}
    if cluster.kind == "containerd-local":
        out = run(["ctr", "-n", "k8s.io", "images", "ls", "-q"], timeout=60, check=False, what="ctr images ls")
        return {normalise_ref(x) for x in out.stdout.split()} if out.returncode == 0 else None
    if cluster.kind == "remote" and client is not None:
        from docker.errors import APIError

        present = set()
        for ref in refs:
            try:
                client.api.inspect_distribution(ref)
                present.add(ref)
            except APIError:
                pass
        return present
    return set()


def deliver(steps: Sequence[DeliveryStep], *, client, reporter: Reporter, run=None) -> None:
    """Execute a delivery plan: CLI loads through proc.run, pushes through docker-py."""
    run = run or proc.run
    for step in steps:
        if step.action == "push":
            push(client, step.refs[0], reporter=reporter)
        elif step.command[0] == "ctr":
            _ctr_import(client, step.refs[0], reporter=reporter, run=run)
        else:
            with reporter.progress(f"load {', '.join(step.refs)}"):
                run(list(step.command), timeout=900, what=" ".join(step.command[:3]))


def _ctr_import(client, ref: str, *, reporter: Reporter, run) -> None:
    with tempfile.NamedTemporaryFile(suffix=".tar") as f, reporter.progress(f"import {ref} into containerd"):
        for chunk in client.api.get_image(ref):
            f.write(chunk)
        f.flush()
        run(["ctr", "-n", "k8s.io", "images", "import", f.name], timeout=900, what="ctr images import")


def push(client, ref: str, *, reporter: Reporter) -> None:
    """``docker push`` through docker-py with a byte progress bar; a registry error is one clean line."""
    from docker.errors import APIError

    repo, _, tag = ref.rpartition(":")
    layers: dict[str, tuple[int, int]] = {}
    error = None
    with reporter.progress(f"push {ref}", total=None, unit="bytes") as bar:
        try:
            for chunk in client.api.push(repo, tag=tag, stream=True, decode=True):
                if "error" in chunk or "errorDetail" in chunk:
                    error = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                    break
                detail = chunk.get("progressDetail") or {}
                if chunk.get("id") and detail.get("total"):
                    layers[chunk["id"]] = (detail.get("current", 0), detail["total"])
                    bar.update(sum(c for c, _ in layers.values()))
        except APIError as exc:
            error = exc.explanation or str(exc)
    if error:
        hint = "log in with 'docker login <registry>'" if re.search(r"denied|unauthori[sz]ed|authentication", error, re.I) \
            else "check the registry address in the environment's config and that it is reachable"
        raise OperationFailed(f"push of {ref} failed: {error.strip()}", hint)


# --------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRow:
    name: str
    ref: str
    tag: str
    built: bool
    size: int | None = None
    created: str | None = None
    image_id: str | None = None
    extra: dict = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return data


def list_rows(states: Sequence[ImageState], inspected: Mapping[str, dict | None]) -> list[ImageRow]:
    rows = []
    for s in states:
        info = inspected.get(s.ref)
        rows.append(ImageRow(
            name=s.name, ref=s.ref, tag=s.tag, built=info is not None,
            size=info.get("Size") if info else None,
            created=(info.get("Created") or "")[:19].replace("T", " ") if info else None,
            image_id=info.get("Id") if info else None,
        ))
    return rows


def table_rows(rows: Sequence[ImageRow]) -> list[list[str]]:
    return [[r.name, r.tag, "yes" if r.built else "no", human_bytes(r.size) if r.size else "-", r.created or "-"]
            for r in rows]


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 2)


# --------------------------------------------------------------------------
# Observation: everything the tasks (and dev.deploy) need to decide
# --------------------------------------------------------------------------

@dataclass
class Target:
    """An environment's cluster, the engine its images are built in, and their current tags."""

    cluster: Cluster
    engine: Engine
    client: Any
    states: list[ImageState]
    contexts: dict[str, BuildContext]
    present: set[str]  # refs of ``states`` present in the build engine


def observe(project: Project, env: Environment, *, only: str | Iterable[str] | None = None,
            context: str | None = None, run=None) -> Target:
    """Detect the cluster, connect to the engine to build in, and compute every tag (read-only)."""
    cluster = cluster_for(context if context is not None else current_context(env), env.cluster)
    engine = build_engine(cluster, run=run)
    client = connect(engine.docker_env)
    contexts: dict[str, BuildContext] = {}
    states = image_states(project, env, images=select_images(project, only), resolve_base=resolver(client),
                          contexts=contexts)
    present = {ref for ref, info in inspect_refs(client, [s.ref for s in states]).items() if info}
    return Target(cluster, engine, client, states, contexts, present)


def pull_missing_bases(target: Target, project: Project, env: Environment, plan: Sequence[PlannedBuild],
                       *, reporter: Reporter) -> list[ImageState]:
    """Pull the base images a planned build lacks, then recompute tags (a base's ID is part of the tag)."""
    from docker.errors import APIError

    wanted = missing_bases(target.states, plan)
    if not wanted:
        return target.states
    for name, ref in wanted:
        with reporter.progress(f"pull base image {ref} for {name}"):
            try:
                target.client.api.pull(ref)
            except APIError as exc:
                raise UserError(
                    f"base image '{ref}' of image '{name}' is not in the Docker engine at {target.engine.host} "
                    f"and cannot be pulled: {exc.explanation or exc}",
                    "load it into that engine (scripts/base-images.sh, docker load) or point the build arg "
                    "at a local image (e.g. MOORAGE_PYTHON_IMAGE)",
                ) from None
    names = {s.name for s in target.states}
    return image_states(project, env, images=[i for i in project.images if i.name in names],
                        resolve_base=resolver(target.client), contexts=target.contexts)
