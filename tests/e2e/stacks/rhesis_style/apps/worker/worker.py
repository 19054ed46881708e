"""Stand-in worker in the style of seed 004 (rhesis): it talks to Redis (`redis:6379`, password from the
`tidepool-secrets` Secret) and serves /health on 8080 once Redis answers PING. Standard library only."""

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"redis": "unknown"}


def ping() -> str:
    with socket.create_connection((os.environ["REDIS_HOST"], int(os.environ.get("REDIS_PORT", "6379"))), 5) as s:
        password = os.environ.get("REDIS_PASSWORD", "").encode()
        s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(password), password))
        reply = b""
        while reply.count(b"\r\n") < 2:
            chunk = s.recv(256)
            if not chunk:
                break
            reply += chunk
    return "ok" if reply.endswith(b"+PONG\r\n") else reply.decode(errors="replace").strip()


def keep_pinging():
    while True:
        try:
            state["redis"] = ping()
        except OSError as exc:
            state["redis"] = f"unreachable: {exc}"
        print(json.dumps({"msg": "redis", "state": state["redis"]}), flush=True)
        time.sleep(5)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        ok = self.path == "/health" and state["redis"] == "ok"
        data = json.dumps({"status": "ok" if ok else "unhealthy", "redis": state["redis"]}).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    threading.Thread(target=keep_pinging, daemon=True).start()
    ThreadingHTTPServer(("", 8080), Handler).serve_forever()
