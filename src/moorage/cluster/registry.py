"""What a registry holds, read through the OCI distribution API, before and after a push.

The Docker engine pushes (it uploads only the blobs the registry lacks). This module
answers what the engine cannot before it: is the registry reachable and trusted, are
the credentials good, and does a tag exist there with *this* image (the same config
digest, the image's identity whatever the layer compression) or with other content.
Moorage's tags are content hashes, so a tag that names other content is refused,
never overwritten. After the push, the manifest digests it reads are what the
release pins (``<tag>@sha256:...``), so the cluster pulls exactly what was tested.

Trust: the environment's ``registry.ca``, else the Docker engine's
``/etc/docker/certs.d/<host>/ca.crt`` (the file the engine's push reads), else the
system's CAs. Authentication: Basic, or a Bearer token from the realm the registry's
``WWW-Authenticate`` challenge names (Docker Hub, GHCR, Harbor, distribution's token
auth), asked for anonymously when there are no credentials (a public repository's pull
needs none). The credentials are the environment's ``.env`` keys, else what ``docker
login`` stored for the host (:func:`docker_login`: the Docker client's config file and
its credential helpers, as the engine's push reads them). A loopback registry without
TLS is spoken to over HTTP, as the engine does.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import OperationFailed, UserError

DOCKER_CERTS = Path("/etc/docker/certs.d")
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = ""  # where they were read from, for messages (never the values)


@dataclass(frozen=True)
class Manifest:
    digest: str  # the manifest's own digest: what a pull by digest names
    config: str  # the image config's digest (the image ID); "" for an index without linux/amd64
    layers: tuple[int, ...] = ()  # the compressed size of each layer, in the order of the image's diff IDs


def docker_login(host: str) -> Credentials | None:
    """The username and password ``docker login HOST`` stored (``$DOCKER_CONFIG/config.json`` or
    ``~/.docker``, its ``auths``, ``credsStore`` or ``credHelpers``), or None. An identity token
    (a Docker Desktop sign-in) is not a password: None."""
    from docker import auth

    try:
        found = auth.load_config().resolve_authconfig(host) or {}
    except Exception:  # noqa: BLE001 - an unreadable config or a failing helper: as if none were stored
        return None
    fields = {key.lower(): value for key, value in found.items()}
    if not fields.get("username") or not fields.get("password"):
        return None
    return Credentials(fields["username"], fields["password"], f"`docker login {host}` (the Docker client's config)")


def split_ref(ref: str) -> tuple[str, str, str]:
    """``host[:port]/path:tag`` → (host, repository path, tag)."""
    name, _, tag = ref.rpartition(":")
    host, _, path = name.partition("/")
    return host, path, tag


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or "]:" in host else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def trust(host: str, ca: Path | None) -> str | bool:
    """What TLS verification uses for ``host``: a CA file, or True for the system's CAs."""
    if ca is not None:
        return str(ca)
    engine_ca = DOCKER_CERTS / host / "ca.crt"
    return str(engine_ca) if engine_ca.is_file() else True


