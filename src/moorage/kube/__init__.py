"""The Kubernetes foundation: everything above it talks to the cluster through this package.

* :mod:`.api`: kubeconfig and contexts, the ``ApiClient`` of a context
  (:func:`client`), the reachability check, client errors turned into the
  project's errors, the retry policy.
* :mod:`.namespaces`: whether a namespace is being deleted, waiting until it is gone.
* :mod:`.pods`: :func:`pod_ready`, THE rule for a ready pod; listing pods.
* :mod:`.logs`: a container's log, :func:`follow_log` (THE log follower),
  the logs of given pods or of a selector's pods.
* :mod:`.portforward`: a Service's port served on ``127.0.0.1``.
* :mod:`.exec`: a command run in a container with binary stdin/stdout streams.
* :mod:`.websocket`: opening the exec and port-forward WebSockets (shared by the two above).

The ``kubernetes`` package is imported inside functions: importing this
package costs nothing (``inv --list`` stays instant).
"""

from .api import (
    api_error,
    client,
    connection_reason,
    contexts,
    current_context,
    is_connection_error,
    is_retryable,
    iter_lines,
    kubeconfig_path,
    ping,
    read_json,
    resolve_context,
    retrying,
    server_url,
    unreachable,
)
from .apply import apply
from .exec import ExecResult, exec_stream
from .logs import follow_log, job_log_tail, pod_log, stream_logs, stream_pod_logs
from .namespaces import namespace_deletion, wait_namespace_deleted
from .pods import list_pods, pod_ready
from .portforward import pod_port_forward, port_forward, resolve_service_target, service_port
from .rollouts import stop_previous

__all__ = [
    "apply",
    "stop_previous",
    "ExecResult",
    "api_error",
    "client",
    "connection_reason",
    "contexts",
    "current_context",
    "exec_stream",
    "follow_log",
    "is_connection_error",
    "is_retryable",
    "iter_lines",
    "kubeconfig_path",
    "list_pods",
    "namespace_deletion",
    "ping",
    "job_log_tail",
    "pod_log",
    "pod_port_forward",
    "pod_ready",
    "port_forward",
    "read_json",
    "resolve_context",
    "resolve_service_target",
    "retrying",
    "server_url",
    "service_port",
    "stream_logs",
    "stream_pod_logs",
    "unreachable",
    "wait_namespace_deleted",
]
