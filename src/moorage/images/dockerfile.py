"""Dockerfile reading: logical instructions, ARG substitution, external base images and the step count.

Pure text analysis: what the tag needs (the base images a build starts from)
and what the progress bar needs (how many steps the legacy builder reports).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Logical instructions of a Dockerfile (continuations joined, comments dropped)."""
    escape = "\\"
    lines = text.splitlines()
    # Parser directives: leading "# key=value" comments.
    for line in lines:
        m = re.match(r"^\s*#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$", line)
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
    out: list[Instruction] = []
    buf: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and (stripped.startswith("#") or not stripped):
            continue
        body = line.rstrip()
        if body.endswith(escape):
            buf.append(body[:-1])
            continue
        buf.append(body)
        logical = " ".join(part.strip() for part in buf).strip()
        buf = []
        if logical:
            keyword, _, args = logical.partition(" ")
            out.append(Instruction(keyword.upper(), args.strip()))
    if buf:
        logical = " ".join(part.strip() for part in buf).strip()
        keyword, _, args = logical.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


_VAR = re.compile(r"\$(?:\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-+])(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def substitute(value: str, variables: Mapping[str, str | None]) -> str:
    """Dockerfile variable expansion: $V, ${V}, ${V:-word}, ${V:+word}, ${V-word}."""

    def sub(m: re.Match) -> str:
        name = m.group("name") or m.group("bare")
        current = variables.get(name)
        op = m.group("op")
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return m.group("word") if unset else current
        if op in (":+", "+"):
            setv = current is not None and (op == "+" or current != "")
            return m.group("word") if setv else ""
        return current or ""

    return _VAR.sub(sub, value)


@dataclass(frozen=True)
class DockerfileInfo:
    bases: tuple[str, ...]  # external images named by FROM / COPY --from, after ARG substitution
    steps: int  # instructions the legacy builder reports as "Step N/M" (without the label step)
    stages: tuple[str, ...]


def analyse_dockerfile(text: str, build_args: Mapping[str, str], target: str | None = None) -> DockerfileInfo:
    """The external base images and the step count of a Dockerfile."""
    instructions = dockerfile_instructions(text)
    global_args: dict[str, str | None] = {}
    bases: list[str] = []
    stages: list[str] = []
    steps = 0
    seen_from = False
    stop_after_stage = False
    for ins in instructions:
        if ins.keyword == "FROM":
            if stop_after_stage:
                break
            seen_from = True
            words = [w for w in ins.args.split() if not w.startswith("--")]
            if not words:
                continue
            ref = substitute(words[0], global_args)
            name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else ""
            if ref.lower() not in stages and ref != "scratch" and ref not in bases:
                bases.append(ref)
            stages.append(name or str(len(stages)))
            if target and name == target.lower():
                stop_after_stage = True
        elif ins.keyword == "ARG" and not seen_from:
            for decl in shlex.split(ins.args):
                key, eq, default = decl.partition("=")
                global_args[key] = build_args.get(key, default if eq else None)
        elif ins.keyword in ("COPY", "ADD"):
            m = re.search(r"--from=(\S+)", ins.args)
            if m:
                ref = m.group(1)
                if ref.lower() not in stages and not ref.isdigit() and ref not in bases:
                    bases.append(ref)
        steps += 1
    return DockerfileInfo(tuple(bases), steps, tuple(stages))
