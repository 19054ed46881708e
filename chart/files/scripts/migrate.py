"""Migration Job: wait for the database, then `alembic upgrade head`.

When the database is already ahead of this image (an application rollback),
there is nothing to do: downgrades are explicit (inv db.downgrade).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _alembic_state import database_revisions, image_revisions, log  # noqa: E402

current = database_revisions(float(os.environ.get("WAIT_TIMEOUT_SECONDS", "600")))
heads, known = image_revisions()
if current and not current <= known:
    log(f"database at {sorted(current)} is newer than this image's head {sorted(heads)}; nothing to do")
    sys.exit(0)
log(f"database at {sorted(current) or 'nothing'}; running alembic upgrade head -> {sorted(heads)}")
os.execvp("alembic", ["alembic", "upgrade", "head"])
