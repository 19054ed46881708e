"""``dev.watch``: the inner loop.

One ``dev.deploy`` if anything is out of date, then a watch of every image's
build context (``.dockerignore`` applied), the chart and the values files until
Ctrl-C. Each batch of saved files is one cycle and one line:

- files under an image's ``sync`` rules are copied into that image's running
  containers (a tar stream over the exec API) and the rule's action runs;
- any other change to an image's inputs rebuilds that image only and upgrades
  the release (the other images keep what they run); only the layers the node
  lacks are shipped;
- a chart or values change upgrades the release.

The smoke checks' Services get port-forwards that follow their pods, and the
logs of the containers a cycle touched stream with the pod's name in front.
Orchestration above ``deploy`` (it runs the deploy pipeline).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time

from .. import deploy
from ..core.config import Environment, Project
from ..core.errors import Interrupted
from ..core.report import Reporter
from ..kube.liveforward import service_forward
from .files import FileWatcher
from .session import Session, scan

IDLE_SECONDS = 2.0


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def open_forwards(session: Session, stack: contextlib.ExitStack) -> list[str]:
    """A port-forward per (Service, port) of the smoke checks, on the same local port when it is free."""
    lines = []
    seen = set()
    for check in session.env.smoke:
        key = (check.service, check.port)
        if key in seen:
            continue
        seen.add(key)
        service = session.project.service_name(check.service)
        local = stack.enter_context(service_forward(session.api, session.env.namespace, service, check.port,
                                                    local_port=check.port if _free(check.port) else 0))
        lines.append(f"forward: http://127.0.0.1:{local}/ -> svc/{service}:{check.port}")
    return lines


def _stop_on_sigterm(_signum, _frame) -> None:
    raise KeyboardInterrupt  # a terminal closing, or a supervisor: stop as cleanly as on Ctrl-C


def run(project: Project, env: Environment, reporter: Reporter) -> int:
    """Watch until Ctrl-C (or SIGTERM); returns the number of cycles."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    baseline = scan(project)
    reporter.step(f"dev.watch: bringing {env.name} up to date")
    summary = deploy.deploy(project, env, deploy.Options(), reporter)
    deploy.print_summary(summary, reporter)
    session = Session(project, env, reporter, summary.images, baseline, summary.digests)
    watcher = FileWatcher(project, env)
    interrupted = ""
    with contextlib.ExitStack() as stack:
        try:
            for line in open_forwards(session, stack):
                reporter.line(line)
            watcher.start()
            _first_cycle(session, watcher)
            reporter.line(f"watching {len(watcher.recursive) + len(watcher.flat)} folders for changes (Ctrl-C to stop)")
            _loop(session, watcher)
        except KeyboardInterrupt:
            pass
        except Interrupted as exc:
            interrupted = exc.message
        finally:
            watcher.stop()
            session.logs.stop()
    reporter.line(_farewell(session, interrupted))
    return session.cycles


def _first_cycle(session: Session, watcher: FileWatcher) -> None:
    """Files saved while the first deploy ran are a cycle of their own."""
    from .files import Batch

    line = session.cycle(Batch(frozenset(), time.time()))
    if line:
        session.say(line)


def _loop(session: Session, watcher: FileWatcher) -> None:
    while True:
        batch = watcher.next(timeout=IDLE_SECONDS)
        if batch is None:
            for line in session.resync():
                session.say(line)
            continue
        line = session.cycle(batch)
        if line:
            session.say(line)


def _farewell(session: Session, interrupted: str) -> str:
    head = f"stopped after {session.cycles} cycle{'s' * (session.cycles != 1)}"
    if interrupted:
        head += f" ({interrupted})"
    drifted = session.drifted()
    if not drifted:
        return f"{head}: the cluster runs the code its images hold"
    which = ", ".join(f"{name} ({n} file{'s' * (n != 1)} synced since {session.deployed[name]} was built)"
                      for name, n in drifted.items())
    return (f"{head}: the cluster runs code that no image holds: {which}; "
            f"a later `inv dev.deploy --env {session.env.name}` rebuilds it")
