"""The Kubernetes foundation against a server that speaks the real API (HTTP and WebSocket)."""

from __future__ import annotations

import http.server
import io
import threading

import httpx
import pytest

from moorage import kube
from moorage.core.errors import OperationFailed, Unreachable, UserError
from tests.fixtures.kube_exec import exec_collect
from tests.fixtures.kubeapi import (  # noqa: F401 - kubeapi is a fixture
    ExecCall,
    kubeapi,
    load_object,
    merge,
    unreachable_kubeconfig,
)

NS = "shop"
POD = "backend-6d9c7b8f5d-x7k2p"
BINARY = bytes(range(256)) * 8192  # 2 MiB with every byte value, many frames


@pytest.fixture
def api(kubeapi):  # noqa: F811 - the fixture imported above
    kubeapi.apply(load_object("pod"))
    kubeapi.apply(load_object("service"))
    return kube.client(kubeapi.context, str(kubeapi.kubeconfig))


def script_exec(kubeapi):  # noqa: F811
    def handler(call: ExecCall) -> int:
        if call.command[:1] == ["pg_dump"]:
            for i in range(0, len(BINARY), 100_000):
                call.stdout(BINARY[i:i + 100_000])
            call.stderr(b"pg_dump: warning: something harmless\n")
            return 0
        if call.command[:1] == ["pg_restore"]:
            data = call.stdin.read()
            call.stdout(f"restored {len(data)} bytes\n".encode())
            return 0 if data == BINARY else 1
        call.stderr(f"sh: {call.command[0]}: not found\n".encode())
        return 127

    kubeapi.exec_handler = handler


def test_client_uses_the_given_context_and_checks_the_server(kubeapi, api):  # noqa: F811
    assert api.moorage_context == kubeapi.context
    assert api.configuration.host == kubeapi.url
    assert kube.ping(api) == "v1.33.1"


def test_client_honours_kubeconfig_env_and_its_current_context(kubeapi, monkeypatch):  # noqa: F811
    monkeypatch.setenv("KUBECONFIG", str(kubeapi.kubeconfig))
    assert kube.current_context() == kubeapi.context
    assert kube.client(None).moorage_context == kubeapi.context


def test_unknown_context_is_bad_input_naming_it_and_the_fix(kubeapi):  # noqa: F811
    with pytest.raises(UserError) as info:
        kube.client("prod-eu", str(kubeapi.kubeconfig))
    assert info.value.exit_code == 2
    assert "'prod-eu'" in info.value.message
    assert "kubectl config get-contexts" in info.value.hint


def test_missing_kubeconfig_is_bad_input(tmp_path):
    with pytest.raises(UserError, match="no kubeconfig found"):
        kube.client(None, str(tmp_path / "nope"))


def write_kubeconfig(tmp_path, text: str):
    path = tmp_path / "config"
    path.write_text(text)
    return path


def test_kubeconfig_that_is_not_yaml_is_bad_input_naming_the_file_and_line(tmp_path):
    path = write_kubeconfig(tmp_path, "apiVersion: v1\nclusters:\n- cluster: {server: https://10.0.0.1\n"
                                      "  name: dev\n")
    with pytest.raises(UserError) as info:
        kube.client(None, str(path))
    assert info.value.exit_code == 2
    assert info.value.message.startswith(f"kubeconfig {path} line 4 is not valid YAML: expected ',' or '}}'")
    assert "\n" not in info.value.message and "KUBECONFIG" in info.value.hint


def test_kubeconfig_that_is_yaml_but_not_a_kubeconfig_is_bad_input(tmp_path):
    path = write_kubeconfig(tmp_path, "- just\n- a list\n")
    with pytest.raises(UserError, match=f"kubeconfig {path} is not a kubeconfig"):
        kube.current_context(str(path))


def test_kubeconfig_without_a_current_context_is_bad_input_unless_a_context_is_given(kubeapi, tmp_path):  # noqa: F811
    text = kubeapi.kubeconfig.read_text().replace(f"current-context: {kubeapi.context}\n", "")
    path = write_kubeconfig(tmp_path, text)
    with pytest.raises(UserError) as info:
        kube.client(None, str(path))
    assert info.value.exit_code == 2
    assert info.value.message == f"kubeconfig {path} has no current-context"
    assert kube.client(kubeapi.context, str(path)).moorage_context == kubeapi.context, "as kubectl --context does"


def test_kubeconfig_whose_current_context_does_not_exist_is_bad_input_naming_it(kubeapi, tmp_path):  # noqa: F811
    text = kubeapi.kubeconfig.read_text().replace(f"current-context: {kubeapi.context}", "current-context: gone")
    path = write_kubeconfig(tmp_path, text)
    with pytest.raises(UserError) as info:
        kube.client(None, str(path))
    assert info.value.exit_code == 2
    assert info.value.message == (f"kubeconfig {path}: its current-context 'gone' is not one of its contexts "
                                  f"(known: {kubeapi.context})")
    assert "kubectl config use-context" in info.value.hint


