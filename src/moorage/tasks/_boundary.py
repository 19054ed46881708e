"""The task boundary: flags in, one clean line and an exit code out.

Every Moorage task is declared with :func:`mtask`, which wraps invoke's
``@task`` so that a :class:`moorage.errors.MoorageError` becomes a single
``error: ...`` line on stderr and the error's exit code, Ctrl-C becomes a line
saying what state things are in (exit 130), and with ``inv --debug`` (or
``MOORAGE_DEBUG=1``) the traceback is shown instead. Any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Exit, task

from ..core.errors import MoorageError, UserError


class _Lazy:
    """A module imported on first attribute access: task modules stay cheap to import for `inv --list`."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        module = importlib.import_module(self._name)
        self.__dict__.update(vars(module))
        return getattr(module, attr)


def lazy(name: str) -> Any:
    return _Lazy(name)


def debug_enabled() -> bool:
    return bool(os.environ.get("MOORAGE_DEBUG")) or logging.getLogger("invoke").isEnabledFor(logging.DEBUG)


def mtask(*args: Any, **kwargs: Any):
    """``@task`` with Moorage's error boundary. Same arguments as invoke's."""

    def decorate(fn: Callable) -> Any:
        @functools.wraps(fn)
        def wrapper(ctx, *a, **kw):
            try:
                return fn(ctx, *a, **kw)
            except MoorageError as exc:
                if debug_enabled():
                    raise
                print(f"error: {exc.line()}", file=sys.stderr, flush=True)
                raise Exit(code=exc.exit_code) from None
            except KeyboardInterrupt:
                if debug_enabled():
                    raise
                print("interrupted: stopped before the next step; nothing further was changed",
                      file=sys.stderr, flush=True)
                raise Exit(code=130) from None

        return task(*args, **kwargs)(wrapper)

    if len(args) == 1 and callable(args[0]) and not kwargs:
        fn, args = args[0], ()
        return decorate(fn)
    return decorate


def plain(value: Any) -> Any:
    """invoke's config proxies as plain dicts and lists."""
    if hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def project(ctx):
    """The validated project configuration of this invocation (a ``moorage.config.Project``)."""
    from ..core import proc
    from ..core.config import CONFIG_FILE, load_project

    raw = plain(ctx.config.get("moorage", {}) or {})
    root = Path(raw.get("root") or os.getcwd())
    loaded = load_project(raw, root, source=str(root / CONFIG_FILE))
    proc.set_log_dir(loaded.root / ".moorage" / "logs")  # failed commands leave their whole output there
    return loaded


def reporter(json_mode: bool = False):
    from ..core.report import Reporter

    return Reporter(json_mode=json_mode)


def confirm(question: str, *, yes: bool) -> None:
    """Ask before a destructive step; without a TTY refuse unless --yes was given."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"refusing without confirmation: {question}",
                        "re-run with --yes (no terminal to ask on)")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UserError("cancelled: nothing was changed", None)
