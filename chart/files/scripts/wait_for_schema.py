"""Init container of backend and worker pods: block until the schema is ready for this image.

Ready means the database is stamped with this image's Alembic heads, or with a
revision this image does not know (the database is ahead: a rollback of the
application, which migrations must stay compatible with). Exits 1 after
WAIT_TIMEOUT_SECONDS so a stuck migration shows up as a failing pod.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _alembic_state import database_revisions, image_revisions, log  # noqa: E402

timeout = float(os.environ.get("WAIT_TIMEOUT_SECONDS", "600"))
deadline = time.monotonic() + timeout
heads, known = image_revisions()
if not heads:
    log("this image ships no migrations; nothing to wait for")
    sys.exit(0)
while True:
    current = database_revisions(max(deadline - time.monotonic(), 1))
    if current == heads:
        log(f"schema at head {sorted(heads)}")
        sys.exit(0)
    if current and not current <= known:
        log(f"database at {sorted(current)}, newer than this image's head {sorted(heads)}; continuing")
        sys.exit(0)
    if time.monotonic() > deadline:
        log(f"schema still at {sorted(current) or 'nothing'} after {timeout:.0f}s, expected {sorted(heads)}")
        sys.exit(1)
    log(f"waiting for migrations: database at {sorted(current) or 'nothing'}, image head {sorted(heads)}")
    time.sleep(2)
