"""The cloud passthrough (Ollama's ``server/cloud_proxy.go``): a request goes to the configured
upstream with the same method, path and query, its headers less the hop-by-hop ones, and the
daemon's credential; the upstream's status, headers and bytes come back as they arrive.

Nothing here touches core: cloud traffic never waits behind local inference. Better than Ollama,
a stream the upstream drops mid-way ends with one in-band error (an NDJSON line or an SSE event),
so a client learns that the answer is cut short.
"""

from __future__ import annotations

import socket
import ssl
import time
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import structlog
from sanic import Request
from sanic.compat import Header
from sanic.response import HTTPResponse

from herd.cloud_key import KeyUnavailable, load_key, sign, signin_url
from herd.rest.cloud.settings import CloudSettings
from herd.rest.errors import dumps, json_response
from herd.rest.openai.translate import error_body, sse
from herd.rest.streaming import NDJSON_CONTENT_TYPE, SSE_CONTENT_TYPE

log = structlog.get_logger(__name__)

CLIENT_VERSION_HEADER = "X-Ollama-Client-Version"
DISABLED = "ollama cloud is disabled"
UNAUTHORIZED = "unauthorized"
UPSTREAM_DROPPED = "the cloud upstream ended the response early"

HOP_BY_HOP = frozenset({
    "connection", "content-length", "proxy-connection", "keep-alive", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
})
# Set by the proxy itself: the upstream's host, and the one credential the upstream may see.
_NOT_FORWARDED = frozenset({"host", "authorization"})
# Characters Go's url.EscapedPath leaves as they are in a path.
_PATH_SAFE = "/$&+,:;=@"
_CONNECT_TIMEOUT_S = 30.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Where Ollama's api.Client signs a remote model's requests even without OLLAMA_AUTH.
SIGNING_HOST = "ollama.com"


def disabled_message(operation: str) -> str:
    """Ollama's 403 text for ``operation`` while the cloud is disabled."""
    return f"{DISABLED}: {operation}"


class Unauthorized(Exception):
    """No credential for the upstream: nothing is sent."""


