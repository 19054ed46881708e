"""Stand-in backend in the style of seed 000 (aks-ai-app-sample): port 8000, /api/v1/health/live and
/api/v1/health/ready, PostgreSQL outside the cluster's release (POSTGRESQL_* settings, sslmode). The
schema is Alembic's, migrated by the chart's pre-install/pre-upgrade hook Job (AUTO_MIGRATE=false)."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg


def connect():
    return psycopg.connect(host=os.environ["POSTGRESQL_HOST"], port=os.environ.get("POSTGRESQL_PORT", "5432"),
                           dbname=os.environ["POSTGRESQL_DATABASE"], user=os.environ["POSTGRESQL_USER"],
                           password=os.environ["POSTGRESQL_PASSWORD"],
                           sslmode=os.environ.get("POSTGRESQL_SSL_MODE", "require"), connect_timeout=3)


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if self.path == "/api/v1/health/live":
            return self.reply(200, {"status": "alive"})
        if self.path == "/api/v1/health/ready":
            try:
                with connect() as conn:
                    revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
                    ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
            except psycopg.Error as exc:
                print(json.dumps({"msg": "database not ready", "error": str(exc).strip()[:200]}), flush=True)
                return self.reply(503, {"status": "not ready"})
            return self.reply(200, {"status": "ready", "revision": revision, "ssl": ssl})
        self.reply(404, {"detail": "not found"})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    print(json.dumps({"msg": "backend listening", "port": 8000, "database_host": os.environ.get("POSTGRESQL_HOST")}),
          flush=True)
    ThreadingHTTPServer(("", 8000), Handler).serve_forever()
