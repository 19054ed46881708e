"""Backups the chart's CronJob writes into its volume: listed, fetched and then used like local ones.

The CronJob (chart/files/scripts/backup.sh) leaves in its claim the same pair
of files ``backup.create`` leaves on disk: ``<stem>.dump`` and ``<stem>.json``
(sha256, size, database, environment, migration head, tables, row counts,
times), the dump committed by a rename after its metadata. Its own pods are
gone once a run ends, so Moorage reads the claim through a short-lived
*reader pod*: the CronJob's pod spec (same image, security context, claim and
scheduling) with only the backup volume, mounted read-only, no environment
(no database password), and ``sleep`` as its command. Listing is one exec;
fetching streams the dump over an exec into a locked local ``.partial``
(hashed as it arrives), checks its size and sha256 against the metadata, then
commits it like ``backup.create`` does. From then on verify, restore and
drill treat it as a local backup. The reader pod is deleted when the command
ends; if Moorage is killed first, its deadline ends it.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .. import kube
from ..core.errors import OperationFailed, UserError
from .create import Sink, interruptible
from .store import PARTIAL, SUFFIX, Backup, fsync_dir, read_backup, utcnow, write_json_atomic
from .verify import BackupInvalid

MOUNT = "/backups"
READER_CONTAINER = "reader"
READER_COMPONENT = "backup-reader"
READER_SECONDS = 6 * 3600  # the longest fetch a reader pod serves; it ends itself then
START_TIMEOUT = 180.0
POLL_SECONDS = 0.25
FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.dump$")
POD_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                "CreateContainerError", "RunContainerError"}

# One line per dump: "dump <TAB> file <TAB> size <TAB> metadata JSON (newlines removed) <TAB> drill JSON";
# one per unfinished file: "partial <TAB> file <TAB> size". Raw tabs in JSON are only whitespace.
LIST_SCRIPT = f"""cd {MOUNT} 2>/dev/null || exit 0
for f in *.dump; do
  [ -f "$f" ] || continue
  printf 'dump\\t%s\\t%s\\t' "$f" "$(stat -c %s "$f")"
  [ -f "${{f%.dump}}.json" ] && tr -d '\\n\\r\\t' < "${{f%.dump}}.json"
  printf '\\t'
  [ -f "${{f%.dump}}.drill.json" ] && tr -d '\\n\\r\\t' < "${{f%.dump}}.drill.json"
  printf '\\n'
done
for f in *.partial; do [ -f "$f" ] && printf 'partial\\t%s\\t%s\\n' "$f" "$(stat -c %s "$f")"; done
exit 0
"""


@dataclass
class RemoteBackup(Backup):
    """A backup in the CronJob's volume; ``path`` is its path inside the reader pod."""

    volume: str = ""  # "in-cluster <namespace>/<claim>"

    @property
    def location(self) -> str:
        return "in-cluster"


def location_of(backup: Backup) -> str:
    return getattr(backup, "location", "local")


def parse_listing(text: str, volume: str) -> tuple[list[RemoteBackup], list[str]]:
    """The reader's listing: the backups (newest first, each judged like ``store.read_backup``) and partial files."""
    found, partials = [], []
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "partial" and len(parts) >= 2:
            partials.append(parts[1])
        if parts[0] != "dump" or len(parts) < 4 or not FILE_RE.match(parts[1]):
            continue
        found.append(_judge(parts[1], parts[2], parts[3], parts[4] if len(parts) > 4 else "", volume))
    return sorted(found, key=_when, reverse=True), partials


def _judge(file: str, size_text: str, meta_text: str, drill_text: str, volume: str) -> RemoteBackup:
    b = RemoteBackup(PurePosixPath(MOUNT) / file, volume=volume)  # type: ignore[arg-type]
    size = int(size_text) if size_text.isdigit() else None
    if not meta_text:
        b.problem = "no metadata"
        return b
    try:
        b.meta = json.loads(meta_text)
    except ValueError as exc:
        b.problem = f"unreadable metadata: {exc}"
        return b
    if not isinstance(b.meta, dict) or not isinstance(b.meta.get("sha256"), str):
        b.problem = "metadata without a checksum"
    elif b.meta.get("size") != size:
        b.problem = f"size {size} differs from the recorded {b.meta.get('size')}"
    if drill_text and isinstance(b.meta, dict) and "last_drill" not in b.meta:
        with contextlib.suppress(ValueError):
            b.meta["last_drill"] = json.loads(drill_text)
    return b


def newest(backups: Sequence[Backup]) -> Backup | None:
    """The newest valid ordinary backup of a list (the CronJob makes only ordinary ones)."""
    return max((b for b in backups if b.valid and getattr(b, "kind", "ordinary") == "ordinary"), key=_when,
               default=None)


