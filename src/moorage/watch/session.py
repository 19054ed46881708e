"""One ``dev.watch`` session: bring the environment up to date, then turn each batch of saved files
into one cycle (sync into running containers, rebuild an image, upgrade the release) and one line.

What the session keeps per image: the reference deployed, the snapshot of the
inputs that image was built from (``baseline``), the snapshot its containers
now hold (``current``: the baseline plus every synced change) and the pods that
hold it. A pod that does not (new, replaced) gets the whole difference between
``baseline`` and ``current`` (the drift) before anything else.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .. import deploy
from ..connection import connect
from ..core.config import Environment, Project
from ..core.errors import Interrupted, MoorageError, OperationFailed
from ..core.report import Reporter, human_bytes
from ..images import DigestCache, scan_context
from ..images.context import CACHE_FILE
from . import live
from .changes import ImageChange, Snapshot, describe, diff, first_save, plan_change, snapshot_of
from .files import Batch

RETRY_SECONDS = 30.0


def chart_digest(project: Project, env: Environment) -> str:
    """A digest of the chart's files and the environment's values files: a change means a helm upgrade."""
    digest = hashlib.sha256()
    for path in sorted(p for p in project.chart.rglob("*") if p.is_file()) + list(env.values_files):
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
    return digest.hexdigest()


def scan(project: Project) -> dict[str, Snapshot]:
    """Every image's inputs as they are on disk now (file digests come from the project's cache)."""
    cache = DigestCache(project.root / CACHE_FILE)
    snaps = {image.name: snapshot_of(scan_context(image, project.root, cache), project.root)
             for image in project.images}
    cache.save()
    return snaps


class Session:
    """The state of one watch, and its cycles."""

    def __init__(self, project: Project, env: Environment, reporter: Reporter, deployed: dict[str, str],
                 baseline: dict[str, Snapshot], digests: dict[str, str] | None = None):
        self.project, self.env, self.reporter = project, env, reporter
        self.images = {image.name: image for image in project.images}
        self.deployed = dict(deployed)
        self.digests = dict(digests or {})  # the digests a registry deploy pinned the images to
        self.baseline = dict(baseline)
        self.current = dict(baseline)
        self.synced: dict[str, set[str]] = {name: set() for name in self.images}
        self.stale: set[str] = set()
        self.chart = chart_digest(project, env)
        self.cycles = 0
        self.cluster = connect(project, env, read_history=False)
        self.api = self.cluster.api
        self.say_lock = threading.Lock()
        self.logs = live.Logs(self.api, env.namespace, self.say)

    def say(self, text: str) -> None:
        with self.say_lock:
            self.reporter.line(text)

    # -- one cycle ----------------------------------------------------------------------------------

    def cycle(self, batch: Batch) -> str | None:
        """Act on a batch of saved files; the cycle's line (None when no input really changed)."""
        snaps = scan(self.project)
        chart = chart_digest(self.project, self.env)
        diffs = {name: d for name in self.images if (d := diff(self.current[name], snaps[name]))}
        changes = {name: plan_change(self.images[name], d) for name, d in diffs.items()}
        if not changes and chart == self.chart:
            return None
        self.cycles += 1
        paths = sorted({p for d in diffs.values() for p in d.paths} | self._chart_paths(batch, chart))
        saved_at = first_save(paths, self.project.root, batch.seen_at)
        rebuild = sorted(n for n, c in changes.items() if c.rebuild or n in self.stale)
        done: list[str] = []
        problems: list[str] = []
        for name in [n for n in changes if n not in rebuild]:
            line, problem = self.sync(name, changes[name], snaps[name])
            done.append(line)
            problems += [problem] if problem else []
        if rebuild or chart != self.chart:
            line, problem = self.redeploy(rebuild, snaps, chart)
            done.append(line)
            problems += [problem] if problem else []
            done += self.resync()
        ready = f"ready {time.time() - saved_at:.2f}s after the save" if not problems else "NOT ready"
        text = f"cycle {self.cycles}: {describe(paths)} changed -> {'; '.join(done)}; {ready}"
        return "\n".join([text, *problems])

    def _chart_paths(self, batch: Batch, chart: str) -> set[str]:
        if chart == self.chart:
            return set()
        root = self.project.root.resolve()
        return {Path(p).relative_to(root).as_posix() if Path(p).is_relative_to(root) else p for p in batch.paths
                if Path(p).is_relative_to(self.project.chart.resolve())
                or Path(p) in {f.resolve() for f in self.env.values_files}}

    # -- the sync path ------------------------------------------------------------------------------

    def drift(self, name: str) -> ImageChange:
        """Everything a container fresh from the image lacks: the synced changes since it was built."""
        return plan_change(self.images[name], diff(self.baseline[name], self.current[name]))

    def sync(self, name: str, change: ImageChange, snap: Snapshot) -> tuple[str, str]:
        """Copy one image's change into its running containers; (what was done, the error if any)."""
        before = self.current[name]
        self.current[name] = snap
        full = self.drift(name)
        if not full.files and not change.files:
            return f"{name}: nothing to copy", ""
        delta = change
        try:
            outcomes = self._sync_all(name, lambda t: delta if t.uid in self.synced[name] else full)
        except MoorageError as exc:
            self.current[name] = before
            return f"{name}: sync failed", f"  {exc.line()}"
        pods = {o.target.pod for o in outcomes}
        files = max((o.copied.files + o.copied.removed for o in outcomes), default=change.files)
        sent = sum(o.copied.bytes for o in outcomes)
        actions = sorted({a for o in outcomes for a in o.done})
        failed = [o for o in outcomes if o.error]
        line = (f"{name}: synced {files} file{'s' * (files != 1)} ({human_bytes(sent)}) to {len(pods)} "
                f"pod{'s' * (len(pods) != 1)}" + (f", ran {', '.join(actions)}" if actions else ""))
        if failed:
            error = "\n".join(f"    {x}" for x in failed[0].error.splitlines()[-6:])
            return line, f"  {name}: {change.actions[-1] if change.actions else 'the action'} failed in " \
                         f"{failed[0].target.pod}:\n{error}"
        return line, ""

    def _sync_all(self, name: str, change_for: Callable[[live.Target], ImageChange]) -> list[live.Outcome]:
        """Sync every running container of the image; a pod that goes away meanwhile is replaced by the
        pods then running (the new ones get the whole drift), for up to RETRY_SECONDS."""
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed

        done: dict[str, live.Outcome] = {}
        for attempt in Retrying(retry=retry_if_exception(live.pod_gone), stop=stop_after_delay(RETRY_SECONDS),
                                wait=wait_fixed(0.5), reraise=True):
            with attempt:
                targets = live.targets(self.api, self.env.namespace, self.deployed[name], self.digests.get(name, ""))
                if not targets:
                    raise OperationFailed(f"no running container of image {name} ({self.deployed[name]}): "
                                          "pod not found", "see inv dev.status")
                for target in targets:
                    if target.uid in done:
                        continue
                    self.logs.follow(target)
                    change = change_for(target)
                    done[target.uid] = live.sync_container(
                        self.api, self.env.namespace, target, self.project.root, change.copy, change.delete,
                        change.actions, timeout=self.env.timeout)
                    self.synced[name].add(target.uid)
        return list(done.values())

    def resync(self) -> list[str]:
        """Give the image's drift to containers that lack it (new or replaced pods); a line for each image."""
        lines = []
        for name in self.images:
            full = self.drift(name)
            if not full.files or name in self.stale:
                continue
            targets = live.targets(self.api, self.env.namespace, self.deployed[name], self.digests.get(name, ""))
            fresh = [t for t in targets if t.uid not in self.synced[name]]
            if not fresh:
                continue
            try:
                outcomes = self._sync_all(name, lambda _t, full=full: full)
            except MoorageError as exc:
                lines.append(f"{name}: new pod(s) {', '.join(t.pod for t in fresh)} lack the synced code: {exc.line()}")
                continue
            failed = [o.error for o in outcomes if o.error]
            lines.append(f"{name}: new pod(s) {', '.join(t.pod for t in fresh)} got the {full.files} synced "
                         f"file(s)" + (f", but: {failed[0].splitlines()[-1]}" if failed else ""))
        return lines

    # -- the rebuild path ---------------------------------------------------------------------------

    def redeploy(self, rebuild: list[str], snaps: dict[str, Snapshot], chart: str) -> tuple[str, str]:
        """``dev.deploy`` for the images in ``rebuild`` only (the others keep what they run), which also
        upgrades the release with any chart or values change; (what was done, the error if any)."""
        keep = {name: ref for name, ref in self.deployed.items() if name not in rebuild}
        quiet = Reporter(stream=io.StringIO(), tty=False)
        try:
            summary = deploy.deploy(self.project, self.env, deploy.Options(keep=keep, smoke=False), quiet)
        except Interrupted:
            raise
        except MoorageError as exc:
            self.stale.update(rebuild)
            for name in rebuild:
                self.current[name] = snaps[name]
            self.chart = chart
            tail = [f"    {x}" for x in quiet.stream.getvalue().splitlines()[-12:]]
            return f"rebuild of {', '.join(rebuild) or 'the release'} failed", "\n".join([f"  {exc.line()}", *tail])
        self.chart = chart
        for name in rebuild:
            self.deployed[name] = summary.images[name]
            self.digests[name] = summary.digests.get(name, "")
            self.baseline[name] = self.current[name] = snaps[name]
            self.synced[name] = set()
            self.stale.discard(name)
            for target in live.targets(self.api, self.env.namespace, self.deployed[name], self.digests.get(name, "")):
                self.logs.follow(target, from_start=True)
        sent = sum(summary.shipped.values())
        built = f"rebuilt {', '.join(summary.built)} (sent {human_bytes(sent)})" if summary.built else "built nothing"
        verb = f"upgraded to revision {summary.revision}" if summary.status == "deployed" else "release unchanged"
        phases = ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in summary.phases.items())
        return f"{built}, {verb} ({phases})", ""

    # -- the end ------------------------------------------------------------------------------------

    def drifted(self) -> dict[str, int]:
        """Images whose containers run code that no image holds, with how many files differ."""
        return {name: self.drift(name).files for name in self.images if self.drift(name).files}
