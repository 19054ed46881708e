"""The one way Moorage runs external programs (helm, minikube, kind, pg tools).

Every command is logged with secrets redacted, runs under a timeout, and a
failure raises :class:`moorage.errors.CommandFailed` with the tail of its
(redacted) stderr. A missing program raises :class:`moorage.errors.ToolMissing`
with an install hint. Secrets are never passed on a command line: callers put
them in files or in the child's environment, and give their values here as
``secrets`` so that any echo of them in logs or errors is masked.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import CommandFailed, Interrupted, ToolMissing

log = logging.getLogger(__name__)

MASK = "******"
# An error message stays a few lines; the whole output goes to a log file it names.
STDERR_TAIL_LINES = 3
_log_dir: Path | None = None


def set_log_dir(path: Path | None) -> None:
    """Where failed commands leave their full (redacted) output; None: no log files."""
    global _log_dir
    _log_dir = path

INSTALL_HINTS = {
    "helm": "install Helm 3 or 4 (scripts/install-helm.sh) and put it on PATH",
    "docker": "install Docker (apt-get install docker.io) and start dockerd",
    "kubectl": "install kubectl and put it on PATH",
    "minikube": "install minikube (https://minikube.sigs.k8s.io) or set cluster: in the environment's config",
    "kind": "install kind or set cluster: in the environment's config",
    "k3d": "install k3d or set cluster: in the environment's config",
    "pg_dump": "install the PostgreSQL client tools (apt-get install postgresql-client)",
    "pg_restore": "install the PostgreSQL client tools (apt-get install postgresql-client)",
    "psql": "install the PostgreSQL client tools (apt-get install postgresql-client)",
}


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask every occurrence of each non-empty secret in ``text``."""
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def render(args: Sequence[str], secrets: Iterable[str] = ()) -> str:
    """The command as a shell line, safe to print."""
    return redact(shlex.join(args), list(secrets))


def which(tool: str) -> str:
    """Absolute path of ``tool`` on PATH, or ToolMissing with an install hint."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(f"'{tool}' is not installed or not on PATH",
                          INSTALL_HINTS.get(tool, f"install {tool} and put it on PATH"))
    return path


def run(
    args: Sequence[str],
    *,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    secrets: Iterable[str] = (),
    check: bool = True,
    cwd: str | None = None,
    what: str | None = None,
    hint: str | None = None,
    shield: bool = False,
) -> Result:
    """Run ``args`` and return its output; raise CommandFailed when it fails.

    ``env`` is added to the current environment (the child inherits the rest).
    ``what`` names the operation in error messages ("helm upgrade").
    ``shield`` keeps Ctrl-C away from the child (its own session) and lets it
    finish before :class:`moorage.errors.Interrupted` is raised: a helm upgrade
    is never cut half-way, which would leave the release pending.
    """
    secrets = [s for s in secrets if s]
    args = [str(a) for a in args]
    which(args[0])
    shown = render(args, secrets)
    log.debug("run: %s", shown)
    child_env = None
    if env is not None:
        child_env = {**os.environ, **env}
    try:
        proc = subprocess.Popen(
            args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env, cwd=cwd,
            start_new_session=shield,
        )
    except FileNotFoundError:
        raise ToolMissing(f"'{args[0]}' is not installed or not on PATH",
                          INSTALL_HINTS.get(args[0], f"install {args[0]}")) from None
    try:
        stdout, stderr = _communicate(proc, input, timeout, shield)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise CommandFailed(
            f"{what or args[0]} did not finish within {timeout:g}s: {shown}",
            hint or "raise the timeout in the environment's config or check what the command waits for",
            stderr=redact(_text(exc.stderr), secrets), returncode=-1,
        ) from None
    result = Result(tuple(args), proc.returncode, stdout, redact(stderr, secrets))
    if check and proc.returncode != 0:
        output = result.stderr or redact(stdout, secrets)
        tail = tail_lines(output)
        saved = save_output(what or args[0], shown, redact(stdout, secrets), result.stderr)
        raise CommandFailed(
            f"{what or args[0]} failed (exit {proc.returncode})" + (f": {tail}" if tail else "")
            + (f" (full output: {saved})" if saved else ""),
            hint, stderr=result.stderr, returncode=proc.returncode, stdout=redact(stdout, secrets),
        )
    return result


def save_output(what: str, command: str, stdout: str, stderr: str) -> Path | None:
    """Write a failed command's whole (already redacted) output to a private file in the log directory."""
    if _log_dir is None:
        return None
    try:
        _log_dir.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9]+", "-", what).strip("-")[:40] or "command"
        fd, name = tempfile.mkstemp(prefix=f"{time.strftime('%Y%m%dT%H%M%S')}-{slug}-", suffix=".log",
                                    dir=_log_dir)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"$ {command}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n")
        return Path(name)
    except OSError:  # a log that cannot be written must not hide the error itself
        return None