def _when(b: Backup) -> tuple[float, str]:
    return (b.created.timestamp() if b.created else 0.0, b.name)


def merged(local: Sequence[Backup], remote: Sequence[RemoteBackup]) -> list[tuple[Backup, str]]:
    """Each backup once with its location: ``local``, ``in-cluster`` or ``local+in-cluster`` (a fetched copy)."""
    by_name = {b.name: b for b in local}
    out: list[tuple[Backup, str]] = []
    for r in remote:
        twin = by_name.get(r.name)
        if twin is not None and (twin.meta or {}).get("sha256") == (r.meta or {}).get("sha256"):
            continue
        out.append((r, "in-cluster"))
    twins = {r.name for r in remote if r.name in by_name
             and (by_name[r.name].meta or {}).get("sha256") == (r.meta or {}).get("sha256")}
    out += [(b, "local+in-cluster" if b.name in twins else "local") for b in local]
    return sorted(out, key=lambda pair: _when(pair[0]), reverse=True)


# --------------------------------------------------------------------------- the reader pod


def reader_pod(cronjob: dict[str, Any], name: str) -> dict[str, Any]:
    """A pod from the CronJob's pod template that only mounts the backup volume, read-only, and sleeps."""
    spec = copy.deepcopy(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    labels = dict(cronjob["spec"]["jobTemplate"]["spec"]["template"].get("metadata", {}).get("labels") or {})
    container = next((c for c in spec.get("containers") or []
                      if any(m.get("mountPath") == MOUNT for m in c.get("volumeMounts") or [])), None)
    if container is None:
        raise UserError(f"CronJob {cronjob['metadata']['name']} mounts nothing at {MOUNT}",
                        "the chart's backup CronJob keeps its dumps there; redeploy with the current chart")
    volume_name = next(m["name"] for m in container["volumeMounts"] if m.get("mountPath") == MOUNT)
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") == volume_name]
    labels.update({"app.kubernetes.io/component": READER_COMPONENT, "app.kubernetes.io/managed-by": "moorage"})
    keep = ("securityContext", "serviceAccountName", "imagePullSecrets", "nodeSelector", "affinity", "tolerations",
            "priorityClassName", "topologySpreadConstraints")
    pod_spec = {k: spec[k] for k in keep if k in spec}
    pod_spec.update({
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "activeDeadlineSeconds": READER_SECONDS,
        "terminationGracePeriodSeconds": 1,
        "volumes": volumes,
        "containers": [{
            "name": READER_CONTAINER,
            "image": container["image"],
            "imagePullPolicy": container.get("imagePullPolicy", "IfNotPresent"),
            "command": ["sleep", str(READER_SECONDS)],
            "resources": container.get("resources") or {},
            "securityContext": container.get("securityContext") or {},
            "volumeMounts": [{"name": volume_name, "mountPath": MOUNT, "readOnly": True}],
        }],
    })
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": cronjob["metadata"].get("namespace"), "labels": labels,
                         "annotations": {"moorage.dev/purpose": "reads the backup volume for inv backup.*; "
                                                                "deleted when the command ends"}},
            "spec": pod_spec}


def claim_of(cronjob: dict[str, Any]) -> str:
    """The claim (or other volume) behind the CronJob's backup mount, for people to read."""
    try:
        volume = reader_pod(cronjob, "x")["spec"]["volumes"][0]
    except (UserError, IndexError, KeyError):
        return "?"
    claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
    return f"pvc/{claim}" if claim else f"volume/{volume.get('name')}"