def test_unreachable_cluster_is_exit_2_with_the_server_and_reason(tmp_path):
    path = unreachable_kubeconfig(tmp_path)
    with pytest.raises(Unreachable) as info:
        kube.client(None, str(path), timeout=2)
    assert info.value.exit_code == 2
    assert info.value.message.startswith("cluster at https://127.0.0.1:")
    assert info.value.message.endswith("is unreachable: connection refused")
    assert "dead-cluster" in info.value.hint


def test_exec_streams_binary_stdout_intact_and_captures_stderr(kubeapi, api):  # noqa: F811
    script_exec(kubeapi)
    chunks: list[bytes] = []
    result = kube.exec_stream(api, NS, POD, ["pg_dump", "-Fc", "app"], container="backend", stdout=chunks.append)
    assert result.exit_code == 0
    assert b"".join(chunks) == BINARY
    assert len(chunks) > 1
    assert result.stdout_bytes == len(BINARY)
    assert result.stderr == "pg_dump: warning: something harmless\n"


def test_exec_streams_stdin_in_and_closes_it(kubeapi, api):  # noqa: F811
    script_exec(kubeapi)
    out = io.BytesIO()
    result = kube.exec_stream(api, NS, POD, ["pg_restore", "-d", "app"], stdout=out, stdin=io.BytesIO(BINARY))
    assert (result.exit_code, result.stdin_bytes) == (0, len(BINARY))
    assert out.getvalue() == f"restored {len(BINARY)} bytes\n".encode()


def test_exec_returns_a_non_zero_exit_code_from_the_error_channel(kubeapi, api):  # noqa: F811
    script_exec(kubeapi)
    code, stdout, stderr = exec_collect(api, NS, POD, ["pg_dumpall"])
    assert (code, stdout, stderr) == (127, b"", "sh: pg_dumpall: not found\n")


def test_exec_in_a_missing_pod_fails_clearly(kubeapi, api):  # noqa: F811
    with pytest.raises(OperationFailed, match="pod not found"):
        exec_collect(api, NS, "ghost", ["true"])


def test_exec_with_stdin_on_a_v4_only_server_is_refused(kubeapi, api):  # noqa: F811
    script_exec(kubeapi)
    kubeapi.ws_protocols = ("v4.channel.k8s.io",)
    assert exec_collect(api, NS, POD, ["pg_dump"])[0] == 0
    with pytest.raises(OperationFailed, match="cannot close stdin"):
        exec_collect(api, NS, POD, ["pg_restore"], stdin=b"x")


@pytest.fixture
def http_backend():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = f'{{"path": "{self.path}"}}'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address
    server.shutdown()
    server.server_close()


def test_port_forward_to_a_service_reaches_the_pod_port_behind_it(kubeapi, api, http_backend):  # noqa: F811
    kubeapi.forward_port(NS, POD, 8000, http_backend)  # service port 80 -> targetPort "http" -> 8000
    with kube.port_forward(api, NS, "backend", 80) as port:
        for path in ("/healthz", "/readyz"):
            response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert response.json() == {"path": path}
    assert kubeapi.requested(f"/pods/{POD}/portforward")


def test_a_service_forward_closed_with_connections_in_flight_leaves_no_connection_thread(kubeapi, api,  # noqa: F811
                                                                                        http_backend):
    """dev.watch's forwards: closing waits for the connections' threads, so none is still opening a stream
    while the process exits (the client's temporary CA file is removed then)."""
    import socket

    from moorage.kube.liveforward import service_forward

    kubeapi.forward_port(NS, POD, 8000, http_backend)
    with service_forward(api, NS, "backend", 80) as port:
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        for client in clients:
            client.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    for client in clients:
        client.close()
    assert [t.name for t in threading.enumerate() if t.name.startswith("forward ")] == []


def test_service_target_skips_pods_that_are_not_ready(kubeapi, api):  # noqa: F811
    kubeapi.apply(merge(load_object("pod"), {"metadata": {"name": "backend-aaa"}, "status": {"phase": "Pending"}}))
    assert kube.resolve_service_target(api, NS, "backend", "http") == (POD, 8000)


def test_port_forward_without_a_ready_pod_fails(kubeapi, api):  # noqa: F811
    kubeapi.delete("Pod", NS, POD)
    with pytest.raises(OperationFailed, match="no ready pod behind service shop/backend"):
        with kube.port_forward(api, NS, "backend", 80):
            pass


def test_port_forward_to_an_unknown_service_is_bad_input(api):
    with pytest.raises(UserError, match="service shop/frontend does not exist"):
        with kube.port_forward(api, NS, "frontend", 80):
            pass


def test_server_errors_are_retried_but_forbidden_is_not(kubeapi, api):  # noqa: F811
    kubeapi.fail_next(f"/api/v1/namespaces/{NS}/services/backend", 503, 503)
    assert kube.resolve_service_target(api, NS, "backend", 80) == (POD, 8000)
    kubeapi.fail_next(f"/api/v1/namespaces/{NS}/services/backend", 403)
    with pytest.raises(UserError, match="reading service shop/backend"):
        kube.resolve_service_target(api, NS, "backend", 80)


