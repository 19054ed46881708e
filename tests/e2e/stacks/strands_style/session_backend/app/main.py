"""Stand-in session API in the style of seed 002 (strands-cli session-backend): port 8001, /health
(liveness) and /health/db (readiness: the schema the init-scripts ConfigMap made is there), settings in
POSTGRES_* variables. No migration tool: the schema comes from the database's first start."""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg


def connect():
    return psycopg.connect(host=os.environ["POSTGRES_HOST"], port=os.environ.get("POSTGRES_PORT", "5432"),
                           dbname=os.environ["POSTGRES_DB"], user=os.environ["POSTGRES_USER"],
                           password=os.environ["POSTGRES_PASSWORD"], connect_timeout=3)


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if self.path == "/health":
            return self.reply(200, {"status": "healthy"})
        if self.path == "/health/db":
            try:
                with connect() as conn:
                    count = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
            except psycopg.Error as exc:
                print(json.dumps({"msg": "database not ready", "error": str(exc).strip()[:200]}), flush=True)
                return self.reply(503, {"status": "unhealthy"})
            return self.reply(200, {"status": "healthy", "database": "connected", "sessions": count})
        self.reply(404, {"detail": "not found"})

    def do_POST(self):  # noqa: N802
        if self.path != "/sessions":
            return self.reply(404, {"detail": "not found"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with connect() as conn:
            conn.execute("INSERT INTO sessions (session_id) VALUES (%s)", (body["session_id"],))
        self.reply(201, {"session_id": body["session_id"]})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    print(json.dumps({"msg": "session backend listening", "port": 8001, "level": os.environ.get("LOG_LEVEL"),
                      "started": time.time()}), flush=True)
    ThreadingHTTPServer(("", 8001), Handler).serve_forever()
