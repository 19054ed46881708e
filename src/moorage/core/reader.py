"""Typed reading of a raw configuration mapping, with errors that name the key and the file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError


class Reader:
    """Typed access to a raw mapping, with errors that name the key and the file."""

    def __init__(self, raw: Mapping[str, Any], where: str, source: str):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} in {source} must be a mapping, got {type(raw).__name__}",
                              f"fix {where} in {source}")
        self.raw = raw
        self.where = where
        self.source = source

    def _bad(self, key: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(
            f"{self.where}.{key} in {self.source} must be {expected}, got {value!r}",
            f"fix {self.where}.{key} in {self.source}",
        )

    def unknown(self, allowed: set[str]) -> None:
        extra = sorted(set(self.raw) - allowed)
        if extra:
            raise ConfigError(
                f"unknown key {self.where}.{extra[0]} in {self.source}",
                f"remove it or use one of: {', '.join(sorted(allowed))}",
            )

    def str(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw.get(key, default)
        if value is None:
            if required:
                raise ConfigError(f"{self.where}.{key} is missing in {self.source}",
                                  f"add {self.where}.{key} to {self.source}")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise self._bad(key, "a non-empty string" if required else "a string", value)
        return value

    def int(self, key: str, default: int | None, *, minimum: int = 0) -> int | None:
        value = self.raw.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._bad(key, f"an integer >= {minimum}", value)
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None) -> str | None:
        value = self.raw.get(key, default)
        if value is not None and value not in allowed:
            raise self._bad(key, f"one of {', '.join(allowed)}", value)
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false", value)
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._bad(key, "a list of strings", value)
        return tuple(value)

    def str_map(self, key: str) -> dict[str, str]:
        value = self.raw.get(key, {}) or {}
        if not isinstance(value, Mapping):
            raise self._bad(key, "a mapping of strings", value)
        out = {}
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise self._bad(f"{key}.{k}", "a string", v)
            out[str(k)] = str(v)
        return out

    def list(self, key: str) -> list[Any]:
        value = self.raw.get(key, [])
        if not isinstance(value, list):
            raise self._bad(key, "a list", value)
        return value

    def map(self, key: str) -> Mapping[str, Any]:
        value = self.raw.get(key, {}) or {}
        if not isinstance(value, Mapping):
            raise self._bad(key, "a mapping", value)
        return value
