"""The thin task layer: flags, confirmation and exit codes; the logic lives in moorage.*.

Each module here defines ``ns``, an invoke Collection (or a single task for
top-level tasks such as ``doctor``). Importing them must stay cheap: heavy
libraries are imported inside the functions that use them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Collection

from ..core.config import check_config_file
from ..core.errors import EXIT_BAD_INPUT, MoorageError


def namespace(root: Path | str) -> Collection:
    """The root collection, with ``moorage.root`` defaulting to the project folder (or tasks.py's folder)."""
    root = Path(root).resolve()
    if root.suffix == ".py":  # ``namespace(__file__)`` in a project's tasks.py
        root = root.parent
    try:
        check_config_file(root)
    except MoorageError as exc:
        # invoke parses invoke.yaml right after importing tasks.py; say what is wrong first, in one line
        print(f"error: {exc.line()}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    from . import deploy, dev, doctor

    ns = Collection()
    ns.add_task(doctor.doctor)
    ns.add_task(deploy.deploy)
    ns.add_collection(dev.ns)
    # Collections register below this line.
    from . import chart

    ns.add_collection(chart.ns)
    from . import images

    ns.add_collection(images.ns)
    from . import backup, db

    ns.add_collection(db.ns)
    ns.add_collection(backup.ns)
    from . import cluster

    ns.add_collection(cluster.ns)
    from . import init

    ns.add_task(init.init)
    ns.configure({"moorage": {"root": str(root)}})
    return ns
