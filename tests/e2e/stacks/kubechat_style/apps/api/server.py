"""Stand-in API in the style of seed 003 (kubechat): port 8080, /health (liveness), /api/v1/health/live
(startup), /api/v1/health/ready (PostgreSQL and Redis answer), DB_* and REDIS_* settings."""

import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from db import connect


def redis_ok() -> bool:
    with socket.create_connection((os.environ["REDIS_HOST"], int(os.environ.get("REDIS_PORT", "6379"))), 3) as s:
        password = os.environ.get("REDIS_PASSWORD", "").encode()
        s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(password), password))
        reply = b""
        while reply.count(b"\r\n") < 2 and (chunk := s.recv(256)):
            reply += chunk
    return reply.endswith(b"+PONG\r\n")


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        if self.path in ("/health", "/api/v1/health/live"):
            return self.reply(200, {"status": "alive"})
        if self.path == "/api/v1/health/ready":
            checks = {}
            try:
                with connect() as conn:
                    checks["database"] = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
            except psycopg.Error as exc:
                checks["database"] = None
                print(json.dumps({"msg": "database not ready", "error": str(exc).strip()[:200]}), flush=True)
            try:
                checks["redis"] = redis_ok()
            except OSError:
                checks["redis"] = False
            ok = bool(checks["database"]) and checks["redis"]
            return self.reply(200 if ok else 503, {"status": "ready" if ok else "not ready", "checks": checks})
        self.reply(404, {"detail": "not found"})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    print(json.dumps({"msg": "api listening", "port": 8080}), flush=True)
    ThreadingHTTPServer(("", 8080), Handler).serve_forever()
