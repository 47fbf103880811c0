"""Ollama's two network defences: CORS and, on a loopback bind, the Host-header allowlist.

Both follow Ollama's ``server/routes.go`` and the gin-contrib/cors version it uses (v1.7.2):
CORS runs first, then the Host check (``allowedHostsMiddleware``). A DNS-rebinding page reaches a
loopback server under its own host name, so on loopback a Host that is not local is refused with a
bare 403; bound to another address the Host is not checked (the operator chose to be reachable).
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Callable, Sequence

import structlog
from sanic import Request, Sanic
from sanic.response import HTTPResponse

from herd.rest.settings import split_host_port

log = structlog.get_logger(__name__)

# gin-contrib/cors' DefaultConfig methods and Ollama's AllowHeaders, as the preflight writes them.
ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
ALLOW_HEADERS = ",".join(
    (
        "Authorization",
        "Content-Type",
        "User-Agent",
        "Accept",
        "X-Requested-With",
        # OpenAI's SDKs send these.
        "Openai-Beta",
        "X-Stainless-Arch",
        "X-Stainless-Async",
        "X-Stainless-Custom-Poll-Interval",
        "X-Stainless-Helper-Method",
        "X-Stainless-Lang",
        "X-Stainless-Os",
        "X-Stainless-Package-Version",
        "X-Stainless-Poll-Helper",
        "X-Stainless-Retry-Count",
        "X-Stainless-Runtime",
        "X-Stainless-Runtime-Version",
        "X-Stainless-Timeout",
    )
)
MAX_AGE_S = "43200"  # 12 hours

# Schemes an origin without a wildcard must start with (DefaultSchemas + ExtensionSchemas).
_ORIGIN_SCHEMES = (
    "http://",
    "https://",
    "chrome-extension://",
    "safari-extension://",
    "moz-extension://",
    "ms-browser-extension://",
)
_LOCAL_TLDS = ("localhost", "local", "internal")
# Go's netip.Addr.IsPrivate: RFC 1918 and RFC 4193 only (Python's is_private holds far more).
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


class BadOrigin(ValueError):
    """An ``OLLAMA_ORIGINS`` entry Ollama refuses to start with."""


def default_origins(extra: str = "") -> list[str]:
    """``envconfig.AllowedOrigins``: ``OLLAMA_ORIGINS`` entries, then the local origins and app schemes."""
    origins = extra.split(",") if extra else []
    for host in ("localhost", "127.0.0.1", "0.0.0.0"):
        origins += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
    return origins + ["app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"]


@dataclass(frozen=True)
class OriginPolicy:
    """Which ``Origin`` values get CORS headers: exact entries, one-``*`` patterns, or ``*`` for all."""

    allow_all: bool
    exact: frozenset[str]
    patterns: tuple[tuple[str, str], ...]

    @classmethod
    def from_origins(cls, origins: Sequence[str]) -> OriginPolicy:
        """Checks entries as ``cors.Config.Validate`` does; :class:`BadOrigin` for one it rejects."""
        patterns = []
        for origin in origins:
            if "*" not in origin and not origin.startswith(_ORIGIN_SCHEMES):
                raise BadOrigin(f"bad origin: origins must contain '*' or include {','.join(_ORIGIN_SCHEMES)}")
            if origin.count("*") > 1:
                raise BadOrigin("only one * is allowed")
            if "*" in origin:
                prefix, _, suffix = origin.partition("*")
                patterns.append((prefix, suffix))
        # Exact entries are compared trimmed and lower-cased, patterns as written (as gin-contrib/cors does).
        exact = frozenset(origin.strip().lower() for origin in origins)
        return cls(allow_all="*" in exact, exact=exact, patterns=tuple(patterns))

    def allows(self, origin: str) -> bool:
        if self.allow_all or origin in self.exact:
            return True
        return any(origin.startswith(prefix) and origin.endswith(suffix) for prefix, suffix in self.patterns)


def _is_go_private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip in network for network in _PRIVATE_NETWORKS if network.version == ip.version)


def _interface_addresses() -> set[str]:
    """The addresses of this machine's interfaces (Linux), for Ollama's ``isLocalIP``."""
    found: set[str] = set()
    try:
        with open("/proc/net/if_inet6") as table:
            for line in table:
                hex_address = line.split()[0]
                found.add(str(ipaddress.IPv6Address(bytes.fromhex(hex_address))))
    except OSError:
        pass
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            try:
                answer = fcntl.ioctl(probe.fileno(), siocgifaddr, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            found.add(socket.inet_ntoa(answer[20:24]))
    return found


def request_host(host_header: str) -> str:
    """The host of a ``Host`` header: Go's ``net.SplitHostPort``, or the header as it is when that fails.

    Unlike Ollama, ``[::1]`` without a port (a browser on port 80) is read as ``::1``, not refused.
    """
    split = split_host_port(host_header)
    if split is not None:
        return split[0]
    if host_header.startswith("[") and host_header.endswith("]"):
        return host_header[1:-1]
    return host_header


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def ip_is_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, local_addresses: Callable[[], set[str]]) -> bool:
    """Ollama's IP rule on a loopback bind: loopback, private, unspecified or one of this machine's."""
    # netip unmaps ::ffff:a.b.c.d for IsLoopback and IsPrivate, not for IsUnspecified.
    plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
    return plain.is_loopback or _is_go_private(plain) or ip.is_unspecified or str(ip) in local_addresses()


def is_local_name(host: str, machine_hostname: str) -> bool:
    """Ollama's ``allowedHost``: the names a browser page on this machine is served under."""
    host = host.lower()
    if host in ("", "localhost") or host == machine_hostname.lower():
        return True
    return host.endswith(tuple("." + tld for tld in _LOCAL_TLDS))


