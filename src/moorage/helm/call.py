"""Running helm: values the chart rejects become one line naming the key and the file."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import proc
from ..core.errors import CommandFailed, OperationFailed, UserError
from ..core.values import load_yaml

SCHEMA_MARKERS = ("values don't meet the specifications of the schema", "values.schema.json")
_SCHEMA_LINE = re.compile(r"^- at '(?P<pointer>[^']*)': (?P<problem>.+)$", re.M)
_EXTRA_KEYS = re.compile(r"additional propert(?:y|ies) (?P<keys>'[^']+'(?:, '[^']+')*) not allowed")
TERMINATING = "because it is being terminated"


def schema_problems(stderr: str) -> list[tuple[tuple[str, ...], str]]:
    """Each schema violation helm reports, as (key path, problem).

    ``- at '/backend': additional properties 'replicas' not allowed`` becomes
    ``(("backend", "replicas"), "not allowed by the chart's values schema")``.
    """
    found = []
    for match in _SCHEMA_LINE.finditer(stderr):
        path = tuple(p.replace("~1", "/").replace("~0", "~") for p in match["pointer"].split("/") if p)
        extra = _EXTRA_KEYS.search(match["problem"])
        if extra:
            for key in re.findall(r"'([^']+)'", extra["keys"]):
                found.append(((*path, key), "not allowed by the chart's values schema"))
        else:
            found.append((path, match["problem"]))
    return found


def _sets(values: Any, path: Sequence[str]) -> bool:
    for key in path:
        if isinstance(values, Mapping) and key in values:
            values = values[key]
        elif isinstance(values, list) and key.isdigit() and int(key) < len(values):
            values = values[int(key)]
        else:
            return False
    return True


def blame(path: Sequence[str], values_files: Sequence[Path]) -> Path | None:
    """The last of ``values_files`` that sets ``path`` (the one Helm took it from), if any."""
    for file in reversed(values_files):
        try:
            if _sets(load_yaml(file), path):
                return file
        except UserError:
            continue
    return None


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def rejected_values(what: str, stderr: str, values_files: Sequence[Path]) -> UserError:
    """One line naming the key, the file that set it and the problem."""
    problems = schema_problems(stderr)
    if not problems:
        return UserError(f"{what}: the values were rejected by the chart: "
                         f"{proc.tail_lines(stderr.replace('Error: ', ''), 2)}",
                         "fix the values in " + (", ".join(_shown(f) for f in values_files) or "the values files"))
    path, problem = problems[0]
    key = ".".join(path) or "(top level)"
    source = blame(path, values_files)
    where = f" in {_shown(source)}" if source else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    fix = (f"fix {_shown(source)}: remove or correct {key}" if source
           else f"set {key} to a valid value in the environment's values")
    return UserError(f"{what}: the values were rejected by the chart: {key}{where}: {problem}{more}", fix)


def call(args: Sequence[str], *, timeout: float, secrets: Sequence[str] = (), what: str,
         values_files: Sequence[Path] = (), shield: bool = False) -> proc.Result:
    """Run a helm command; values rejected by the chart are bad input (exit 2) naming key and file.

    ``values_files`` are the user's own files, searched to say which one set a rejected key.
    """
    try:
        return proc.run(args, timeout=timeout, secrets=secrets, what=what, shield=shield)
    except CommandFailed as exc:
        text = f"{exc.stderr}\n{exc.stdout}"  # helm lint reports on stdout
        if any(marker in text for marker in SCHEMA_MARKERS) or "execution error at" in text:
            raise rejected_values(what, text, values_files) from None
        if TERMINATING in text:
            namespace = re.search(r'namespace[s]? "?([a-z0-9-]+)"? ', text)
            name = namespace.group(1) if namespace else "the target namespace"
            raise OperationFailed(f"{what}: namespace {name} is being deleted, so nothing can be created in it",
                                  "wait until it is gone (kubectl get namespace), then run this again") from None
        raise
