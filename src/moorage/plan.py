"""The deploy plan: a pure function from configuration and observed state to steps.

``decide`` needs no Docker, no cluster and no Helm: the orchestration layer
(``moorage.deploy``) observes the world (which images exist in the build
engine and where the cluster reads them, what the release has deployed) and
hands plain values in. ``--dry-run`` prints the plan and stops there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ImageFacts:
    """One image as observed: its content-hash reference and where it already is."""

    name: str
    ref: str
    built: bool
    delivered: bool


@dataclass(frozen=True)
class ReleaseState:
    """What Helm says of the release (None when it is not installed)."""

    revision: int
    status: str
    digest: str = ""


@dataclass(frozen=True)
class DeployPlan:
    environment: str
    namespace: str
    context: str | None
    cluster: str
    delivery: str
    build: tuple[str, ...]
    reuse: tuple[str, ...]
    deliver: tuple[str, ...]
    upgrade: bool
    first_install: bool
    rollback_to: int | None
    digest: str
    smoke: tuple[str, ...] = ()
    values_files: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        """The plan as a person reads it (``--dry-run``)."""
        out = [f"environment {self.environment}: namespace {self.namespace}, "
               f"context {self.context or '(current)'}, cluster {self.cluster}"]
        out += [f"build    {name}" for name in self.build]
        out += [f"reuse    {name} (already built)" for name in self.reuse]
        if self.delivery == "none":
            out.append("deliver  nothing: the cluster reads the build engine directly")
        else:
            out += [f"deliver  {name} via {self.delivery}" for name in self.deliver]
        if self.upgrade:
            verb = "install" if self.first_install else "upgrade"
            out.append(f"helm     {verb} with values: {', '.join(self.values_files)}")
            if self.rollback_to is not None:
                out.append(f"on failure roll back to revision {self.rollback_to}")
        else:
            out.append("helm     release is up to date (same chart, values and images)")
        out.append("wait     for the release's workloads to be ready")
        if self.smoke:
            out.append(f"smoke    {', '.join(self.smoke)}")
        out += [f"note     {note}" for note in self.notes]
        return out

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def release_digest(chart_dir: Path, values: Sequence[Mapping[str, Any]]) -> str:
    """A digest of everything that makes a release: chart files and every values layer.

    Stored in the release's values (``global.deployDigest``) so that a re-run
    with nothing changed can say "up to date" without calling helm upgrade.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in chart_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(chart_dir)).encode() + b"\0")
        digest.update(path.read_bytes())
    for layer in values:
        digest.update(json.dumps(layer, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def decide(*, environment: str, namespace: str, context: str | None, cluster: str, delivery: str,
           images: Sequence[ImageFacts], release: ReleaseState | None, digest: str,
           force: bool = False, smoke: Sequence[str] = (), values_files: Sequence[str] = ()) -> DeployPlan:
    """The steps for one deploy, from what was observed."""
    build = tuple(i.name for i in images if force or not i.built)
    reuse = tuple(i.name for i in images if i.name not in build)
    deliver: tuple[str, ...] = ()
    if delivery != "none":
        deliver = tuple(i.name for i in images if i.name in build or not i.delivered)
    notes = []
    deployed = release is not None and release.status == "deployed"
    upgrade = force or not deployed or release.digest != digest or bool(build)
    if release is not None and release.status == "failed":
        notes.append(f"revision {release.revision} failed; this deploy replaces it")
    rollback_to = release.revision if deployed else None
    return DeployPlan(
        environment=environment, namespace=namespace, context=context, cluster=cluster, delivery=delivery,
        build=build, reuse=reuse, deliver=deliver, upgrade=upgrade, first_install=release is None,
        rollback_to=rollback_to if upgrade else None, digest=digest, smoke=tuple(smoke),
        values_files=tuple(values_files), notes=tuple(notes),
    )


@dataclass(frozen=True)
class SchemaCheck:
    """Where a failed upgrade left the database, and whether the previous code may run on it."""

    before: tuple[str, ...]
    after: tuple[str, ...]
    applied: tuple[str, ...]  # revisions the upgrade applied, oldest first
    incompatible: tuple[str, ...]  # those not declared backward-compatible

    @property
    def moved(self) -> bool:
        return self.before != self.after

    @property
    def previous_code_fits(self) -> bool:
        """Rolling the pods back is safe: nothing was applied, or all of it was declared compatible."""
        return not self.moved or not self.incompatible


def schema_check(before: Sequence[str], after: Sequence[str], pending_before: Sequence[str],
                 pending_after: Sequence[str], compatible: Sequence[str]) -> SchemaCheck:
    """Compare the database's heads before and after a failed upgrade.

    ``pending_*`` are the new code's revisions the database lacked at each moment (oldest first);
    what was pending before and is not any more was applied by the upgrade.
    """
    applied = tuple(r for r in pending_before if r not in set(pending_after))
    incompatible = tuple(r for r in applied if r not in set(compatible))
    return SchemaCheck(tuple(sorted(before)), tuple(sorted(after)), applied, incompatible)