def _bare(status: int) -> HTTPResponse:
    # gin's AbortWithStatus: a status and no body (Sanic names a content type even so).
    return HTTPResponse(status=status, content_type="text/plain; charset=utf-8")


def register_network_guards(app: Sanic, *, origins: OriginPolicy, check_host: bool) -> None:
    """CORS on every response, and the Host allowlist when ``check_host`` (a loopback bind).

    Register it before the API key check: a preflight carries no key. Sanic runs request
    middleware for unrouted requests too, so a preflight ``OPTIONS`` to any path is answered here.
    """
    machine_hostname = socket.gethostname()

    async def guard(request: Request) -> HTTPResponse | None:
        origin = request.headers.get("origin", "")
        host = request.headers.get("host", "")
        # Same-origin fetches carry an Origin too; gin-contrib/cors lets them through untouched.
        if origin and origin not in (f"http://{host}", f"https://{host}"):
            if not origins.allows(origin):
                log.info("cors_refused", origin=origin)
                return _bare(403)
            request.ctx.cors_origin = origin
            if request.method == "OPTIONS":
                return _preflight(origin, origins.allow_all)
        if not check_host:
            return None
        name = request_host(host)
        ip = parse_ip(name)
        if ip is not None and ip_is_allowed(ip, _interface_addresses):
            return None
        if ip is None and is_local_name(name, machine_hostname):
            # Ollama answers OPTIONS itself for a local name (not for an IP address).
            return _bare(204) if request.method == "OPTIONS" else None
        log.info("host_refused", host=host)
        return _bare(403)

    async def cors_headers(request: Request, response: HTTPResponse) -> None:
        origin = getattr(request.ctx, "cors_origin", None)
        if origin is None or request.method == "OPTIONS":
            return
        response.headers["Access-Control-Allow-Origin"] = "*" if origins.allow_all else origin
        if not origins.allow_all:
            response.headers["Vary"] = "Origin"

    app.register_middleware(guard, "request")
    app.register_middleware(cors_headers, "response")


def _preflight(origin: str, allow_all: bool) -> HTTPResponse:
    response = _bare(204)
    response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
    response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response.headers["Access-Control-Max-Age"] = MAX_AGE_S
    if allow_all:
        response.headers["Access-Control-Allow-Origin"] = "*"
    else:
        response.headers["Access-Control-Allow-Origin"] = origin
        for value in ("Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"):
            response.headers.add("Vary", value)
    return response
