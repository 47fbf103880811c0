"""Gateway settings, read from the environment with Ollama's rules for ``OLLAMA_HOST``."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Mapping

import structlog

from herd.limits import DEFAULT_MAX_MESSAGES, limit_from_env
from herd.rest.cloud.settings import CloudSettings

log = structlog.get_logger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11434
DEFAULT_CORE_ADDRESS = "127.0.0.1:50051"
# Request limits: generous enough for long prompts, big embedding batches and base64 images.
DEFAULT_MAX_BODY_BYTES = 100 << 20
DEFAULT_MAX_HEADER_BYTES = 16 << 10  # Sanic's ceiling; Go allows 1 MiB, browsers send a few KiB
DEFAULT_MAX_HEADERS = 100

_GO_INT = re.compile(r"[+-]?[0-9]+")


def env_value(environ: Mapping[str, str], key: str) -> str:
    """The variable with surrounding spaces and quotes removed, as Ollama's ``envconfig.Var``."""
    return environ.get(key, "").strip().strip("\"'")


def split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``; None where Go returns an error."""
    colon = hostport.rfind(":")
    if colon < 0:
        return None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 != colon:
            return None
        host, host_start, host_end = hostport[1:end], 1, end + 1
    else:
        host, host_start, host_end = hostport[:colon], 0, 0
        if ":" in host:
            return None
    if "[" in hostport[host_start:] or "]" in hostport[host_end:]:
        return None
    return host, hostport[colon + 1 :]


def _canonical_ip(text: str) -> str | None:
    """Go's ``net.ParseIP(text).String()``; None when it is not an IP address."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def listen_address(ollama_host: str) -> tuple[str, int]:
    """Host and port to listen on for an ``OLLAMA_HOST`` value (``envconfig.Host``).

    Default ``127.0.0.1:11434``; ``http://`` defaults the port to 80 and ``https://`` to 443; a
    bare host keeps 11434; an unusable port falls back to the default.
    """
    default_port = str(DEFAULT_PORT)
    scheme, sep, hostport = ollama_host.strip().partition("://")
    if not sep:
        hostport = ollama_host.strip()
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"
    hostport = hostport.partition("/")[0]

    split = split_host_port(hostport)
    if split is None:
        host, port = DEFAULT_HOST, default_port
        ip = _canonical_ip(hostport.strip("[]"))
        if ip is not None:
            host = ip
        elif hostport:
            host = hostport
    else:
        host, port = split

    if not _GO_INT.fullmatch(port) or not 0 <= int(port) <= 65535:
        log.warning("invalid_port", port=port, default=default_port)
        port = default_port
    # Go listens on every interface for an empty host (":11434").
    return host or "0.0.0.0", int(port)


def _installed_version() -> str:
    try:
        return version("herd")
    except PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True)
class GatewaySettings:
    """Where the gateway listens, where core is, what ``/api/version`` says, and the API key.

    With an ``api_key`` (``HERD_API_KEY``) every route but ``/`` and ``/api/version`` wants
    ``Authorization: Bearer <api_key>``; without one any bearer token (or none) is accepted. The
    gateway sends the same key to core, which wants it too. ``cloud`` says where cloud model names
    are proxied to.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    core_address: str = DEFAULT_CORE_ADDRESS
    version: str = "0.0.0"
    api_key: str = ""
    origins: str = ""  # OLLAMA_ORIGINS, added to Ollama's default origins
    grpc_tls_ca: str = ""  # HERD_GRPC_TLS_CA: PEM file that signs core's certificate; TLS to core when set
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    max_messages: int = DEFAULT_MAX_MESSAGES  # HERD_MAX_MESSAGES, as core reads it
    cloud: CloudSettings = field(default_factory=CloudSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GatewaySettings:
        host, port = listen_address(env_value(environ, "OLLAMA_HOST"))
        return cls(
            host=host,
            port=port,
            core_address=env_value(environ, "HERD_GRPC_HOST") or DEFAULT_CORE_ADDRESS,
            version=_installed_version(),
            api_key=env_value(environ, "HERD_API_KEY"),
            origins=env_value(environ, "OLLAMA_ORIGINS"),
            grpc_tls_ca=env_value(environ, "HERD_GRPC_TLS_CA"),
            max_body_bytes=limit_from_env(environ, "HERD_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_header_bytes=limit_from_env(environ, "HERD_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES),
            max_headers=limit_from_env(environ, "HERD_MAX_HEADERS", DEFAULT_MAX_HEADERS),
            max_messages=limit_from_env(environ, "HERD_MAX_MESSAGES", DEFAULT_MAX_MESSAGES),
            cloud=CloudSettings.from_env(environ),
        )