# $PPID is read when the shell starts, after setpriv's prctl: a parent gone by then will never signal the child.
_UNLESS_ORPHANED = '[ "$PPID" = "$1" ] || exit 143; shift; exec "$@"'


def start(args: Sequence[str], *, env: Mapping[str, str] | None = None, secrets: Iterable[str] = (),
          **popen: object) -> subprocess.Popen:
    """Start ``args`` for a caller that streams to or from it (``run`` hands back a finished child's output).

    The command is logged redacted; a missing program is ToolMissing; ``env``
    is added to the current environment; ``popen`` goes to Popen (stdin,
    stdout, stderr, cwd, text...). The child dies with Moorage: on Linux it is
    started through ``setpriv --pdeathsig TERM``, which sets the parent-death
    signal in the child and execs the program, so no Python runs between fork
    and exec (``preexec_fn`` can deadlock the child when other threads hold
    locks, and a new session would keep Ctrl-C and a group kill from reaching
    it). The signal follows the *thread* that forked: call this from the
    thread that waits for the child. Moorage may die before setpriv has set
    the signal (nothing would then ever send it): a shell between setpriv and
    the program reads its parent's pid once the signal is set and exits if
    that is no longer Moorage. Without setpriv it is started plainly.
    """
    args = [str(a) for a in args]
    secrets = [s for s in secrets if s]
    program = args[0] if os.sep in args[0] else which(args[0])
    log.debug("start: %s", render(args, secrets))
    wrapper = shutil.which("setpriv") if os.name == "posix" else None
    argv = [wrapper, "--pdeathsig", "TERM", "--", "/bin/sh", "-c", _UNLESS_ORPHANED, "sh", str(os.getpid()),
            program, *args[1:]] if wrapper else [program, *args[1:]]
    child_env = {**os.environ, **env} if env is not None else None
    if not os.path.exists(program):
        raise ToolMissing(f"'{args[0]}' is not installed or not on PATH",
                          INSTALL_HINTS.get(os.path.basename(args[0]), f"install {args[0]}"))
    return subprocess.Popen(argv, env=child_env, **popen)  # type: ignore[call-overload]


def _communicate(proc: subprocess.Popen, input: str | None, timeout: float, shield: bool) -> tuple[str, str]:
    try:
        return proc.communicate(input=input, timeout=timeout)
    except KeyboardInterrupt:
        if not shield:
            proc.kill()
            proc.wait()
            raise
        log.warning("interrupt received: letting %s finish its step", proc.args[0])
        stdout, stderr = proc.communicate(timeout=timeout)
        raise Interrupted(
            f"interrupted: {proc.args[0]} was allowed to finish its step (exit {proc.returncode}) "
            "so nothing is left half-applied; no further step was started",
        ) from None


def tail_lines(text: str, n: int = STDERR_TAIL_LINES) -> str:
    """The last ``n`` non-empty lines of ``text``, joined with ' | ' to stay on one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data
