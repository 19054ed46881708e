""".dockerignore: reading the patterns and deciding which context paths Docker leaves out.

Docker's semantics, as in moby/patternmatcher: the last matching pattern
wins, ``!pattern`` re-includes, and a pattern that matches a parent directory
matches everything below it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from ..core.errors import ConfigError


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
