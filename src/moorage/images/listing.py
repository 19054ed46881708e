"""Listing: each image's tag and what the engine holds for it, as rows for a table or JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..core.report import human_bytes
from .tags import ImageState


@dataclass(frozen=True)
class ImageRow:
    name: str
    ref: str
    tag: str
    built: bool
    size: int | None = None
    created: str | None = None
    image_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def list_rows(states: Sequence[ImageState], inspected: Mapping[str, dict | None]) -> list[ImageRow]:
    """One row per image from ``docker inspect`` of its reference (None: not built)."""
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
