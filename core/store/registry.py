"""Pulling and pushing models over the Docker registry protocol, as Ollama's ``server/images.go`` does.

A registry is not trusted: every digest it names is validated before a path is built from it, every
body is read with a bound, compressed bodies are refused, and a blob gets its content address only
after its bytes hashed to it. A blob downloads into ``blobs/.partial-sha256-<hex>``, a name derived
from the digest alone, so an interrupted pull (client gone, connection lost, server restarted) is
resumed with an HTTP Range request by the next one. The partial is ``flock``ed while it is written:
two pulls of one blob, in one process or in two, download it once.

Tokens go only to the registry's own host: a ``WWW-Authenticate`` realm on another host is refused
(CVE-2025-51471) and a redirect to another host is followed without credentials. A redirect may not
lead further inside than the registry itself is (see ``_address_scope``): a public registry cannot
send the pull to a private, loopback or link-local address (a cloud metadata service at
169.254.169.254), while a registry on this machine, as in tests, may redirect to this machine. The
rule holds for what the redirect's host name resolves to and again for the address actually reached.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import structlog

from herd.core.store.manifest import MEDIA_TYPE_MANIFEST, CorruptManifest, Layer, Manifest
from herd.core.store.names import ModelName
from herd.core.store.store import PARTIAL_PREFIX, ModelStore, fsync_directory

log = structlog.get_logger(__name__)

Progress = Callable[[dict[str, Any]], None]

# A manifest is a few hundred bytes; anything near this bound is an attack, not a model.
_MAX_MANIFEST_BYTES = 4 << 20
_MAX_TOKEN_BYTES = 64 << 10
# Error bodies are echoed to the client, so only their start is read.
_MAX_ERROR_BYTES = 4 << 10
_MAX_ERROR_TEXT = 512
_MAX_REDIRECTS = 10
# A manifest, token or error body that trickles in slower than this is dropped: the per-read
# timeout alone lets a registry hold a pull open forever with a byte every few seconds.
_SMALL_BODY_DEADLINE_S = 60.0
_CHUNK_BYTES = 256 << 10
# At most one progress line per blob in this interval (besides the first and the last).
_PROGRESS_INTERVAL_S = 0.1
_TIMEOUT = httpx.Timeout(30.0)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class RegistryError(Exception):
    """A pull or push failed; the message is safe to show a client (no local paths, no OS errors)."""


class ManifestNotFound(RegistryError):
    """The registry has no such model; the message is Ollama's."""

    def __init__(self) -> None:
        super().__init__("pull model manifest: file does not exist")


class _NotFound(RegistryError):
    """The registry answered 404; the message is Go's for a missing file, which Ollama reports."""

    def __init__(self) -> None:
        super().__init__("file does not exist")


@dataclass(frozen=True)
class _Target:
    """Where a model lives in a registry: ``{base_url}/v2/{repository}/…``."""

    name: ModelName
    base_url: httpx.URL

    @classmethod
    def parse(cls, raw_name: str, insecure: bool) -> _Target:
        # ModelName drops the scheme, so it is read from the raw name here, as Ollama's ParseName keeps it.
        name = ModelName.parse(raw_name)
        if raw_name.startswith("http://") and not insecure:
            raise RegistryError("insecure protocol http")
        scheme = "http" if insecure else "https"
        return cls(name=name, base_url=httpx.URL(f"{scheme}://{name.host}"))

    @property
    def host(self) -> str:
        """The registry's ``host[:port]`` as URLs to it spell it (a default port is dropped)."""
        return self.base_url.netloc.decode("ascii").lower()

    def url(self, *parts: str) -> httpx.URL:
        return self.base_url.join("/".join(("/v2", self.name.namespace, self.name.model, *parts)))


