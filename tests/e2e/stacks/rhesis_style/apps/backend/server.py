"""Stand-in backend in the style of seed 004 (rhesis): port 8080, /health, its settings from the
`tidepool-config` ConfigMap and the `tidepool-secrets` Secret (envFrom), and the schema migrated by the
app itself at start (`schema_version`). `python3 server.py migrate` runs only the migrations (the
command Moorage's migration Job runs in this image)."""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

MIGRATIONS = [
    (1, "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)"),
    (2, "ALTER TABLE items ADD COLUMN created_at timestamptz NOT NULL DEFAULT now()"),
]
state = {"version": None}


def connect():
    return psycopg.connect(host=os.environ["DB_HOST"], port=os.environ.get("DB_PORT", "5432"),
                           dbname=os.environ["DB_NAME"], user=os.environ["APP_DB_USER"],
                           password=os.environ["APP_DB_PASS"], connect_timeout=5)


def migrate():
    with connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version int PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
        for version, sql in MIGRATIONS:
            if version not in done:
                conn.execute(sql)
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                print(json.dumps({"msg": "migrated", "version": version}), flush=True)
        conn.commit()
        return conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]


def migrate_when_reachable():
    while True:
        try:
            state["version"] = migrate()
            print(json.dumps({"msg": "schema ready", "version": state["version"]}), flush=True)
            return
        except psycopg.OperationalError as exc:
            print(json.dumps({"msg": "waiting for the database", "error": str(exc).strip()[:200]}), flush=True)
            time.sleep(2)


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/health":
            ready = state["version"] is not None
            self.reply(200 if ready else 503, {"status": "ok" if ready else "starting", "schema_version": state["version"]})
        elif self.path == "/items":
            with connect() as conn:
                rows = conn.execute("SELECT id, name FROM items ORDER BY id").fetchall()
            self.reply(200, [{"id": i, "name": n} for i, n in rows])
        else:
            self.reply(404, {"detail": "not found"})

    def do_POST(self):  # noqa: N802
        if self.path != "/items":
            return self.reply(404, {"detail": "not found"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with connect() as conn:
            item_id = conn.execute("INSERT INTO items (name) VALUES (%s) RETURNING id", (body["name"],)).fetchone()[0]
        self.reply(201, {"id": item_id, "name": body["name"]})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if sys.argv[1:] == ["migrate"]:
        print(json.dumps({"msg": "schema at version", "version": migrate()}), flush=True)
        sys.exit(0)
    threading.Thread(target=migrate_when_reachable, daemon=True).start()
    print(json.dumps({"msg": "backend listening", "port": 8080}), flush=True)
    ThreadingHTTPServer(("", 8080), Handler).serve_forever()
