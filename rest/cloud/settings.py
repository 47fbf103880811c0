"""Where cloud requests go and whether they may: ``OLLAMA_CLOUD_BASE_URL``, ``OLLAMA_NO_CLOUD``,
``~/.ollama/server.json``, ``OLLAMA_API_KEY``, the daemon's ed25519 key, and for remote models
(stubs) ``OLLAMA_REMOTES`` and ``OLLAMA_AUTH``, read once at start."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

import structlog

from herd.cloud_key import key_path
from herd.modelref import OLLAMA_CLOUD_URL

log = structlog.get_logger(__name__)

DEFAULT_BASE_URL = OLLAMA_CLOUD_URL
BASE_URL_ENV = "OLLAMA_CLOUD_BASE_URL"
NO_CLOUD_ENV = "OLLAMA_NO_CLOUD"
API_KEY_ENV = "OLLAMA_API_KEY"
REMOTES_ENV = "OLLAMA_REMOTES"
AUTH_ENV = "OLLAMA_AUTH"
DEFAULT_REMOTES = ("ollama.com",)
SERVER_CONFIG = "server.json"

# strconv.ParseBool's spellings; any other non-empty value counts as true, as in Ollama's envconfig.Bool.
_GO_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
_GO_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})


class InvalidBaseURL(ValueError):
    pass


def _env(environ: Mapping[str, str], key: str) -> str:
    return environ.get(key, "").strip().strip("\"'")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(raw: str) -> str:
    """The origin ``raw`` names: https on any host, http on loopback only; nothing but an origin.

    Unlike Ollama's release builds (loopback only), any https host is accepted, so one herd can be
    another's cloud.
    """
    try:
        url = urlsplit(raw)
        url.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as error:
        raise InvalidBaseURL(f"invalid URL: {error}") from None
    if not url.scheme or not url.hostname:
        raise InvalidBaseURL("invalid URL: scheme and host are required")
    if "@" in url.netloc:
        raise InvalidBaseURL("invalid URL: userinfo is not allowed")
    if url.path not in ("", "/"):
        raise InvalidBaseURL("invalid URL: path is not allowed")
    if url.query or url.fragment:
        raise InvalidBaseURL("invalid URL: query and fragment are not allowed")
    scheme = url.scheme.lower()
    if scheme == "http" and not _is_loopback(url.hostname):
        raise InvalidBaseURL("invalid URL: http is allowed on loopback only; use https")
    if scheme not in ("http", "https"):
        raise InvalidBaseURL("invalid URL: the scheme must be https (or http on loopback)")
    return f"{scheme}://{url.netloc}"


def _go_bool(value: str) -> bool:
    return value in _GO_TRUE or value not in _GO_FALSE


def _config_disables_cloud(home: Path) -> bool:
    try:
        config = json.loads((home / ".ollama" / SERVER_CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("disable_ollama_cloud") is True


@dataclass(frozen=True)
class CloudSettings:
    """``disabled_source`` is what ``GET /api/status`` reports: none, env, config or both."""

    base_url: str = DEFAULT_BASE_URL
    disabled_source: str = "none"
    api_key: str = ""
    key_path: Path = field(default_factory=key_path)
    # Host names whose remote models this server runs, and whether it signs requests to every host.
    remotes: tuple[str, ...] = DEFAULT_REMOTES
    sign_every_host: bool = False

    @property
    def disabled(self) -> bool:
        return self.disabled_source != "none"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CloudSettings:
        home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
        base_url = DEFAULT_BASE_URL
        if override := _env(environ, BASE_URL_ENV):
            try:
                base_url = origin_of(override)
                log.info("cloud_base_url_override", env=BASE_URL_ENV, url=base_url)
            except InvalidBaseURL as error:
                log.warning("ignoring cloud base URL override", env=BASE_URL_ENV, error=str(error),
                            default=DEFAULT_BASE_URL)
        no_cloud = _env(environ, NO_CLOUD_ENV)
        by_env, by_config = bool(no_cloud) and _go_bool(no_cloud), _config_disables_cloud(home)
        source = {(True, True): "both", (True, False): "env", (False, True): "config"}.get((by_env, by_config), "none")
        remotes = _env(environ, REMOTES_ENV)
        auth = _env(environ, AUTH_ENV)
        return cls(base_url=base_url, disabled_source=source, api_key=_env(environ, API_KEY_ENV),
                   key_path=key_path(home),
                   remotes=tuple(host.strip() for host in remotes.split(",")) if remotes else DEFAULT_REMOTES,
                   sign_every_host=bool(auth) and _go_bool(auth))
