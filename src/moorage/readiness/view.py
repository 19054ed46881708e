"""Showing a wait: the :class:`LiveView` of resources and states, and :func:`wait_with_view`, the usual
sequence (wait in the live view; on failure explain on screen and write the diagnostics bundle)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import OperationFailed
from ..core.report import Reporter
from .diagnostics import collect_diagnostics, explain_failure
from .rules import Resource, ResourceState, State
from .wait import ApiOutage, Result, wait_for


class LiveView:
    """A table of resources and states (rich Live on a terminal), else one plain line per change.

    Use as ``with LiveView(reporter) as view: wait_for(..., on_change=view, on_outage=view.outage)``.
    An API server that cannot be reached is said at once, then how long it has lasted (the table's
    caption on a terminal, a line every :attr:`OUTAGE_EVERY` seconds otherwise), and again when it is back.
    """

    OUTAGE_EVERY = 10.0  # seconds between two plain "still unreachable" lines

    def __init__(self, reporter: Reporter, title: str = "Waiting for the release to be ready"):
        self.reporter = reporter
        self.title = title
        self.states: dict[Resource, ResourceState] = {}
        self._live = None
        self._start = time.monotonic()
        self._outage: ApiOutage | None = None
        self._outage_said = 0.0  # the outage's length when a plain line last said it

    def __enter__(self) -> LiveView:
        if self.reporter.tty:
            from rich.live import Live

            self._live = Live(self._table(), console=self.reporter.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        else:
            self.reporter.step(self.title)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc_info)
            self._live = None

    def __call__(self, state: ResourceState) -> None:
        previous = self.states.get(state.resource)
        self.states[state.resource] = state
        if self._live is not None:
            self._live.update(self._table())
        elif previous is None or (previous.state, previous.message) != (state.state, state.message):
            self.reporter.line(f"{state.line()}  [{time.monotonic() - self._start:.1f}s]")

    def outage(self, outage: ApiOutage) -> None:
        """The API server is unreachable (said at once, then how long), or back (``outage.over``)."""
        if outage.over:
            self._outage = None
            self._say(f"API server {outage.server} is reachable again after {outage.seconds:.0f}s; "
                      "the watches resumed")
        elif self._outage is None:
            self._outage, self._outage_said = outage, 0.0
            self._say(f"API server {outage.server} is unreachable ({outage.reason}); "
                      "the watches resume when it is back")
        else:
            self._outage = outage
            if self._live is None and outage.seconds - self._outage_said >= self.OUTAGE_EVERY:
                self._outage_said = outage.seconds
                self._say(f"API server {outage.server} still unreachable after {outage.seconds:.0f}s "
                          f"({outage.reason})")
        if self._live is not None:
            self._live.update(self._table(), refresh=True)

    def _say(self, text: str) -> None:
        stamp = f"  [{time.monotonic() - self._start:.1f}s]"
        if self._live is not None:
            self._live.console.print(text + stamp, markup=False, highlight=False, soft_wrap=True)
        else:
            self.reporter.line(text + stamp)

    def _table(self):
        from rich.table import Table

        styles = {State.READY: "green", State.FAILED: "bold red", State.PROGRESSING: "yellow", State.PENDING: "dim"}
        caption = None
        if self._outage is not None:
            caption = (f"[bold red]API server {self._outage.server} unreachable for {self._outage.seconds:.0f}s "
                       f"({self._outage.reason})[/]; the watches resume when it is back")
        table = Table("resource", "namespace", "state", "message", title=self.title, caption=caption)
        for st in self.states.values():
            table.add_row(str(st.resource), st.resource.namespace, f"[{styles[st.state]}]{st.state}[/]", st.message)
        return table


def wait_with_view(api, resources: Iterable[Resource], timeout: float, reporter: Reporter, *,
                   label_selector: str | None = None, diagnostics_dir: str | Path | None = None,
                   namespace: str | None = None,
                   extra: dict[str, str] | Callable[[], dict[str, str]] | None = None,
                   manifest: Sequence[Mapping[str, Any]] | None = None) -> Result:
    """The usual sequence: live view while waiting; on failure explain on screen and write the bundle.

    The bundle holds the objects of the release whose rendered ``manifest`` is given (else those
    ``label_selector`` matches): see :func:`.diagnostics.collect_diagnostics`.

    Returns the result; raises :class:`OperationFailed` (exit 1) if not ready,
    with the bundle's path in the hint when one was written.
    """
    resources = list(resources)
    with LiveView(reporter) as view:
        result = wait_for(api, resources, timeout, on_change=view, label_selector=label_selector,
                          on_outage=view.outage)
    if result.ok:
        reporter.ok(f"{len(resources)} resources ready in {result.elapsed:.1f}s")
        return result
    explain_failure(api, result, reporter)
    hint = "see the events and logs above"
    if diagnostics_dir is not None:
        ns = namespace or (result.failed.namespace if result.failed else resources[0].namespace)
        path = collect_diagnostics(api, ns, label_selector, diagnostics_dir, extra() if callable(extra) else extra,
                                   manifest=manifest)
        reporter.line(f"diagnostics written to {path}")
        hint = f"see the events and logs above and the diagnostics in {path}"
    raise OperationFailed(f"release not ready: {result.reason}", hint=hint)
