"""The API client of one kube context: kubeconfig and contexts, the client factory, the reachability
check, the mapping of client errors to the project's errors, and the retry policy.

Every other part of Moorage reaches the cluster through the ``ApiClient`` that
:func:`client` returns.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..core.errors import MoorageError, OperationFailed, Unreachable, UserError

DEFAULT_KUBECONFIG = "~/.kube/config"
PING_TIMEOUT = 5.0
GET_CONTEXTS = "`kubectl config get-contexts`"

T = TypeVar("T")


def kubeconfig_path(kubeconfig: str | os.PathLike[str] | None = None) -> str:
    """The kubeconfig to read: the argument, else ``$KUBECONFIG`` (a path list), else ``~/.kube/config``."""
    if kubeconfig:
        return os.fspath(kubeconfig)
    return os.environ.get("KUBECONFIG") or os.path.expanduser(DEFAULT_KUBECONFIG)


def contexts(kubeconfig: str | os.PathLike[str] | None = None) -> tuple[list[str], str | None]:
    """The context names of the kubeconfig and its current context (None if it has none).

    ``$KUBECONFIG`` may list several files: as kubectl merges them, the first
    file that sets a context or the current context wins. A file that is not
    YAML, or not a kubeconfig, is a :class:`UserError` naming the file (and line).
    """
    path = kubeconfig_path(kubeconfig)
    files = [os.path.expanduser(p) for p in path.split(os.pathsep) if p]
    existing = [f for f in files if os.path.exists(f)]
    if not existing:
        raise UserError(f"no kubeconfig found at {path}",
                        hint=f"set KUBECONFIG or create it (minikube start / kind create cluster); {GET_CONTEXTS}")
    names: list[str] = []
    current: str | None = None
    for file in existing:
        doc = _load_kubeconfig(file)
        for entry in doc.get("contexts") or []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise UserError(f"kubeconfig {file} has a context without a name",
                                hint=f"give each entry of 'contexts' a name; check it with {GET_CONTEXTS}")
            if name not in names:
                names.append(name)
        current = current or doc.get("current-context") or None
    return names, current


def _load_kubeconfig(file: str) -> dict[str, Any]:
    """One kubeconfig file as a mapping; UserError naming the file and line if it is not one."""
    import yaml

    fix = f"fix it or point KUBECONFIG at a good one ({GET_CONTEXTS})"
    try:
        with open(file, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file} line {mark.line + 1}" if mark is not None else file
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"kubeconfig {where} is not valid YAML: {problem}", hint=fix) from None
    except UnicodeDecodeError:
        raise UserError(f"kubeconfig {file} is not a text file (UTF-8)", hint=fix) from None
    except OSError as exc:
        raise UserError(f"kubeconfig {file} cannot be read: {exc.strerror or exc}", hint=fix) from None
    if doc is None:
        return {}  # an empty file: kubectl reads it as an empty config
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts") or [], list):
        raise UserError(f"kubeconfig {file} is not a kubeconfig (a mapping with clusters, users and a list "
                        f"of contexts)", hint=fix)
    return doc


def current_context(kubeconfig: str | os.PathLike[str] | None = None) -> str | None:
    """The kubeconfig's current context name (None if it has none)."""
    return contexts(kubeconfig)[1]


def resolve_context(context: str | None, kubeconfig: str | os.PathLike[str] | None = None) -> str:
    """The context that will be used: ``context`` if it exists, else the current one. UserError otherwise."""
    path = kubeconfig_path(kubeconfig)
    names, current = contexts(path)
    known = ", ".join(names) or "none"
    if context:
        if context not in names:
            raise UserError(f"kube context '{context}' is not in {path} (known: {known})",
                            hint=f"create the cluster for '{context}' or set the environment's context to one "
                                 f"listed by {GET_CONTEXTS}")
        return context
    if not current:
        raise UserError(f"kubeconfig {path} has no current-context",
                        hint=f"set the environment's context or run `kubectl config use-context NAME` ({GET_CONTEXTS})")
    if current not in names:
        raise UserError(f"kubeconfig {path}: its current-context '{current}' is not one of its contexts "
                        f"(known: {known})",
                        hint=f"run `kubectl config use-context NAME` with one listed by {GET_CONTEXTS}, or set the "
                             f"environment's context")
    return current


def client(context: str | None, kubeconfig: str | os.PathLike[str] | None = None, *,
           check: bool = True, timeout: float = PING_TIMEOUT):
    """An ``ApiClient`` for ``context`` (None: the current context) of the kubeconfig.

    With ``check`` (the default) the API server is asked for ``/version`` with
    a short timeout, so an unreachable cluster fails here with
    :class:`Unreachable` (exit 2) rather than in the middle of a phase. The
    context name used is set on the client as ``moorage_context``.
    """
    from kubernetes.client import ApiClient, Configuration
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import load_kube_config

    path = kubeconfig_path(kubeconfig)
    name = resolve_context(context, path)
    cfg = Configuration()
    try:
        load_kube_config(config_file=path, context=name, client_configuration=cfg, persist_config=False)
    except ConfigException as exc:
        raise UserError(f"kube context '{name}' in {path} is unusable: {exc}",
                        hint=f"check it with {GET_CONTEXTS}") from None
    api = ApiClient(configuration=cfg)
    api.moorage_context = name  # type: ignore[attr-defined]
    _send_booleans_lowercase(api)
    if check:
        ping(api, timeout=timeout)
    return api