def test_too_many_requests_is_retried(kubeapi, api):  # noqa: F811
    kubeapi.fail_next(f"/api/v1/namespaces/{NS}/services/backend", 429, 500)
    assert kube.resolve_service_target(api, NS, "backend", 80) == (POD, 8000)
    assert len(kubeapi.requested(f"/api/v1/namespaces/{NS}/services/backend")) == 3


def test_a_conflict_is_not_retried(kubeapi, api):  # noqa: F811
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": NS}}
    core = CoreV1Api(api)
    core.create_namespaced_config_map(NS, config_map)
    with pytest.raises(ApiException) as info:
        kube.retrying(core.create_namespaced_config_map, NS, config_map)
    assert info.value.status == 409
    creates = [r for r in kubeapi.requested(f"/api/v1/namespaces/{NS}/configmaps") if r[0] == "POST"]
    assert len(creates) == 2, "one create that worked, one that conflicted, no replay"


def test_connection_errors_are_retried_then_raised(tmp_path):
    from kubernetes.client import CoreV1Api

    api = kube.client(None, str(unreachable_kubeconfig(tmp_path)), check=False)
    calls: list[str] = []

    def read():
        calls.append("read")
        return CoreV1Api(api).read_namespace("shop", _request_timeout=2)

    with pytest.raises(Exception) as info:  # noqa: PT011 - the client's own connection error
        kube.retrying(read, attempts=3, max_wait=0.01)
    assert kube.is_connection_error(info.value)
    assert len(calls) == 3


def test_namespace_being_deleted_reports_its_deletion_timestamp(kubeapi, api):  # noqa: F811
    kubeapi.apply(load_object("namespace-terminating"))
    assert kube.namespace_deletion(api, "moorage-dev") == "2026-11-23T10:02:11Z"
    kubeapi.apply(merge(load_object("namespace-terminating"), {"metadata": {"name": "other", "deletionTimestamp": None}}))
    assert kube.namespace_deletion(api, "other") is None
    assert kube.namespace_deletion(api, "absent") is None


def test_waiting_for_a_namespace_returns_when_the_watch_sees_it_deleted(kubeapi, api):  # noqa: F811
    kubeapi.apply(load_object("namespace-terminating"))
    kubeapi.play([], when_watched="namespaces", then=lambda: kubeapi.delete("Namespace", "", "moorage-dev"))
    assert kube.wait_namespace_deleted(api, "moorage-dev", timeout=30) is True
    watches = [q for m, p, q in kubeapi.requested("/api/v1/namespaces") if "watch" in q]
    assert watches and watches[0]["fieldSelector"] == ["metadata.name=moorage-dev"]


def test_waiting_for_a_namespace_that_stays_gives_up_at_the_bound(kubeapi, api):  # noqa: F811
    kubeapi.apply(load_object("namespace-terminating"))
    assert kube.wait_namespace_deleted(api, "moorage-dev", timeout=1) is False


def test_pod_log_reads_tail_and_previous_and_none_when_absent(kubeapi, api):  # noqa: F811
    kubeapi.set_log(NS, POD, "backend", "a\nb\nc\n")
    assert kube.pod_log(api, NS, POD, "backend", tail_lines=2) == "b\nc\n"
    assert kube.pod_log(api, NS, POD, "backend", previous=True) is None
    kubeapi.set_log(NS, POD, "backend", "crashed\n", previous=True)
    assert kube.pod_log(api, NS, POD, "backend", previous=True) == "crashed\n"


def test_follow_log_passes_whole_lines_across_chunk_boundaries(kubeapi, api):  # noqa: F811
    kubeapi.set_log(NS, POD, "backend", "héllo wörld\n日本語 ✓\n\nlast line without newline")
    kubeapi.log_chunk_bytes = 3  # every multibyte character above is cut by a chunk boundary somewhere
    lines: list[str] = []
    kube.follow_log(api, NS, POD, "backend", on_line=lines.append)
    assert lines == ["héllo wörld", "日本語 ✓", "", "last line without newline"]


def test_follow_log_stops_when_asked(kubeapi, api):  # noqa: F811
    kubeapi.set_log(NS, POD, "backend", "one\ntwo\nthree\n")
    kubeapi.log_chunk_bytes = 4
    stop = threading.Event()
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        stop.set()

    kube.follow_log(api, NS, POD, "backend", on_line=on_line, stop=stop)
    assert lines == ["one"]


def test_service_port_is_the_first_port_of_the_service(api):
    assert kube.service_port(api, NS, "backend") == 80


def test_stream_logs_prefixes_each_line_with_pod_and_container(kubeapi, api):  # noqa: F811
    kubeapi.set_log(NS, POD, "backend", "one\ntwo\nthree\n")
    lines: list[str] = []
    count = kube.stream_logs(api, NS, "app.kubernetes.io/instance=shop", tail=2, follow=True, write=lines.append)
    assert count == 1
    assert lines == [f"[{POD}/backend] two", f"[{POD}/backend] three"]


def test_stream_logs_without_matching_pods_fails(api):
    with pytest.raises(OperationFailed, match="no pod matches app=nothing"):
        kube.stream_logs(api, NS, "app=nothing", write=lambda _line: None)