class Registry:
    """A session with one registry host; errors are one line that names the host and the fix."""

    def __init__(self, host: str, *, credentials: Credentials | None = None, ca: Path | None = None,
                 where: str = "the environment's registry", timeout: float = 15):
        import requests

        self.host, self.credentials, self.where, self.timeout = host, credentials, where, timeout
        self.session = requests.Session()
        # per request: requests lets REQUESTS_CA_BUNDLE override a session's verify
        self.verify = trust(host, ca)
        self.scheme = "https"
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self.session.close()

    def ping(self) -> None:
        """The API root with the credentials: raises the one-line error a push would meet, else returns."""
        self._check(self._get("/v2/", "", {}), "its API root")

    def manifest(self, repository: str, tag: str) -> Manifest | None:
        """The manifest under ``repository:tag``, or None when the tag does not exist."""
        response = self._get(f"/v2/{repository}/manifests/{tag}", f"repository:{repository}:pull",
                             {"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            return None
        self._check(response, f"{repository}:{tag}")
        body = response.json()
        digest = response.headers.get("Docker-Content-Digest", "")
        if body.get("mediaType") in INDEX_TYPES or "manifests" in body:
            chosen = next((m for m in body.get("manifests", [])
                           if (m.get("platform") or {}).get("os") == "linux"
                           and (m.get("platform") or {}).get("architecture") == "amd64"), None)
            if chosen is None:
                return Manifest(digest, "")
            inner = self.manifest(repository, chosen["digest"])
            return Manifest(digest, inner.config, inner.layers) if inner else Manifest(digest, "")
        return Manifest(digest, (body.get("config") or {}).get("digest", ""),
                        tuple(int(layer.get("size", 0)) for layer in body.get("layers", [])))

    def _get(self, path: str, scope: str, headers: dict[str, str]):
        import requests

        try:
            response = self._send(path, scope, headers)
        except requests.exceptions.SSLError as exc:
            if _loopback(self.host) and self.scheme == "https" and self._plain_http():
                return self._send(path, scope, headers)
            raise UserError(f"registry {self.host}: its TLS certificate is not trusted ({_reason(exc)})",
                            f"put the CA that signed it in {DOCKER_CERTS / self.host / 'ca.crt'} (the Docker "
                            f"engine reads it too) or name it in {self.where}.ca") from None
        except requests.exceptions.RequestException as exc:
            raise OperationFailed(f"registry {self.host} is unreachable: {_reason(exc)}",
                                  f"check that it is up and that {self.where} names it (host[:port]/path)") from None
        if response.status_code == 401:
            response = self._authenticate(response, path, scope, headers)
        return response

    def _send(self, path: str, scope: str, headers: dict[str, str]):
        token = self._tokens.get(scope)
        auth = {"Authorization": token} if token else {}
        return self.session.get(f"{self.scheme}://{self.host}{path}", headers={**headers, **auth},
                                timeout=self.timeout, verify=self.verify)

    def _plain_http(self) -> bool:
        """A loopback registry without TLS (the engine allows it): switch to HTTP if it answers there."""
        import requests

        try:
            answer = self.session.get(f"http://{self.host}/v2/", timeout=self.timeout)
        except requests.exceptions.RequestException:
            return False
        if answer.status_code in (200, 401) and "Docker-Distribution-API-Version" in answer.headers:
            self.scheme = "http"
            return True
        return False

    def _authenticate(self, challenged, path: str, scope: str, headers: dict[str, str]):
        import requests

        header = challenged.headers.get("WWW-Authenticate", "")
        scheme, _, params = header.partition(" ")
        if self.credentials is None and scheme.lower() != "bearer":
            raise self._no_credentials()
        basic = (self.credentials.username, self.credentials.password) if self.credentials else None
        if scheme.lower() == "basic":
            value = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        elif scheme.lower() == "bearer":  # without credentials: an anonymous token (public repositories)
            fields = dict(_CHALLENGE.findall(params))
            try:
                answer = self.session.get(fields.get("realm", ""), auth=basic, timeout=self.timeout,
                                          params={"service": fields.get("service", ""), "scope": scope},
                                          verify=self.verify)
            except requests.exceptions.RequestException as exc:
                raise OperationFailed(f"registry {self.host}: its token service is unreachable: {_reason(exc)}",
                                      "check the registry's auth configuration") from None
            if answer.status_code in (401, 403):
                raise self._refused() if self.credentials else self._no_credentials()
            self._check(answer, "a token")
            body = answer.json()
            value = f"Bearer {body.get('token') or body.get('access_token', '')}"
        else:
            raise OperationFailed(f"registry {self.host} asks for an authentication Moorage does not speak "
                                  f"({scheme or 'none named'})", "use a registry with Basic or Bearer token auth")
        self._tokens[scope] = value
        response = self._send(path, scope, headers)
        if response.status_code == 401:
            raise self._refused() if self.credentials else self._no_credentials()
        return response

    def _no_credentials(self) -> UserError:
        return UserError(f"registry {self.host} requires credentials and the environment gives none",
                         f"set {self.where}.username and .password to the .env keys that hold them, or run "
                         f"`docker login {self.host}`")

    def _refused(self) -> UserError:
        return UserError(f"registry {self.host} refused the credentials from {self.credentials.source}",
                         "fix the username and password in .env (or .env.<env>) and run again")

    def _check(self, response, what: str) -> None:
        if response.status_code == 403:
            raise UserError(f"registry {self.host} denies access to {what} (HTTP 403)",
                            "give the account pull and push rights on that repository")
        if response.status_code >= 400:
            raise OperationFailed(f"registry {self.host} answered HTTP {response.status_code} for {what}: "
                                  f"{response.text.strip()[:200]}", "check the registry's logs")


def _reason(exc: Exception) -> str:
    """The innermost cause of a requests error, in a few words."""
    text = str(exc)
    for pattern in (r"\[SSL: [A-Z_]+\] ([^(]+)", r"\[Errno -?\d+\] ([^')]+)", r"(Read timed out)",
                    r"(certificate verify failed[^(']*)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1).strip().rstrip(".")
    return text.splitlines()[0][:160] if text else type(exc).__name__


def manifests(refs: Iterable[str], *, credentials: Credentials | None = None, ca: Path | None = None,
              where: str = "the environment's registry") -> dict[str, Manifest | None]:
    """What the registry holds under each ref (None: no such tag); one session per registry host."""
    found: dict[str, Manifest | None] = {}
    sessions: dict[str, Registry] = {}
    try:
        for ref in refs:
            host, repository, tag = split_ref(ref)
            if host not in sessions:
                sessions[host] = Registry(host, credentials=credentials, ca=ca, where=where)
            found[ref] = sessions[host].manifest(repository, tag)
    finally:
        for session in sessions.values():
            session.close()
    return found


def lookup(refs: Iterable[str], local_ids: dict[str, str], *, credentials: Credentials | None = None,
           ca: Path | None = None, where: str = "the environment's registry") -> dict[str, str]:
    """The manifest digest of each ref the registry holds with the same image; absent refs are left out.

    ``local_ids`` maps a ref to its local image ID (the config digest). A tag that holds other
    content is a UserError: Moorage never overwrites a tag.
    """
    found: dict[str, str] = {}
    for ref, manifest in manifests(refs, credentials=credentials, ca=ca, where=where).items():
        if manifest is None:
            continue
        local = local_ids.get(ref, "")
        if local and local not in (manifest.config, manifest.digest):
            raise UserError(f"tag {ref} exists in the registry with other content (its image "
                            f"{manifest.config[:19] or manifest.digest[:19]}, this build {local[:19]})",
                            "Moorage never overwrites a tag: if it came from another build of the same sources, "
                            "remove this build (docker image rm) to deploy the registry's; else delete that tag "
                            f"from the registry, or point {where} at a repository only this project pushes to")
        found[ref] = manifest.digest
    return found


def pushed_bytes(manifest: Manifest, diff_ids: list[str], pushed: set[str]) -> int:
    """Bytes the registry received: the compressed sizes of the layers the engine reported as pushed.

    The engine names a layer by the first 12 hex digits of its diff ID; the manifest lists the
    layers in diff-ID order.
    """
    return sum(size for diff_id, size in zip(diff_ids, manifest.layers, strict=False)
               if diff_id.split(":", 1)[-1][:12] in pushed)
