"""Shipping only the layers a containerd node lacks: an OCI archive of the missing blobs into ``ctr import``.

``docker save`` streams the whole image, every layer uncompressed, and a plain
``ctr images import`` of it reads (and stores) all of them again, although the
node usually holds all but the top layers from the image's previous version.
:func:`import_missing_layers` reads the save stream once, keeps a layer only
when the node's content store lacks it (a blob whose digest, or whose
``containerd.io/uncompressed`` label, is the layer's diff ID), and streams an
OCI image layout into ``ctr images import``: the image config, a manifest that
names every layer (the node's own blob for those it has) and only the missing
layer blobs. containerd imports an OCI layout without requiring every blob in
the archive; its unpack skips layers whose snapshots exist and finds the other
blobs in its store. What was sent is reported in bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..core import proc
from ..core.errors import CommandFailed

SPOOL_IN_MEMORY = 32 << 20  # a layer up to this size is kept in memory while its digest is computed
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Shipped:
    """What one import sent to the node."""

    ref: str
    bytes: int  # archive bytes sent to ctr
    image_bytes: int  # the uncompressed size of every layer
    layers: int  # layers sent
    total_layers: int


@dataclass(frozen=True)
class NodeBlob:
    digest: str
    media_type: str
    size: int | None = None  # None: the blob is the uncompressed layer itself (its size is the layer's)


def parse_content(listing: str) -> dict[str, NodeBlob]:
    """``ctr content ls`` → the node's blob for each uncompressed digest (diff ID) it can serve."""
    blobs: dict[str, NodeBlob] = {}
    for line in listing.splitlines()[1:]:
        fields = [f for f in line.split("\t") if f]
        if not fields or not fields[0].startswith("sha256:"):
            continue
        digest = fields[0]
        labels = dict(kv.partition("=")[::2] for kv in fields[-1].split(",") if "=" in kv) if len(fields) > 3 else {}
        uncompressed = labels.get("containerd.io/uncompressed")
        if uncompressed and uncompressed != digest:
            blobs.setdefault(uncompressed, NodeBlob(digest, OCI_LAYER_GZIP))
        else:
            blobs[digest] = NodeBlob(digest, OCI_LAYER)
    return blobs


def containerd_name(ref: str) -> str:
    """The name containerd gives a Docker reference (``moorage/backend:t`` → ``docker.io/moorage/backend:t``)."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if rest else f"docker.io/library/{ref}"


def _chunks(stream: Iterable[bytes]) -> io.RawIOBase:
    """A file object over an iterator of byte chunks (docker-py's save stream)."""
    iterator = iter(stream)

    class Reader(io.RawIOBase):
        pending = b""

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            while not self.pending:
                try:
                    self.pending = next(iterator)
                except StopIteration:
                    return 0
            n = min(len(buffer), len(self.pending))
            buffer[:n], self.pending = self.pending[:n], self.pending[n:]
            return n

    return io.BufferedReader(Reader(), buffer_size=1 << 20)


@dataclass
class _Saved:
    config: bytes
    layer_paths: list[str]
    layers: dict[str, tuple[str, int, tempfile.SpooledTemporaryFile | None]]  # path -> (diff id, size, data)


def _read_save(stream: Iterable[bytes], node: dict[str, NodeBlob]) -> _Saved:
    """Read a ``docker save`` archive once: the config, the layer order, each layer's diff ID, and the
    data of the layers the node lacks (a layer's digest is known only once it is read, so each is
    spooled while read and dropped if the node has it)."""
    files: dict[str, bytes] = {}
    layers: dict[str, tuple[str, int, tempfile.SpooledTemporaryFile | None]] = {}
    with tarfile.open(fileobj=_chunks(stream), mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            source = tar.extractfile(member)
            if member.name.endswith(".json") or member.name in ("manifest.json", "index.json", "oci-layout"):
                files[member.name] = source.read()
                continue
            digest = hashlib.sha256()
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                spool.write(chunk)
            diff_id = f"sha256:{digest.hexdigest()}"
            if diff_id in node:
                spool.close()
                spool = None
            layers[member.name] = (diff_id, member.size, spool)
    manifest = json.loads(files["manifest.json"])[0]
    return _Saved(files[manifest["Config"]], list(manifest["Layers"]), layers)


def _tar_member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info


def _oci_layout(saved: _Saved, ref: str, node: dict[str, NodeBlob], exact_size: Callable[[str], int]
                ) -> tuple[list[tuple[str, bytes | tempfile.SpooledTemporaryFile, int]], int]:
    """The members of the OCI archive, (name, data, size) with the missing layers only; and how many those are."""
    config_digest = f"sha256:{hashlib.sha256(saved.config).hexdigest()}"
    descriptors, ship = [], []
    for path in saved.layer_paths:
        diff_id, size, data = saved.layers[path]
        blob = node.get(diff_id)
        if blob is not None:
            on_node = size if blob.digest == diff_id else exact_size(blob.digest)
            descriptors.append({"mediaType": blob.media_type, "digest": blob.digest, "size": on_node})
        else:
            descriptors.append({"mediaType": OCI_LAYER, "digest": diff_id, "size": size})
            ship.append((f"blobs/sha256/{diff_id[7:]}", data, size))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(saved.config)},
                           "layers": descriptors}, separators=(",", ":")).encode()
    manifest_digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
        "annotations": {"io.containerd.image.name": containerd_name(ref),
                        "org.opencontainers.image.ref.name": ref.rpartition(":")[2]},
    }]}).encode()
    layout = b'{"imageLayoutVersion":"1.0.0"}'
    members = [("oci-layout", layout, len(layout)), ("index.json", index, len(index)),
               (f"blobs/sha256/{manifest_digest[7:]}", manifest, len(manifest)),
               (f"blobs/sha256/{config_digest[7:]}", saved.config, len(saved.config)), *ship]
    return members, len(ship)


