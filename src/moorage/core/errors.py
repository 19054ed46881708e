"""The one error hierarchy of Moorage.

Errors are raised deep with a message and a fix hint and turned into a single
clean line at the task boundary (``moorage.tasks._boundary``). The exit code
tells CI what kind of failure it was: 2 for bad input (nothing was changed),
1 for an operation that failed.
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class MoorageError(Exception):
    """Base error: a message, an optional fix hint and an exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def line(self) -> str:
        """The single line shown to the user."""
        if self.hint:
            return f"{self.message} (fix: {self.hint})"
        return self.message


class UserError(MoorageError):
    """Bad input: configuration, flags, files, secrets. Exit code 2."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(UserError):
    """The project configuration or an environment file is invalid."""


class ToolMissing(UserError):
    """A required external program is not installed or has the wrong version."""


class OperationFailed(MoorageError):
    """Something that was tried did not work (build, deploy, backup). Exit code 1."""


class CommandFailed(OperationFailed):
    """An external command exited non-zero; carries its redacted stderr (and stdout)."""

    def __init__(self, message: str, hint: str | None = None, *, stderr: str = "", returncode: int = 1,
                 stdout: str = ""):
        super().__init__(message, hint)
        self.stderr = stderr
        self.stdout = stdout
        self.returncode = returncode


class Unreachable(OperationFailed):
    """A service (Docker engine, cluster, database) cannot be reached."""

    exit_code = EXIT_BAD_INPUT


class Interrupted(MoorageError):
    """The user pressed Ctrl-C; the message says what state things are in."""

    exit_code = 130