class BackupVolume:
    """The backup CronJob ``cronjob`` of ``namespace`` and the volume it writes into."""

    def __init__(self, api, namespace: str, cronjob: str):
        self.api, self.namespace, self.cronjob_name = api, namespace, cronjob

    def cronjob(self) -> dict[str, Any]:
        from kubernetes.client import BatchV1Api
        from kubernetes.client.exceptions import ApiException

        try:
            return kube.read_json(kube.retrying(BatchV1Api(self.api).read_namespaced_cron_job, self.cronjob_name,
                                                self.namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                raise UserError(f"the backup CronJob {self.namespace}/{self.cronjob_name} does not exist",
                                "deploy the environment with backup.enabled: true in its values") from None
            raise kube.api_error(self.api, exc, f"reading cronjob {self.cronjob_name}") from None

    @contextlib.contextmanager
    def reader(self) -> Iterator[Reader]:
        """A running reader pod for the block; deleted afterwards (also on errors and Ctrl-C)."""
        from kubernetes.client import CoreV1Api
        from kubernetes.client.exceptions import ApiException

        cronjob = self.cronjob()
        name = f"{self.cronjob_name}-reader-{secrets.token_hex(3)}"
        pod = reader_pod(cronjob, name)
        core = CoreV1Api(self.api)
        try:
            kube.retrying(core.create_namespaced_pod, self.namespace, pod, _preload_content=False)
        except ApiException as exc:
            raise kube.api_error(self.api, exc, f"creating the backup reader pod {name}") from None
        try:
            with interruptible():
                _wait_running(core, self.namespace, name)
                yield Reader(self.api, self.namespace, name, f"in-cluster {self.namespace}/{claim_of(cronjob)}")
        finally:
            with contextlib.suppress(Exception):
                core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0, _preload_content=False)


def _wait_running(core, namespace: str, name: str, timeout: float = START_TIMEOUT) -> None:
    """Until the reader's container runs; a pod that cannot start fails at once with the reason."""
    deadline = time.monotonic() + timeout
    reason = "pending"
    while time.monotonic() < deadline:
        pod = kube.read_json(kube.retrying(core.read_namespaced_pod, name, namespace, _preload_content=False))
        status = pod.get("status") or {}
        if status.get("phase") in ("Failed", "Succeeded"):
            raise OperationFailed(f"the backup reader pod {namespace}/{name} ended ({status.get('phase')}): "
                                  f"{status.get('reason') or status.get('message') or 'no reason given'}")
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            if "running" in state:
                return
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in POD_FAILURES:
                raise OperationFailed(f"the backup reader pod {namespace}/{name} cannot start: "
                                      f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": "),
                                      "the reader uses the backup CronJob's image; check that it can be pulled")
            reason = waiting.get("reason") or reason
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                reason = f"unschedulable: {cond.get('message', '')}"
        time.sleep(POLL_SECONDS)
    raise OperationFailed(f"the backup reader pod {namespace}/{name} did not start within {timeout:.0f}s ({reason})",
                          "check the backup claim and the node (kubectl describe pod)")


@dataclass
class Reader:
    """A running reader pod: list the volume, fetch a dump out of it."""

    api: Any
    namespace: str
    pod: str
    volume: str

    def _exec(self, command: list[str], stdout: Callable[[bytes], None]) -> None:
        result = kube.exec_stream(self.api, self.namespace, self.pod, command, container=READER_CONTAINER,
                                  stdout=stdout)
        if result.exit_code != 0:
            raise OperationFailed(f"reading the backup volume in {self.namespace}/{self.pod} failed "
                                  f"(exit {result.exit_code}): {result.stderr.strip()[-300:]}")

    def list(self) -> tuple[list[RemoteBackup], list[str]]:
        out = bytearray()
        self._exec(["sh", "-c", LIST_SCRIPT], out.extend)
        return parse_listing(out.decode("utf-8", "replace"), self.volume)

    def find(self, ref: str) -> RemoteBackup | None:
        """``latest`` (the newest valid one) or a name; None when the volume has no such backup."""
        backups, _ = self.list()
        if ref == "latest":
            return newest(backups)  # type: ignore[return-value]
        name = ref[: -len(SUFFIX)] if ref.endswith(SUFFIX) else ref
        return next((b for b in backups if b.name == name), None)

    def fetch(self, remote: RemoteBackup, directory: Path,
              progress: Callable[[int], None] | None = None) -> Backup:
        """Copy ``remote`` into ``directory`` as a local backup (the same checks as a new one)."""
        if not remote.valid:
            raise UserError(f"in-cluster backup {remote.name} is not usable: {remote.problem}", "use another backup")
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / remote.path.name
        if final.exists():
            here = read_backup(final)
            if (here.meta or {}).get("sha256") == remote.meta["sha256"]:
                return here
            raise UserError(f"a different local backup is already named {final.name}",
                            f"move {final} away, then fetch again")
        partial = final.with_name(final.name + PARTIAL)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        committed = False
        try:
            with interruptible():
                sink = Sink(fd, on_progress=progress)
                self._exec(["cat", "--", str(remote.path)], sink)
            os.fsync(fd)
            if sink.size != remote.meta["size"] or sink.hash.hexdigest() != remote.meta["sha256"]:
                raise BackupInvalid(f"the copy of {remote.name} ({sink.size} bytes, sha256 "
                                    f"{sink.hash.hexdigest()[:12]}...) does not match its metadata: the file in "
                                    f"the volume is damaged", "use another backup")
            meta = {**remote.meta, "fetched_from": remote.volume, "fetched_at": utcnow().isoformat()}
            write_json_atomic(final.with_suffix(".json"), meta)
            os.replace(partial, final)  # the commit point, as for a new backup
            committed = True
            fsync_dir(directory)
            return Backup(final, meta)
        finally:
            os.close(fd)
            if not committed:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