def import_missing_layers(client, ref: str, ctr: Sequence[str], *, timeout: float = 900) -> Shipped:
    """Import ``ref`` from the engine into the node's containerd (``ctr`` = the ``ctr ... -n k8s.io``
    command prefix), sending only the layers the node lacks."""
    listing = proc.run([*ctr, "content", "ls"], timeout=60, what="ctr content ls").stdout
    node = parse_content(listing)
    saved = _read_save(client.api.get_image(ref), node)
    try:
        return _send(saved, ref, node, ctr, timeout, listing)
    finally:
        for _diff, _size, data in saved.layers.values():
            if data is not None:
                data.close()


def referring_manifests(listing: str) -> dict[str, str]:
    """``ctr content ls`` → for each blob a manifest refers to (its ``containerd.io/gc.ref.content.l.*``
    labels), that manifest's digest."""
    found: dict[str, str] = {}
    for line in listing.splitlines()[1:]:
        fields = [f for f in line.split("\t") if f]
        if len(fields) > 3 and fields[0].startswith("sha256:"):
            for key, _, value in (kv.partition("=") for kv in fields[-1].split(",")):
                if key.startswith("containerd.io/gc.ref.content.l."):
                    found.setdefault(value, fields[0])
    return found


def blob_size(ctr: Sequence[str], digest: str, manifests: dict[str, str]) -> int:
    """The exact size of a blob in the node's store (``ctr content ls`` prints it rounded).

    ``ctr content info`` (containerd 1.7+); else the descriptor in a manifest on the node that names
    the blob (containerd 1.6 has no ``info``); else the blob read whole.
    """
    info = proc.run([*ctr, "content", "info", digest], timeout=60, check=False, what="ctr content info")
    if info.returncode == 0:
        return int(json.loads(info.stdout)["size"])
    if digest in manifests:
        body = proc.run([*ctr, "content", "get", manifests[digest]], timeout=60, check=False,
                        what="ctr content get").stdout
        try:
            sizes = {layer["digest"]: int(layer["size"]) for layer in json.loads(body).get("layers", [])}
        except (ValueError, KeyError, TypeError):
            sizes = {}
        if digest in sizes:
            return sizes[digest]
    child = proc.start([*ctr, "content", "get", digest], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    with child.stdout:
        size = sum(len(chunk) for chunk in iter(lambda: child.stdout.read(1 << 20), b""))
    if child.wait(timeout=300) != 0:
        raise CommandFailed(f"ctr content get {digest} failed (exit {child.returncode})",
                            "check that ctr reaches the node's containerd (CONTAINERD_ADDRESS)",
                            returncode=child.returncode)
    return size


def _send(saved: _Saved, ref: str, node: dict[str, NodeBlob], ctr: Sequence[str], timeout: float,
          listing: str = "") -> Shipped:
    manifests = referring_manifests(listing)

    def exact_size(digest: str) -> int:
        return blob_size(ctr, digest, manifests)

    members, count = _oci_layout(saved, ref, node, exact_size)
    command = [*ctr, "images", "import", "-"]
    with tempfile.TemporaryFile() as err:
        child = proc.start(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        counter = _Counting(child.stdin)
        try:
            with tarfile.open(fileobj=counter, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name, data, size in members:
                    if data is None:
                        raise CommandFailed(f"a layer of {ref} was not kept while the image was read", returncode=-1)
                    if isinstance(data, bytes):
                        tar.addfile(_tar_member(name, size), io.BytesIO(data))
                    else:
                        data.seek(0)
                        tar.addfile(_tar_member(name, size), data)
        except BrokenPipeError:
            pass  # ctr stopped reading: its status says why
        finally:
            try:
                child.stdin.close()
            except BrokenPipeError:
                pass
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise CommandFailed(f"ctr images import of {ref} did not finish within {timeout:g}s", returncode=-1) from None
        if code != 0:
            err.seek(0)
            stderr = err.read().decode(errors="replace")
            raise CommandFailed(f"ctr images import failed (exit {code}) for {ref}: {proc.tail_lines(stderr)}",
                                "check that ctr reaches the node's containerd (CONTAINERD_ADDRESS)",
                                stderr=stderr, returncode=code)
    return Shipped(ref, counter.count, sum(size for _d, size, _x in saved.layers.values()), count,
                   len(saved.layer_paths))


class _Counting(io.RawIOBase):
    """A write-only stream that counts what passes through to ``target``."""

    def __init__(self, target):
        self.target, self.count = target, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.target.write(data)
        self.count += len(data)
        return len(data)
