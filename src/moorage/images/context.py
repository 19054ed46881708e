"""The build context: the walk Docker's CLI would make, file digests and their cache, the tar, the CA bundle.

The context is walked once; file digests are cached by (path, size, mtime_ns,
inode) under ``.moorage/cache/`` so an unchanged file is never re-read. The
same walk produces the deterministic tar that is sent to the engine, and each
file is re-hashed while it is written, so what is hashed is what is built.

A proxy CA bundle (``MOORAGE_CA_BUNDLE``, or a ``moorage-ca.crt`` at the
context root) is never hashed (it changes no image content that matters) and
never part of the context BuildKit gets: there it is a build secret
(``moorage.images.buildkit``). Only the legacy builder, which has no secrets,
receives it in its context tar as ``moorage-ca.crt``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.config import Image
from ..core.errors import ConfigError, OperationFailed, UserError
from .dockerignore import IgnoreMatcher, read_dockerignore

CACHE_FILE = Path(".moorage") / "cache" / "context-digests.json"
STATE_DIR = ".moorage"
CA_ENV = "MOORAGE_CA_BUNDLE"
CA_ARCNAME = "moorage-ca.crt"
OUTSIDE_DOCKERFILE = ".dockerfile.moorage"
# A fixed mtime for every tar member: the tag ignores mtimes, so the tar must too.
# 2000-01-01 rather than 0: zip-based tools refuse dates before 1980.
TAR_MTIME = 946684800


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

    inside = dockerfile.is_relative_to(root)
    dockerfile_arcname = dockerfile.relative_to(root).as_posix() if inside else OUTSIDE_DOCKERFILE
    matcher = _ignore_matcher(root, dockerfile, dockerfile_arcname if inside else None)
    walk = _Walk(image.name, matcher, cache, str((project_root / STATE_DIR).resolve()))
    walk.directory(str(root), "")
    if not inside:
        st = dockerfile.stat()
        walk.entries.append(ContextEntry(OUTSIDE_DOCKERFILE, "file", stat.S_IMODE(st.st_mode), st.st_size,
                                         cache.digest(str(dockerfile), st), str(dockerfile)))
    return BuildContext(root, dockerfile, dockerfile_arcname, dockerfile_text, tuple(walk.entries), walk.ca_file)


def _ignore_matcher(root: Path, dockerfile: Path, dockerfile_arcname: str | None) -> IgnoreMatcher:
    """The context's ignore rules; ``dockerfile_arcname`` is None when the Dockerfile is outside the context."""
    # BuildKit's per-Dockerfile ignore file wins over the context's .dockerignore.
    ignore_file = Path(str(dockerfile) + ".dockerignore")
    if not ignore_file.is_file():
        ignore_file = root / ".dockerignore"
    patterns = read_dockerignore(ignore_file.read_text()) if ignore_file.is_file() else []
    # The Dockerfile and .dockerignore are always sent (the daemon needs them).
    if patterns:
        patterns += ["!.dockerignore"] + ([f"!{dockerfile_arcname}"] if dockerfile_arcname else [])
    return IgnoreMatcher(patterns)


class _Walk:
    """One walk of a context: its entries in tar order and the CA file found at its root."""

    def __init__(self, image_name: str, matcher: IgnoreMatcher, cache: DigestCache, state_dir: str):
        self.image_name, self.matcher, self.cache, self.state_dir = image_name, matcher, cache, state_dir
        self.entries: list[ContextEntry] = []
        self.ca_file: str | None = None

    def directory(self, directory: str, rel_dir: str) -> None:
        try:
            with os.scandir(directory) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise ConfigError(f"cannot read {directory} in the context of image '{self.image_name}': {exc.strerror}",
                              "fix its permissions or add it to .dockerignore") from None
        matcher = self.matcher
        for item in items:
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            path = item.path
            if path == self.state_dir:
                continue  # Moorage's own state is never context
            st = item.stat(follow_symlinks=False)
            if not rel_dir and item.name == CA_ARCNAME:
                # The proxy CA changes no image content that matters: a build secret (or, for the
                # legacy builder, sent beside the context), never hashed, whatever the ignore rules say.
                if stat.S_ISREG(st.st_mode):
                    self.ca_file = path
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if matcher.patterns and matcher.excluded(rel):
                if is_dir and matcher.may_reinclude_below(rel):
                    self.directory(path, rel)
                continue
            mode = stat.S_IMODE(st.st_mode)
            if is_dir:
                self.entries.append(ContextEntry(rel, "dir", mode, 0, "", path))
                self.directory(path, rel)
            elif stat.S_ISLNK(st.st_mode):
                self.entries.append(ContextEntry(rel, "symlink", mode, 0, os.readlink(path), path))
            elif stat.S_ISREG(st.st_mode):
                self.entries.append(ContextEntry(rel, "file", mode, st.st_size, self.cache.digest(path, st), path))
            # sockets, fifos and devices are not sent (Docker skips them too)


def write_context_tar(ctx: BuildContext, fileobj, ca_bundle: Path | None = None) -> None:
    """Write the context as a deterministic tar (sorted, fixed mtime, root-owned).

    Each file is re-hashed as it is written; if it no longer matches the digest
    the tag was computed from, the build stops instead of building something else.
    ``ca_bundle`` is for the legacy builder only (it has no build secrets): it
    is added as ``moorage-ca.crt`` at the root, and is not part of the tag.
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
        if ca_bundle is None:
            return
        try:
            ca = Path(ca_bundle).read_bytes()
        except OSError:
            raise UserError(f"CA bundle {ca_bundle} cannot be read",
                            f"point {CA_ENV} at a readable PEM file or unset it") from None
        info = tarfile.TarInfo(CA_ARCNAME)
        info.mode, info.mtime, info.size = 0o644, TAR_MTIME, len(ca)
        tar.addfile(info, io.BytesIO(ca))


def ca_source(ctx: BuildContext, ca_bundle: Path | None) -> Path | None:
    """The CA bundle a build gets: ``ca_bundle`` (MOORAGE_CA_BUNDLE), else a moorage-ca.crt at the context root."""
    source = ca_bundle or ctx.ca_file
    if source is None:
        return None
    path = Path(source)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise UserError(f"CA bundle {source} cannot be read",
                        f"point {CA_ENV} at a readable PEM file or unset it")
    return path


def ca_bundle_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    value = (os.environ if environ is None else environ).get(CA_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"{CA_ENV}={value} is not a file", f"point {CA_ENV} at a PEM CA bundle or unset it")
    return path
