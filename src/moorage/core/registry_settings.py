"""How an environment reaches its image registry: address, trust and credentials.

``moorage.environments.<env>.registry`` is either the address alone or a mapping::

    registry: registry.example.com/shop      # images are pushed as <registry>/<image>:<tag>

    registry:
      url: registry.example.com:5000/shop
      ca: certs/registry-ca.pem     # optional: the CA that signed its TLS certificate; default: the
                                    # Docker engine's /etc/docker/certs.d/<host>/ca.crt, then the system's
      username: REGISTRY_USERNAME   # .env keys (never values): the credentials the push uses and
      password: REGISTRY_PASSWORD   # the cluster pulls with
      pull_secret: shop-registry    # the kubernetes.io/dockerconfigjson Secret made from them in the
                                    # namespace before Helm runs (default: <release>-registry)
      values_key: imagePullSecrets  # where the chart takes pull secrets ([{name: ...}]); "" to pass
                                    # none (a ServiceAccount of the chart's carries it)
      push: true                    # push here and let the nodes pull even when the cluster is local
                                    # (a kind or local cluster's own registry): only the layers the
                                    # registry lacks travel, where a load sends the whole image;
                                    # default false: a local cluster gets its images loaded

Credentials are read from ``.env``, ``.env.<env>`` or the process environment like every secret,
and go to the Docker engine in its API request and to the cluster in a Secret, never on a command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .reader import Reader

DEFAULT_PULL_SECRET_VALUES_KEY = "imagePullSecrets"


@dataclass(frozen=True)
class RegistryAccess:
    """Trust and credentials for an environment's registry (empty: public trust, no credentials)."""

    ca: Path | None = None
    username_key: str = ""
    password_key: str = ""
    pull_secret: str = ""
    values_key: str = DEFAULT_PULL_SECRET_VALUES_KEY
    push: bool = False  # push even to a local cluster (its nodes pull from the registry)

    @property
    def env_keys(self) -> tuple[str, ...]:
        return tuple(k for k in (self.username_key, self.password_key) if k)


def registry(raw: Any, where: str, source: str, root: Path, release: str) -> tuple[str, RegistryAccess]:
    """The registry address and its access settings, from a string or a mapping."""
    if raw is None or isinstance(raw, str):
        return (raw or "").rstrip("/"), RegistryAccess()
    r = Reader(raw, where, source)
    r.unknown({"url", "ca", "username", "password", "pull_secret", "values_key", "push"})
    url = (r.str("url", required=True) or "").rstrip("/")
    ca = r.str("ca")
    ca_path = None
    if ca:
        ca_path = Path(ca) if Path(ca).is_absolute() else root / ca
        if not ca_path.is_file():
            raise ConfigError(f"{where}.ca in {source}: {ca} does not exist",
                              f"fix the path (relative to {root}) or remove {where}.ca")
    username, password = r.str("username", ""), r.str("password", "")
    if bool(username) != bool(password):
        raise ConfigError(f"{where} in {source} names only one of username and password",
                          f"name both .env keys: {where}.username and {where}.password")
    pull_secret = r.str("pull_secret", f"{release}-registry" if username else "") or ""
    return url, RegistryAccess(ca=ca_path, username_key=username or "", password_key=password or "",
                               pull_secret=pull_secret,
                               values_key=r.str("values_key", DEFAULT_PULL_SECRET_VALUES_KEY) or "",
                               push=_flag(r, "push"))


def _flag(r: Reader, key: str) -> bool:
    value = r.raw.get(key, False)
    if not isinstance(value, bool):
        raise r._bad(key, "true or false", value)
    return value