def _send_booleans_lowercase(api) -> None:
    """Send query booleans as the API documents them (``previous=true``), like clients >= 37.

    Older clients send Python's ``True``. The API server reads both the same,
    but a request should not change shape with the client version.
    """
    to_tuples = api.parameters_to_tuples  # clients >= 37 lowercase them already: then this changes nothing

    def parameters_to_tuples(params, collection_formats):
        items = params.items() if isinstance(params, dict) else params
        return to_tuples([(k, str(v).lower() if isinstance(v, bool) else v) for k, v in items], collection_formats)

    api.parameters_to_tuples = parameters_to_tuples


def server_url(api) -> str:
    return api.configuration.host


def context_of(api) -> str:
    return getattr(api, "moorage_context", "") or "?"


def ping(api, timeout: float = PING_TIMEOUT) -> str:
    """The server's version (``v1.33.1``); :class:`Unreachable` if nothing answers in time."""
    from kubernetes.client import VersionApi
    from kubernetes.client.exceptions import ApiException

    try:
        response = VersionApi(api).get_code(_request_timeout=(timeout, timeout), _preload_content=False)
        return str(read_json(response).get("gitVersion", "unknown"))
    except ApiException as exc:
        if exc.status in (401, 403):
            raise UserError(f"cluster at {server_url(api)} refused the credentials of context "
                            f"'{context_of(api)}' ({exc.status} {exc.reason})",
                            hint="log in again or refresh the kubeconfig") from None
        return "unknown"  # it answered: reachable, even if /version is filtered
    except Exception as exc:
        if is_connection_error(exc):
            raise unreachable(api, exc) from None
        raise


def unreachable(api, exc: BaseException) -> Unreachable:
    return Unreachable(f"cluster at {server_url(api)} is unreachable: {connection_reason(exc)}",
                       hint=f"start the cluster (minikube start / kind / k3d) or check that context "
                            f"'{context_of(api)}' is the right one ({GET_CONTEXTS})")


def connection_reason(exc: BaseException) -> str:
    """A short human reason for a connection failure, digging through urllib3's wrapping."""
    text = str(getattr(exc, "reason", None) or exc)
    lowered = text.lower()
    for needle, reason in (("refused", "connection refused"), ("timed out", "connection timed out"),
                           ("name or service not known", "unknown host"), ("nodename nor servname", "unknown host"),
                           ("certificate", "TLS certificate rejected"), ("ssl", "TLS error"),
                           ("reset by peer", "connection reset"), ("ended prematurely", "connection lost"),
                           ("connection broken", "connection lost"), ("connection aborted", "connection lost")):
        if needle in lowered:
            return reason
    return text.splitlines()[0] if text else type(exc).__name__


def is_connection_error(exc: BaseException) -> bool:
    import urllib3.exceptions

    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, socket.timeout))


def is_retryable(exc: BaseException) -> bool:
    """Worth another try: connection failures, 429 Too Many Requests and 5xx. Never bad input.

    Not 409 Conflict: replaying the create of an object that already exists, or
    an update based on a stale resourceVersion, gets the same answer every time.
    """
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return exc.status is not None and (exc.status >= 500 or exc.status == 429)
    return is_connection_error(exc)


def retrying(fn: Callable[..., T], *args: Any, attempts: int = 5, max_wait: float = 2.0, **kwargs: Any) -> T:
    """Call ``fn`` and retry only retryable failures, with exponential backoff."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    for attempt in Retrying(retry=retry_if_exception(is_retryable), stop=stop_after_attempt(attempts),
                            wait=wait_exponential(multiplier=0.1, max=max_wait), reraise=True):
        with attempt:
            return fn(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises


def api_error(api, exc: BaseException, doing: str) -> MoorageError:
    """Turn a client exception into the project's error, for ``raise api_error(...) from exc``."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, MoorageError):
        return exc
    if isinstance(exc, ApiException):
        message = status_message(exc)
        if exc.status in (401, 403):
            return UserError(f"{doing}: {message}",
                             hint=f"check the permissions of context '{context_of(api)}' (kubectl auth can-i)")
        return OperationFailed(f"{doing}: {message}")
    if is_connection_error(exc):
        return unreachable(api, exc)
    return OperationFailed(f"{doing}: {exc}")


def status_message(exc) -> str:
    """The message of the API's Status body of an ``ApiException``, else its status and reason."""
    try:
        body = json.loads(exc.body or "")
        return body.get("message") or f"{exc.status} {exc.reason}"
    except (ValueError, AttributeError):
        return f"{exc.status} {exc.reason}".strip()


def read_json(response) -> Any:
    """Decode a ``_preload_content=False`` response."""
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


def iter_lines(response) -> Iterator[bytes]:
    """The lines of a ``_preload_content=False`` response as they arrive, split on ``\\n`` across chunk
    boundaries (so a line is always whole, and so is every character in it); a last unterminated line too."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from lines
    if buffer:
        yield buffer
