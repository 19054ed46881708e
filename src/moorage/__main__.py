"""``python -m moorage init``: write invoke.yaml and tasks.py in a repository that has neither yet.

``inv`` needs a tasks.py before it can run any task, so the first configuration
is written through this entry point; afterwards ``inv init --force`` re-runs it.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from invoke import Collection, Program

    from . import __version__
    from .tasks.init import init

    program = Program(namespace=Collection(init), name="Moorage", binary="python -m moorage", version=__version__)
    program.run(argv if argv is not None else ["python -m moorage", *sys.argv[1:]])


if __name__ == "__main__":
    main()