def _forwardable(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every header but the hop-by-hop ones and those the ``Connection`` header names."""
    named = {token.strip().lower() for name, value in pairs if name.lower() == "connection" for token in value.split(",")}
    return [(name, value) for name, value in pairs if name.lower() not in HOP_BY_HOP and name.lower() not in named]


def signed_query(raw_query: str, ts: int) -> str:
    """The query with ``ts`` set, re-encoded with keys sorted as Go's ``url.Values.Encode``."""
    pairs = [(key, value) for key, value in parse_qsl(raw_query, keep_blank_values=True) if key != "ts"]
    pairs.append(("ts", str(ts)))
    return urlencode(sorted(pairs, key=lambda pair: pair[0]))


class CloudProxy:
    """One pooled HTTP client to the upstream, for the life of the gateway."""

    def __init__(self, settings: CloudSettings, client_version: str):
        self.settings = settings
        self._client_version = client_version
        # No redirects: a Location elsewhere must not receive the credential. No environment
        # proxies: the credential goes to the configured origin and nowhere else.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=_CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            follow_redirects=False,
            trust_env=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    def _credential(self, method: str, path: str, raw_query: str) -> tuple[str, str]:
        """The query to send and the Authorization header: the server's API key, else a signature."""
        if self.settings.api_key:
            return raw_query, f"Bearer {self.settings.api_key}"
        return self._signature(method, path, raw_query)

    def _signature(self, method: str, path: str, raw_query: str) -> tuple[str, str]:
        """The query with ``ts`` and the ed25519 signature of the call; :class:`Unauthorized` without a key."""
        try:
            key = load_key(self.settings.key_path)
        except KeyUnavailable as error:
            log.warning("cloud proxy signing failed", error=str(error))
            raise Unauthorized from None
        query = signed_query(raw_query, int(time.time()))
        return query, sign(key, f"{method},{path}?{query}".encode())

    def remote_model_request(self, remote_host: str, path: str, body: bytes) -> httpx.Request:
        """A POST of ``body`` to ``path`` on a remote model's host, as Ollama's ``api.Client`` sends it.

        The credential: to the configured upstream's origin, the one it always gets (API key or
        signature); to another host, a signature only where Ollama signs (``ollama.com``, or every
        host with ``OLLAMA_AUTH``) and nothing otherwise, so the API key never leaves for another
        origin. :class:`Unauthorized` when a signature is due and there is no key.
        """
        url = urlsplit(remote_host)
        request_path = url.path.rstrip("/") + path
        if _origin(remote_host) == _origin(self.settings.base_url):
            query, authorization = self._credential("POST", request_path, "")
        elif url.hostname == SIGNING_HOST or self.settings.sign_every_host:
            query, authorization = self._signature("POST", request_path, "")
        else:
            query, authorization = "", ""
        headers = {"Content-Type": "application/json", "Accept": NDJSON_CONTENT_TYPE}
        if authorization:
            headers["Authorization"] = authorization
        target = f"{url.scheme}://{url.netloc}{quote(request_path, safe=_PATH_SAFE)}" + (f"?{query}" if query else "")
        return self._client.build_request("POST", target, headers=headers, content=body)

    async def open(self, upstream_request: httpx.Request) -> httpx.Response:
        """Sends a request built here; the caller reads the streamed answer and closes it.
        Raises ``httpx.TransportError`` when the host cannot be reached."""
        return await self._client.send(upstream_request, stream=True)

    def unauthorized(self) -> HTTPResponse:
        """Ollama's 401, with the URL that links this server's key to an account when it has one."""
        try:
            url = signin_url(load_key(self.settings.key_path), socket.gethostname())
        except KeyUnavailable:
            return json_response({"error": UNAUTHORIZED}, status=401)
        return json_response({"error": UNAUTHORIZED, "signin_url": url}, status=401)

    def _upstream_request(self, method: str, path: str, raw_query: str, client_headers: list[tuple[str, str]],
                          body: bytes | None) -> tuple[httpx.Request, bool]:
        """The upstream call and whether its body must be decoded; :class:`Unauthorized` when there
        is no credential to send."""
        escaped_path = quote(path, safe=_PATH_SAFE)
        query, authorization = self._credential(method, escaped_path, raw_query)
        headers = [(name, value) for name, value in _forwardable(client_headers) if name.lower() not in _NOT_FORWARDED]
        names = {name.lower() for name, _ in headers}
        # A client that names its encodings reads the upstream's bytes as they are; for any other,
        # the proxy asks for gzip and decodes, as Go's transport does.
        decode = "accept-encoding" not in names
        if decode:
            headers.append(("Accept-Encoding", "gzip"))
        headers.append((CLIENT_VERSION_HEADER, self._client_version))
        if body and "content-type" not in names:
            headers.append(("Content-Type", "application/json"))
        headers.append(("Authorization", authorization))
        url = self.settings.base_url + escaped_path + (f"?{query}" if query else "")
        return self._client.build_request(method, url, headers=headers, content=body or None), decode

    async def call(self, method: str, path: str, body: bytes | None = None) -> httpx.Response:
        """A whole upstream answer for the gateway's own use (the account routes).

        Raises :class:`Unauthorized` without a credential and ``httpx.TransportError`` when the
        upstream cannot be reached.
        """
        upstream_request, _ = self._upstream_request(method, path, "", [], body)
        return await self._client.send(upstream_request)

    async def forward(self, request: Request, path: str, body: bytes | None, disabled_operation: str) -> HTTPResponse | None:
        """Answers ``request`` with the upstream's answer to the same call on ``path``.

        Errors of the proxy itself are Ollama's native ``{"error": ...}`` on every route, as Ollama's
        middleware writes them before any dialect is involved.
        """
        if self.settings.disabled:
            return json_response({"error": disabled_message(disabled_operation)}, status=403)
        try:
            upstream_request, decode = self._upstream_request(
                request.method, path, request.query_string, list(request.headers.items()), body)
        except Unauthorized:
            return self.unauthorized()
        try:
            upstream = await self._client.send(upstream_request, stream=True)
        except httpx.TransportError as error:
            log.warning("cloud_upstream_unreachable", url=self.settings.base_url, error=repr(error))
            return json_response({"error": unreachable_message(error)}, status=502)
        try:
            await self._relay(request, upstream, decode)
        finally:
            await upstream.aclose()
        return None

    async def _relay(self, request: Request, upstream: httpx.Response, decode: bool) -> None:
        dropped = {"content-encoding"} if decode else set()
        headers = Header()
        for name, value in _forwardable(upstream.headers.multi_items()):
            if name.lower() not in dropped and name.lower() != "content-type":
                headers.add(name, value)
        content_type = upstream.headers.get("content-type")
        response = await request.respond(status=upstream.status_code, headers=headers, content_type=content_type)
        chunks = upstream.aiter_bytes() if decode else upstream.aiter_raw()
        last = b""
        try:
            async for chunk in chunks:
                if chunk:
                    await response.send(chunk)
                    last = chunk
        except (httpx.TransportError, httpx.DecodingError) as error:
            log.warning("cloud_relay_failed", path=request.path, status=upstream.status_code,
                        error=repr(error))
            if in_band := _in_band_error(content_type or "", last):
                await response.send(in_band)
        await response.eof()


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port (the scheme's default when none is given) of a URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or ""), port or _DEFAULT_PORTS.get(scheme)


def _in_band_error(content_type: str, last: bytes) -> str:
    """What ends a stream cut short: an NDJSON error line or an SSE error event, after whatever
    partial line the upstream left; nothing for other bodies, which no client could parse anyway."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == NDJSON_CONTENT_TYPE:
        return ("" if last.endswith(b"\n") else "\n") + dumps({"error": UPSTREAM_DROPPED}) + "\n"
    if media_type == SSE_CONTENT_TYPE:
        separator = "" if last.endswith(b"\n\n") else "\n" if last.endswith(b"\n") else "\n\n"
        return separator + sse(error_body(502, UPSTREAM_DROPPED))
    return ""


def unreachable_message(error: httpx.TransportError) -> str:
    cause = error.__cause__ or error.__context__
    if isinstance(cause, ssl.SSLError) or "SSL" in type(cause).__name__:
        reason = "TLS handshake failed"
    elif isinstance(error, httpx.TimeoutException):
        reason = "timed out"
    elif isinstance(error, httpx.ConnectError):
        reason = "connection failed"
    else:
        reason = "connection lost before a response"
    return f"cloud upstream unreachable: {reason}"
