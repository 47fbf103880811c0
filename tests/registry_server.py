"""A real Docker registry (Debian's ``docker-registry``, i.e. distribution 2.x) for tests, and HTTP
servers to put in front of it.

``running_registry`` starts one on a free loopback port with its storage in a temporary directory and
stops it afterwards; the ``registry`` fixture yields its ``"127.0.0.1:<port>"`` and skips the test
when the binary is not installed (``apt-get install docker-registry``). ``serve`` runs a scripted
HTTP server; ``proxy_to`` a pass-through proxy that records what it forwards and can be slowed down.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

REGISTRY_BINARY = "docker-registry"
_START_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_registry(root: Path) -> Iterator[str]:
    """A registry storing under ``root``, answering plain HTTP on 127.0.0.1; yields ``host:port``."""
    binary = shutil.which(REGISTRY_BINARY) or shutil.which(REGISTRY_BINARY, path="/usr/bin")
    if binary is None:
        pytest.skip(f"{REGISTRY_BINARY} is not installed (apt-get install docker-registry)")
    root.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{_free_port()}"
    config = root / "config.yml"
    # No auth section: the registry accepts anonymous pushes. Deleting is enabled so a test can
    # remove a blob to make a registry-side fault.
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n"
    )
    log_path = root / "registry.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_until_ready(address, process, log_path)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(address: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"http://{address}/v2/", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not answer on {address}:\n{log_path.read_text()}")


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty registry for one test: ``"127.0.0.1:<port>"``."""
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


def statuses(lines: list[dict[str, Any]]) -> list[str]:
    """The distinct progress statuses in order (per-blob lines repeat while bytes arrive)."""
    result: list[str] = []
    for line in lines:
        if not result or result[-1] != line["status"]:
            result.append(line["status"])
    return result


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body_bytes: int = 0


@dataclass
class Recorder:
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Seconds to wait before each 64 KiB of a forwarded body: lets a test catch a pull half-way.
    delay_per_chunk_s: float = 0.0

    def blob_gets(self, digest: str) -> list[Seen]:
        return [seen for seen in self.requests if seen.method == "GET" and seen.path.endswith(f"/blobs/{digest}")]


@contextmanager
def serve(handle: Callable[[BaseHTTPRequestHandler, Recorder], None]) -> Iterator[tuple[str, Recorder]]:
    """A threaded HTTP server on loopback whose requests ``handle`` answers; yields its address."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            handle(self, recorder)

        do_GET = do_HEAD = do_POST = do_PUT = _any

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that hangs up early (an interrupted pull) is part of these tests

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", recorder
    finally:
        server.shutdown()
        server.server_close()


def reply(
    handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


@contextmanager
def proxy_to(upstream_address: str) -> Iterator[tuple[str, Recorder]]:
    """A pass-through proxy in front of ``upstream_address`` that records each request and the body bytes
    it sent; yields ``(address, recorder)``."""

    def forward(handler: BaseHTTPRequestHandler, recorder: Recorder) -> None:
        seen = Seen(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()})
        with recorder.lock:
            recorder.requests.append(seen)
        upstream = http.client.HTTPConnection(upstream_address, timeout=30)
        forwarded = {k: v for k, v in handler.headers.items() if k.lower() in ("accept", "range", "authorization")}
        upstream.request(handler.command, handler.path, headers=forwarded)
        response = upstream.getresponse()
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "date", "server"):
                handler.send_header(key, value)
        handler.end_headers()
        try:
            while handler.command != "HEAD" and (chunk := response.read(64 << 10)):
                time.sleep(recorder.delay_per_chunk_s)
                handler.wfile.write(chunk)
                seen.body_bytes += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: an interrupted pull
        upstream.close()

    with serve(forward) as served:
        yield served