def pull_model(store: ModelStore, name: str, *, insecure: bool, progress: Progress) -> None:
    """Downloads ``name`` from its registry into ``store``, reporting Ollama's progress lines.

    Raises InvalidModelName, ManifestNotFound, RegistryError; the manifest is written last, so a
    failed pull leaves no model behind, only blobs and resumable partials.
    """
    target = _Target.parse(name, insecure)
    progress({"status": "pulling manifest"})
    with _RegistrySession(target) as session:
        manifest = _fetch_manifest(session, target)
        # A model deleted meanwhile must not take the blobs this pull shares with it.
        with store.pinned(manifest.digests()):
            # Layer.from_json has validated every digest; blob_path validates again before building a path.
            for layer in (*manifest.layers, manifest.config):
                _pull_blob(session, store, target, layer, progress)
            progress({"status": "verifying sha256 digest"})
            progress({"status": "writing manifest"})
            removed = store.write_manifest(target.name, manifest)
    if removed:
        progress({"status": "removing unused layers"})
    log.info("model_pulled", model=str(target.name), layers=len(manifest.layers))
    progress({"status": "success"})


def push_model(store: ModelStore, name: str, *, insecure: bool, progress: Progress) -> None:
    """Uploads the stored model ``name`` to its registry, reporting Ollama's progress lines.

    Raises InvalidModelName, ModelNotFound, RegistryError.
    """
    target = _Target.parse(name, insecure)
    progress({"status": "retrieving manifest"})
    manifest = store.get(name).manifest
    with _RegistrySession(target) as session:
        for layer in (*manifest.layers, manifest.config):
            _push_blob(session, store, target, layer, progress)
        progress({"status": "pushing manifest"})
        # Go's json.Marshal, which Ollama pushes with, ends without the newline its files have.
        session.send(
            "PUT",
            target.url("manifests", target.name.tag),
            headers={"Content-Type": MEDIA_TYPE_MANIFEST},
            body=lambda: manifest.to_json_bytes().rstrip(b"\n"),
            follow_redirects=False,
        ).close()
    log.info("model_pushed", model=str(target.name), layers=len(manifest.layers))
    progress({"status": "success"})


def _fetch_manifest(session: _RegistrySession, target: _Target) -> Manifest:
    try:
        response = session.send(
            "GET", target.url("manifests", target.name.tag), headers={"Accept": MEDIA_TYPE_MANIFEST}
        )
        with closing(response):
            return Manifest.from_json_bytes(_read_bounded(response, _MAX_MANIFEST_BYTES, "manifest"))
    except _NotFound:
        raise ManifestNotFound() from None
    except (RegistryError, CorruptManifest) as exc:
        raise RegistryError(f"pull model manifest: {exc}") from None


def _pull_blob(session: _RegistrySession, store: ModelStore, target: _Target, layer: Layer, progress: Progress) -> None:
    final = store.blob_path(layer.digest)
    report = _ProgressReporter(progress, f"pulling {layer.digest[7:19]}", layer.digest, layer.size)
    store.blobs_dir.mkdir(parents=True, exist_ok=True)
    with _claimed_partial(final, store.blobs_dir / f"{PARTIAL_PREFIX}{final.name}") as partial:
        if partial is None:
            report.finish(final.stat().st_size)
            return
        try:
            _download_into(session, target, layer, partial.file, report)
        except OSError as exc:
            # On a full disk the partial is given up, so that the space it holds comes back.
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                partial.path.unlink(missing_ok=True)
                log.warning("blob_abandoned", digest=layer.digest, reason="disk full")
            raise
        _verify_and_commit(partial, final, layer.digest)


@dataclass
class _Partial:
    path: Path
    file: IO[bytes]


@contextmanager
def _claimed_partial(final: Path, path: Path) -> Iterator[_Partial | None]:
    """The partial download of ``final``, locked for this caller; None when the blob is already stored.

    A waiter may wake to find that the file it locked was renamed to the final name meanwhile, so
    the lock counts only while the locked file is still the one at ``path``.
    """
    while True:
        if final.is_file():
            yield None
            return
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(descriptor, "r+b") as file:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            locked = os.fstat(descriptor)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue
            if (current.st_dev, current.st_ino) != (locked.st_dev, locked.st_ino):
                continue
            if final.is_file():
                path.unlink()
                yield None
                return
            yield _Partial(path, file)
            return


