"""Opening the API's WebSockets (exec and port-forward) through the client's own request building.

The client's ``WSClient`` decodes output as UTF-8 unless ``binary=True``
(only in recent clients), older clients offer only the v4 exec protocol, and
clients before 37 turn a failed handshake into an ``AttributeError`` (their
``ApiClient`` decodes the body of the ``ApiException(0)`` the WebSocket layer
raises, which has none). So exec and port-forward open the WebSocket here
through the client's adapter for its generated ``connect_*`` methods (URL,
query and auth come from the client), offering v5 then v4 for exec, and read
the channel frames from the socket themselves. A failed handshake keeps its
HTTP status.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from typing import Any

CHUNK = 256 * 1024  # bytes read or sent at a time on a stream
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"


class HandshakeFailed(Exception):
    """The WebSocket could not be opened; ``cause`` is what the transport raised.

    Not an ``ApiException``, so the client's ``ApiClient`` lets it through
    untouched (clients < 37 try to decode the body of an ``ApiException`` and
    fail with ``AttributeError`` when it has none).
    """

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


def open_websocket(transport: Callable[..., Any], api_method: Callable[..., Any], *args: Any, **kwargs: Any):
    """Call a generated ``connect_*`` method with ``transport`` (the client's ``*_call``) in place of HTTP.

    This is what ``kubernetes.stream.stream``/``portforward`` do (the client
    builds URL, query and auth headers), except that a failed handshake is
    raised as :class:`HandshakeFailed` carrying the original error.
    """
    from kubernetes.client.exceptions import ApiException
    from kubernetes.stream.stream import _websocket_request  # same signature in clients 30-37

    def request(configuration, method: str, url: str, **options: Any):
        try:
            return transport(configuration, method, url, **options)
        except ApiException as exc:  # the client's own *_call wraps every failure in ApiException(0)
            raise HandshakeFailed(exc.__context__ or exc) from None
        except Exception as exc:
            raise HandshakeFailed(exc) from None

    # The client swaps ``request`` on the method's ApiClient while the call runs: on a shared client, a
    # REST call another thread makes meanwhile would go over a WebSocket (and fail). A private client
    # with the same configuration takes the swap alone.
    from kubernetes.client import ApiClient

    owner = api_method.__self__
    private = type(owner)(ApiClient(owner.api_client.configuration))
    return _websocket_request(request, {"_preload_content": False}, getattr(private, api_method.__name__),
                              *args, **kwargs)


def channel_socket(configuration, _method: str, url: str, **options: Any):
    """The raw exec WebSocket, offering v5 (which can close stdin) then v4, whatever the client offers."""
    from kubernetes.stream.ws_client import create_websocket, get_websocket_url

    headers = dict(options.get("headers") or {})
    headers["sec-websocket-protocol"] = f"{V5},{V4}"
    return create_websocket(configuration, get_websocket_url(url, options.get("query_params")), headers)


def handshake_failure(exc: HandshakeFailed) -> tuple[int | None, str]:
    """(HTTP status, message) of a failed handshake; the message from the API's Status body when there is one."""
    cause = exc.cause
    code = getattr(cause, "status_code", None)
    if code is None:  # an old websocket-client: only the text says it
        match = re.search(r"Handshake status (\d+)", str(cause))
        code = int(match.group(1)) if match else None
    body = getattr(cause, "resp_body", None)
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        message = json.loads(body).get("message")
        if message:
            return code, str(message)
    text = str(cause).split(" -+-+- ")[0]
    return code, (text.splitlines()[0] if text else type(cause).__name__)
