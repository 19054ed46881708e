"""`helm test` pod: the backend is ready (DB and Redis reachable) and the frontend serves its page."""

import os
import sys
import time
import urllib.error
import urllib.request

CHECKS = [
    ("backend /readyz", os.environ["BACKEND_URL"] + "/readyz"),
    ("frontend /", os.environ["FRONTEND_URL"] + "/"),
    ("frontend /healthz", os.environ["FRONTEND_URL"] + "/healthz"),
]

failed = False
for name, url in CHECKS:
    for attempt in range(1, 6):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError as exc:
            status = f"error: {exc}"
        if status == 200:
            print(f"ok   {name}: {url} -> 200", flush=True)
            break
        if attempt == 5:
            print(f"FAIL {name}: {url} -> {status}", flush=True)
            failed = True
        else:
            time.sleep(2)
sys.exit(1 if failed else 0)