def _download_into(
    session: _RegistrySession, target: _Target, layer: Layer, file: IO[bytes], report: _ProgressReporter
) -> None:
    """Fill ``file`` up to ``layer.size`` bytes, resuming after the bytes it already holds."""
    offset = file.seek(0, os.SEEK_END)
    if offset > layer.size:
        file.truncate(0)
        offset = 0
    if offset == layer.size:
        report.finish(offset)
        return
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with closing(session.send("GET", target.url("blobs", layer.digest), headers=headers)) as response:
        _require_identity_encoding(response)
        if offset and response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
            if match is None or int(match.group(1)) != offset:
                raise RegistryError(f"registry sent the wrong range of blob {layer.digest}")
            log.info("blob_resumed", digest=layer.digest, offset=offset, size=layer.size)
        elif response.status_code == 200:
            # A registry that ignores Range sends the whole blob again.
            file.truncate(0)
            offset = 0
        else:
            raise RegistryError(f"unexpected status {response.status_code} for blob {layer.digest}")
        file.seek(offset)
        report.update(offset)
        try:
            for chunk in response.iter_raw(_CHUNK_BYTES):
                offset += len(chunk)
                if offset > layer.size:
                    file.truncate(0)
                    raise RegistryError(f"blob {layer.digest} is larger than its declared size")
                file.write(chunk)
                report.update(offset)
        except httpx.TransportError:
            raise RegistryError(f"download of blob {layer.digest} was interrupted; pull again to resume") from None
    if offset < layer.size:
        raise RegistryError(f"download of blob {layer.digest} ended early; pull again to resume")
    report.finish(offset)


def _verify_and_commit(partial: _Partial, final: Path, digest: str) -> None:
    """Give the partial its content address, but only once its bytes hash to ``digest``."""
    partial.file.flush()
    partial.file.seek(0)
    hasher = hashlib.sha256()
    for chunk in iter(lambda: partial.file.read(1 << 20), b""):
        hasher.update(chunk)
    if f"sha256:{hasher.hexdigest()}" != digest:
        partial.path.unlink()
        log.warning("blob_rejected", digest=digest, reason="digest mismatch")
        raise RegistryError("digest mismatch, file must be downloaded again")
    os.fsync(partial.file.fileno())
    os.chmod(partial.path, 0o644)
    os.replace(partial.path, final)
    fsync_directory(final.parent)
    log.info("blob_downloaded", digest=digest)


def _push_blob(session: _RegistrySession, store: ModelStore, target: _Target, layer: Layer, progress: Progress) -> None:
    path = store.blob_path(layer.digest)
    report = _ProgressReporter(progress, f"pushing {layer.digest[7:19]}", layer.digest, layer.size)
    try:
        session.send("HEAD", target.url("blobs", layer.digest)).close()
    except _NotFound:
        pass
    else:
        report.finish(layer.size)
        return
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise RegistryError(f"layer {layer.digest} is missing from the model store") from None
    with closing(session.send("POST", target.url("blobs", "uploads/"), follow_redirects=False)) as started:
        location = started.headers.get("docker-upload-location") or started.headers.get("location")
        if started.status_code != 202 or not location:
            raise RegistryError(f"registry did not start an upload of blob {layer.digest}")
    # The upload location is a redirect by another name: it may name another host, held to the same rule.
    upload_url = session.follow_location(started.url, location).copy_merge_params({"digest": layer.digest})

    def chunks() -> Iterator[bytes]:
        sent = 0
        report.update(sent)
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(_CHUNK_BYTES), b""):
                yield chunk
                sent += len(chunk)
                report.update(sent)

    session.send(
        "PUT",
        upload_url,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        body=chunks,
        follow_redirects=False,
    ).close()
    report.finish(size)
    log.info("blob_pushed", digest=layer.digest, size=size)


class _ProgressReporter:
    """Ollama's per-blob progress line, sent at most once per interval except the first and last."""

    def __init__(self, progress: Progress, status: str, digest: str, total: int) -> None:
        self._progress = progress
        self._status = status
        self._digest = digest
        self._total = total
        self._last_sent: float | None = None

    def update(self, completed: int) -> None:
        now = time.monotonic()
        if self._last_sent is None or now - self._last_sent >= _PROGRESS_INTERVAL_S:
            self._send(completed)

    def finish(self, completed: int) -> None:
        self._send(completed)

    def _send(self, completed: int) -> None:
        self._last_sent = time.monotonic()
        self._progress({"status": self._status, "digest": self._digest, "total": self._total, "completed": completed})


