"""Which backups to keep: the retention policy (and its defaults), the pure decision, and pruning."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from .store import Backup, delete_backup, list_backups, stale_partials, utcnow


@dataclass(frozen=True)
class RetentionPolicy:
    """How many backups ``prune`` keeps. The defaults here are THE defaults (of its flags and of invoke config ``backup.*``)."""

    keep_last: int = 7
    keep_daily: int = 7  # days back from today: newest backup of each day
    keep_weekly: int = 4  # ISO weeks back from this one: newest backup of each week

    def __post_init__(self):
        if self.keep_last < 1:
            raise UserError("--keep-last must be at least 1", "prune never deletes the newest backup")
        if self.keep_daily < 0 or self.keep_weekly < 0:
            raise UserError("--keep-daily and --keep-weekly must be 0 or more", None)

    @classmethod
    def choose(cls, settings: Mapping[str, Any], **flags: Any) -> RetentionPolicy:
        """A flag that was given wins over ``settings`` (invoke config ``backup.*``), which win over the defaults."""
        chosen = {}
        for f in fields(cls):
            value = flags.get(f.name)
            if value is None:
                value = settings.get(f.name)
            chosen[f.name] = f.default if value is None else int(value)
        return cls(**chosen)


@dataclass(frozen=True)
class PruneDecision:
    name: str
    created: dt.datetime
    keep: bool
    reasons: tuple[str, ...]


def prune_plan(backups: Iterable[tuple[str, dt.datetime]], policy: RetentionPolicy,
               now: dt.datetime) -> list[PruneDecision]:
    """Which backups to keep, newest first. Pure: names and times in, decisions out.

    A backup is kept if it is among the ``keep_last`` newest, or the newest of
    a calendar day (UTC) within the last ``keep_daily`` days, or the newest of
    an ISO week within the last ``keep_weekly`` weeks. Backups from the future
    (clock skew) are kept.
    """
    items = sorted(backups, key=lambda b: (b[1], b[0]), reverse=True)
    today = now.astimezone(dt.UTC).date()
    first_day = today - dt.timedelta(days=policy.keep_daily - 1) if policy.keep_daily else None
    this_week = today - dt.timedelta(days=today.weekday())
    first_week = this_week - dt.timedelta(weeks=policy.keep_weekly - 1) if policy.keep_weekly else None
    days_seen: set[dt.date] = set()
    weeks_seen: set[dt.date] = set()
    out = []
    for i, (name, created) in enumerate(items):
        day = created.astimezone(dt.UTC).date()
        week = day - dt.timedelta(days=day.weekday())
        reasons = []
        if created > now:
            reasons.append("newer than now")
        if i < policy.keep_last:
            reasons.append(f"one of the {policy.keep_last} newest")
        if first_day and first_day <= day <= today and day not in days_seen:
            days_seen.add(day)
            reasons.append(f"newest of {day.isoformat()}")
        if first_week and first_week <= week <= this_week and week not in weeks_seen:
            weeks_seen.add(week)
            reasons.append(f"newest of week {day.isocalendar()[0]}-W{day.isocalendar()[1]:02d}")
        out.append(PruneDecision(name, created, bool(reasons), tuple(reasons) or ("outside the retention policy",)))
    return out


def prune(directory: Path, policy: RetentionPolicy, *, now: dt.datetime | None = None,
          dry_run: bool = False) -> tuple[list[PruneDecision], list[Backup], list[Path]]:
    """Apply :func:`prune_plan` to the valid backups; invalid ones are left for a person to look at.

    Returns the decisions, the invalid backups skipped and the stale partial files (deleted too).
    """
    backups = list_backups(directory)
    valid = {b.name: b for b in backups if b.valid}
    decisions = prune_plan([(n, b.created) for n, b in valid.items()], policy, now or utcnow())
    skipped = [b for b in backups if not b.valid]
    partials = stale_partials(directory)
    if not dry_run:
        for d in decisions:
            if not d.keep:
                delete_backup(valid[d.name])
        for p in partials:
            p.unlink(missing_ok=True)
    return decisions, skipped, partials
