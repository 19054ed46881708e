"""SQL-file migrations in the style of seed 003 (kubechat): /app/migrations/NNN_name.sql, each applied once,
in order, in its own transaction, and recorded in `schema_migrations` (version, migration_name).

    python3 migrate.py up       apply the pending files
    python3 migrate.py status   one JSON line: applied versions, pending files
"""

import json
import sys
from pathlib import Path

from db import connect

FILES = Path(__file__).resolve().parent / "migrations"


def scripts():
    return sorted((p.name.split("_", 1)[0], p) for p in FILES.glob("*.sql"))


def applied(conn):
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def up():
    with connect() as conn:
        conn.autocommit = True  # each file in a transaction of its own
        done = applied(conn)
        for version, path in scripts():
            if version in done:
                continue
            with conn.transaction():
                conn.execute(path.read_text())
                conn.execute("INSERT INTO schema_migrations (version, migration_name) VALUES (%s, %s)",
                             (version, path.stem.split("_", 1)[1].replace("_", " ")))
            print(json.dumps({"msg": "applied", "version": version, "file": path.name}), flush=True)
        print(json.dumps({"msg": "schema up to date", "versions": sorted(applied(conn))}), flush=True)


def status():
    with connect() as conn:
        done = applied(conn)
    print(json.dumps({"applied": sorted(done), "pending": [p.name for v, p in scripts() if v not in done]}))


if __name__ == "__main__":
    {"up": up, "status": status}[sys.argv[1] if len(sys.argv) > 1 else "up"]()