class _RegistrySession:
    """One pull or push: an HTTP client, the registry's host and the bearer token it issued."""

    def __init__(self, target: _Target) -> None:
        self._target = target
        self._token: str | None = None
        # How far inside the registry's own address is; redirects may lead no further in.
        self._registry_scope = _Scope.PUBLIC
        # Redirects are followed by hand, so credentials never leave the registry's host; identity
        # encoding keeps the byte bounds on what arrives, not on what it inflates to.
        self._client = httpx.Client(
            timeout=_TIMEOUT, follow_redirects=False, headers={"Accept-Encoding": "identity", "User-Agent": "herd"}
        )

    def __enter__(self) -> _RegistrySession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def send(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: dict[str, str] | None = None,
        body: Callable[[], bytes | Iterator[bytes]] | None = None,
        follow_redirects: bool = True,
    ) -> httpx.Response:
        """A streamed response with a 2xx or 3xx status; raises _NotFound on 404, RegistryError otherwise.

        ``body`` makes the request body, again when a 401 asks for the request to be repeated with a token.
        """
        asked_for_token = False
        while True:
            response = self._send_following(method, url, headers or {}, body, follow_redirects)
            if response.status_code != 401:
                break
            challenge = response.headers.get("www-authenticate", "")
            from_registry = _host_of(response.url) == self._target.host
            response.close()
            if asked_for_token or not from_registry:
                raise RegistryError("unauthorized: access denied")
            self._token = self._fetch_token(challenge)
            asked_for_token = True
        if response.status_code == 404:
            response.close()
            raise _NotFound()
        if response.status_code >= 400:
            with closing(response):
                text = _read_bounded(response, _MAX_ERROR_BYTES, "error", truncate=True).decode("utf-8", "replace")
            raise RegistryError(f"{response.status_code}: {text.strip()[:_MAX_ERROR_TEXT]}")
        return response

    def _send_following(
        self,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        body: Callable[[], bytes | Iterator[bytes]] | None,
        follow_redirects: bool,
    ) -> httpx.Response:
        for _ in range(_MAX_REDIRECTS + 1):
            request_headers = dict(headers)
            if self._token is not None and _host_of(url) == self._target.host:
                request_headers["Authorization"] = f"Bearer {self._token}"
            request = self._client.build_request(
                method, url, headers=request_headers, content=body() if body is not None else None
            )
            response = self._transport(request)
            self._check_reached_address(response)
            if not (follow_redirects and response.is_redirect):
                return response
            location = response.headers["location"]
            response.close()
            url = self.follow_location(url, location)
        raise RegistryError("registry redirected too many times")

    def _transport(self, request: httpx.Request) -> httpx.Response:
        try:
            return self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise RegistryError(f"registry {self._target.host} did not answer in time") from None
        except httpx.TransportError:
            raise RegistryError(f"cannot reach registry {self._target.host}") from None

    def follow_location(self, url: httpx.URL, location: str) -> httpx.URL:
        """Where a redirect leads, refusing a scheme downgrade and internal addresses of other hosts."""
        try:
            target = url.join(location)
        except httpx.InvalidURL:
            raise RegistryError("registry sent an invalid redirect") from None
        if target.scheme not in ("http", "https") or (url.scheme == "https" and target.scheme == "http"):
            raise RegistryError("registry redirected to an insecure or unsupported location")
        if _host_of(target) != self._target.host:
            for address in _resolve(target):
                self._require_reachable(address)
        return target

    def _check_reached_address(self, response: httpx.Response) -> None:
        """Learns the registry's scope from its own answers; holds other hosts to it (DNS may have changed)."""
        address = _peer_address(response)
        if _host_of(response.url) == self._target.host:
            scope = _address_scope(address) if address is not None else None
            self._registry_scope = scope if scope is not None else _Scope.PUBLIC
            return
        try:
            self._require_reachable(address)
        except RegistryError:
            response.close()
            raise

    def _require_reachable(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> None:
        # An address that cannot be told is held to the strictest rule: only a public registry's.
        scope = _address_scope(address) if address is not None else None
        if scope is None or scope > self._registry_scope:
            log.warning("redirect_refused", registry=self._target.host, address=str(address))
            raise RegistryError("registry redirected to an internal address")

    def _fetch_token(self, challenge: str) -> str:
        """A bearer token from the challenge's realm, which must be on the registry's own host."""
        scheme, _, parameters = challenge.partition(" ")
        fields = dict(_CHALLENGE_PARAM.findall(parameters))
        if scheme.lower() != "bearer" or "realm" not in fields:
            raise RegistryError("unauthorized: access denied")
        try:
            realm = httpx.URL(fields["realm"])
        except httpx.InvalidURL:
            raise RegistryError("registry sent an invalid authentication realm") from None
        if _host_of(realm) != self._target.host:
            raise RegistryError(f'realm host "{_host_of(realm)}" does not match original host "{self._target.host}"')
        if realm.scheme != self._target.base_url.scheme:
            raise RegistryError("registry sent an authentication realm with another scheme")
        params = [("service", fields.get("service", ""))]
        params += [("scope", scope) for scope in fields.get("scope", "").split(" ") if scope]
        request = self._client.build_request("GET", realm.copy_merge_params(params))
        with closing(self._transport(request)) as response:
            data = _read_bounded(response, _MAX_TOKEN_BYTES, "token")
        if response.status_code >= 400:
            raise RegistryError(f"{response.status_code}: authentication failed")
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise RegistryError("registry sent an invalid token") from None
        token = (document.get("token") or document.get("access_token")) if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError("registry sent an invalid token")
        return token


def _read_bounded(response: httpx.Response, limit: int, what: str, truncate: bool = False) -> bytes:
    """At most ``limit`` bytes of the body; more is an error unless ``truncate``."""
    _require_identity_encoding(response)
    data = bytearray()
    deadline = time.monotonic() + _SMALL_BODY_DEADLINE_S
    try:
        # Each read as it arrives: a chunk size would have httpx wait for that many bytes first.
        for chunk in response.iter_raw():
            data += chunk
            if len(data) > limit:
                if truncate:
                    return bytes(data[:limit])
                raise RegistryError(f"registry sent a {what} that is too large")
            if time.monotonic() > deadline:
                raise RegistryError(f"registry took too long to send a {what}")
    except httpx.TransportError:
        raise RegistryError(f"registry connection broke while reading a {what}") from None
    return bytes(data)


def _require_identity_encoding(response: httpx.Response) -> None:
    # Byte bounds hold only for bytes as they arrive; a compressed body could inflate past them.
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise RegistryError("registry sent a compressed response")


def _host_of(url: httpx.URL) -> str:
    return url.netloc.decode("ascii").lower()


class _Scope(enum.IntEnum):
    """How far inside an address is, from the internet to this machine."""

    PUBLIC = 0
    PRIVATE = 1
    LOOPBACK = 2


def _address_scope(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> _Scope | None:
    """The address's scope, or None for one that no redirect may reach, from any registry.

    Link-local addresses are where cloud metadata services answer (169.254.169.254); unspecified,
    multicast and reserved addresses are never a download server.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # Before the reserved ranges: IPv6's ::/8 holds ::1.
    if address.is_loopback:
        return _Scope.LOOPBACK
    if address.is_link_local or address.is_unspecified or address.is_multicast or address.is_reserved:
        return None
    if not address.is_global:
        return _Scope.PRIVATE
    return _Scope.PUBLIC


def _resolve(url: httpx.URL) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``url``'s host stands for; none when it does not resolve here (then no connection is
    made, or a proxy resolves it, and the address reached is checked instead)."""
    try:
        infos = socket.getaddrinfo(url.host, url.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def _peer_address(response: httpx.Response) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        return None
    try:
        return ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None
