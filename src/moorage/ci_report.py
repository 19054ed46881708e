"""What a deploy reports to the CI system that ran it: JUnit XML, a Markdown job summary, error annotations.

All three are made from a deploy's summary (``Summary.as_dict()``) and the error that ended it, if any:

* JUnit XML (``--junit PATH``), the format GitHub Actions reporters, GitLab
  (``artifacts:reports:junit``), Jenkins and Buildkite read: one test suite per
  deploy, one test case per phase that ran (its time; the phase that failed
  carries a ``<failure>`` with the reason, the fix and where the diagnostics
  are) and one per smoke check (its URL and detail; a failed check fails).
* A Markdown summary appended to the file ``$GITHUB_STEP_SUMMARY`` names, when
  that variable is set (GitHub Actions shows it on the run's page).
* On GitHub Actions (``GITHUB_ACTIONS=true``), the failing reason as an
  ``::error`` workflow command, which the run's page shows as an annotation.

Writing a report never hides the deploy's own outcome: a report that cannot
be written is said in one line, and the deploy's exit code stands.
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .core.errors import MoorageError, UserError

SUITE = "moorage deploy"


def junit_xml(summary: Mapping[str, Any], error: MoorageError | None = None, *,
              timestamp: datetime | None = None) -> str:
    """The deploy as a JUnit XML document (``testsuites`` > ``testsuite`` > ``testcase``)."""
    env = summary["environment"]
    classname = f"moorage.deploy.{env}"
    cases: list[ET.Element] = []
    failed_phase = summary.get("failed_phase") if error is not None else None
    for phase, seconds in (summary.get("phases") or {}).items():
        case = ET.Element("testcase", classname=classname, name=f"phase {phase}", time=f"{seconds:.3f}")
        if phase == failed_phase:
            _fail(case, error, summary)
        cases.append(case)
    if error is not None and failed_phase is None:  # failed before any phase was timed
        case = ET.Element("testcase", classname=classname, name="deploy", time="0.000")
        _fail(case, error, summary)
        cases.append(case)
    for check in summary.get("smoke") or []:
        case = ET.Element("testcase", classname=f"{classname}.smoke", name=f"smoke {check['name']}", time="0.000")
        detail = f"{check.get('url', '')} {check.get('detail', '')}".strip()
        if not check.get("ok"):
            failure = ET.SubElement(case, "failure", message=f"smoke check {check['name']} failed: {detail}",
                                    type="SmokeCheckFailed")
            failure.text = detail
        elif detail:
            ET.SubElement(case, "system-out").text = detail
        cases.append(case)
    failures = sum(1 for c in cases if c.find("failure") is not None)
    total = sum(float(c.get("time", "0")) for c in cases)
    stamp = (timestamp or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S")
    root = ET.Element("testsuites", name=SUITE, tests=str(len(cases)), failures=str(failures), errors="0",
                      time=f"{total:.3f}")
    # the attributes Maven Surefire's published schema allows (tests/fixtures/junit_schema.py checks
    # against it); when and where the deploy ran go in properties, which every reader keeps
    suite = ET.SubElement(root, "testsuite", name=f"{SUITE} {env}", tests=str(len(cases)),
                          failures=str(failures), errors="0", skipped="0", time=f"{total:.3f}")
    props = ET.SubElement(suite, "properties")
    facts = {**{key: summary.get(key) for key in ("environment", "namespace", "release", "status", "revision",
                                                   "rolled_back_to", "diagnostics")},
             "timestamp": stamp, "hostname": socket.gethostname()}
    for key, value in facts.items():
        if value is not None:
            ET.SubElement(props, "property", name=key, value=str(value))
    suite.extend(cases)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _fail(case: ET.Element, error: MoorageError, summary: Mapping[str, Any]) -> None:
    failure = ET.SubElement(case, "failure", message=error.message, type=type(error).__name__)
    failure.text = "\n".join(_details(error, summary))


def _details(error: MoorageError, summary: Mapping[str, Any]) -> list[str]:
    lines = [error.message]
    if error.hint:
        lines.append(f"fix: {error.hint}")
    if summary.get("rolled_back_to") is not None:
        lines.append(f"rolled back to revision {summary['rolled_back_to']}")
    if summary.get("diagnostics"):
        lines.append(f"diagnostics: {summary['diagnostics']}")
    return lines


def markdown(summary: Mapping[str, Any], error: MoorageError | None = None) -> str:
    """The deploy as a Markdown job summary: outcome, phases, smoke checks and, on failure, the reason."""
    env, release, namespace = summary["environment"], summary["release"], summary["namespace"]
    outcome = "failed" if error is not None else summary.get("status", "deployed")
    revision = f", revision {summary['revision']}" if summary.get("revision") else ""
    lines = [f"### Deploy of `{release}` to `{env}` (namespace `{namespace}`): {outcome}{revision}", ""]
    if error is not None:
        lines += [f"> {_md(line)}  " for line in _details(error, summary)] + [""]
    phases = summary.get("phases") or {}
    if phases:
        lines += ["| phase | time |", "|---|---:|"]
        failed = summary.get("failed_phase") if error is not None else None
        lines += [f"| {name}{' (failed)' if name == failed else ''} | {seconds:.1f} s |"
                  for name, seconds in phases.items()] + [""]
    smoke = summary.get("smoke") or []
    if smoke:
        lines += ["| smoke check | ok | detail |", "|---|---|---|"]
        lines += [f"| {_md(c['name'])} | {'yes' if c.get('ok') else '**no**'} | "
                  f"{_md(' '.join(filter(None, [c.get('url'), c.get('detail')])))} |" for c in smoke] + [""]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def annotation(summary: Mapping[str, Any], error: MoorageError) -> str:
    """The failing reason as a GitHub Actions ``::error`` workflow command (one line)."""
    title = f"moorage deploy {summary['environment']}"
    return f"::error title={_escape(title, prop=True)}::{_escape(chr(10).join(_details(error, summary)))}"


def _escape(text: str, prop: bool = False) -> str:
    """Escaping of workflow command data (and properties), as the Actions runner unescapes it."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def publish(summary: Mapping[str, Any], error: MoorageError | None, *, junit: str | None,
            environ: Mapping[str, str] | None = None, say=print) -> None:
    """Write every report this run asks for: ``junit`` (a path, or None), and GitHub's where it runs.

    ``say`` shows a report that could not be written; the annotation goes to stdout, where the
    Actions runner reads workflow commands (a failed deploy writes no JSON there).
    """
    environ = os.environ if environ is None else environ
    if junit:
        _write(Path(junit), junit_xml(summary, error), "the JUnit report", append=False, say=say)
    step_summary = environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        _write(Path(step_summary), markdown(summary, error), "the GitHub job summary", append=True, say=say)
    if error is not None and environ.get("GITHUB_ACTIONS") == "true":
        print(annotation(summary, error), flush=True)


def _write(path: Path, text: str, what: str, *, append: bool, say) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        say(f"warning: cannot write {what} to {path}: {exc.strerror or exc}")


def check_path(junit: str | None) -> None:
    """Refuse, before anything is done, a ``--junit`` path that cannot be written."""
    if not junit:
        return
    parent = Path(junit).resolve().parent
    if Path(junit).is_dir():
        raise UserError(f"--junit {junit} is a directory", hint="give a file path, e.g. --junit reports/deploy.xml")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"--junit {junit}: {probe} is a file, not a directory", hint="give a path in a directory")
    if not os.access(probe, os.W_OK):
        raise UserError(f"--junit {junit}: {probe} is not writable", hint="give a path in a writable directory")
