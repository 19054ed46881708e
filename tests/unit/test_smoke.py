"""Smoke checks against a real HTTP server on loopback (the port-forward is a pass-through here)."""

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from moorage import smoke
from moorage.core.config import SmokeCheck


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        routes = {
            "/healthz": (200, {"status": "ok"}),
            "/readyz": (503, {"status": "fail", "checks": {"database": "down"}}),
            "/text": (200, None),
        }
        if self.path == "/settling":
            # fails twice, then passes: a Service whose endpoints are still settling
            self.server.settling_calls = getattr(self.server, "settling_calls", 0) + 1
            code, body = (503, {"status": "starting"}) if self.server.settling_calls <= 2 else (200, {"status": "ok"})
        elif self.path == "/slow":
            import time

            time.sleep(0.3)
            code, body = 200, {"status": "ok"}
        else:
            code, body = routes.get(self.path, (404, {"detail": "not found"}))
        data = b"plain text" if body is None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


def forward_to(port, calls):
    @contextmanager
    def forward(namespace, service, remote_port):
        calls.append((namespace, service, remote_port))
        yield port

    return forward


def test_checks_pass_and_fail_for_the_right_reason(server):
    calls = []
    checks = [
        SmokeCheck("live", "backend", 8000, "/healthz", 200, ("status",), 2000),
        SmokeCheck("ready", "backend", 8000, "/readyz", 200, ("status",)),
        SmokeCheck("keys", "backend", 8000, "/healthz", 200, ("status", "version")),
        SmokeCheck("json", "backend", 8000, "/text", 200, ("status",)),
        SmokeCheck("slow", "backend", 8000, "/slow", 200, (), 100),
        SmokeCheck("page", "frontend", 8080, "/text", 200),
    ]
    results = smoke.run_checks(checks, "shop-dev", "shop-{}".format, forward_to(server, calls), attempts=1)
    by_name = {r.name: r for r in results}
    assert by_name["live"].ok and by_name["page"].ok
    assert by_name["ready"].detail == "expected HTTP 200, got 503"
    assert by_name["keys"].detail == "JSON keys missing: version"
    assert by_name["json"].detail == "body is not JSON"
    assert by_name["slow"].detail.endswith("budget 100 ms")
    assert [r.name for r in results] == [c.name for c in checks]
    # one port-forward per (service, port), named <release>-<service>
    assert calls == [("shop-dev", "shop-backend", 8000), ("shop-dev", "shop-frontend", 8080)]


def test_a_failed_port_forward_fails_its_checks_with_the_reason():
    @contextmanager
    def broken(namespace, service, port):
        raise RuntimeError("no ready pod behind service shop-backend")
        yield  # pragma: no cover

    results = smoke.run_checks([SmokeCheck("live", "backend", 8000, "/healthz")], "ns", "shop-{}".format, broken)
    assert not results[0].ok and "no ready pod" in results[0].detail


def test_connection_refused_is_a_failure_not_a_crash():
    result = smoke.probe(SmokeCheck("x", "backend", 1, "/"), port=1)
    assert not result.ok and result.status is None and "request failed" in result.detail


def test_a_check_that_settles_passes_within_its_attempts(server):
    checks = [SmokeCheck("settling", "backend", 8000, "/settling", 200, ("status",))]
    results = smoke.run_checks(checks, "ns", "shop-{}".format, forward_to(server, []), attempts=3, delay=0)
    assert results[0].ok, results[0].detail


def test_a_check_that_keeps_failing_reports_its_last_answer(server):
    checks = [SmokeCheck("ready", "backend", 8000, "/readyz", 200)]
    results = smoke.run_checks(checks, "ns", "shop-{}".format, forward_to(server, []), attempts=2, delay=0)
    assert not results[0].ok and results[0].detail == "expected HTTP 200, got 503"


def test_the_release_s_ingresses_give_its_urls_https_where_tls_names_the_host():
    objects = [
        {"kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
        {"kind": "Ingress", "metadata": {"name": "web"}, "spec": {
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [{"host": "shop.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {}}]}},
                {"host": "api.shop.test", "http": {"paths": [
                    {"path": "/api(/|$)(.*)", "pathType": "ImplementationSpecific"},
                    {"path": "/v1", "pathType": "Prefix"}]}},
                {"http": {"paths": [{"path": "/", "pathType": "Prefix"}]}}]}},
        {"kind": "Ingress", "metadata": {"name": "again"}, "spec": {"rules": [{"host": "api.shop.test", "http": {
            "paths": [{"path": "/v1", "pathType": "Prefix"}]}}]}},
    ]
    assert smoke.ingress_urls(objects) == ["https://shop.example.com/", "http://api.shop.test/v1"]
    assert smoke.ingress_urls(objects[:1]) == []
