"""A scripted stand-in for ollama.com, for herd's cloud passthrough.

It records every request, checks its credential as the real cloud would (an ed25519 signature by
the key in the test's ``HOME``, with ``ts`` within 300 s of now, or ``Bearer <api_key>``), answers
401 ``{"error":"unauthorized"}`` without one, and otherwise replays the script a test set with
:meth:`FakeCloud.reply`: NDJSON or SSE with delays, error statuses, gzip, a dropped connection,
a redirect.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

SIGNATURE_WINDOW_S = 300


@dataclass
class Recorded:
    method: str
    target: str  # path and query exactly as sent
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    credential: str  # "signature", "bearer" or "" (refused)

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Reply:
    """What the fake writes: a status, headers, then each part after its delay. ``drop`` closes
    the connection after the parts without ending the chunked body."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    parts: list[tuple[float, bytes]] = field(default_factory=list)
    drop: bool = False


def ndjson(*lines: dict, delay: float = 0.0, drop: bool = False) -> Reply:
    parts = [(delay if i else 0.0, (json.dumps(line) + "\n").encode()) for i, line in enumerate(lines)]
    return Reply(headers={"Content-Type": "application/x-ndjson"}, parts=parts, drop=drop)


def sse(*events: dict | str, delay: float = 0.0, drop: bool = False) -> Reply:
    texts = [event if isinstance(event, str) else json.dumps(event) for event in events]
    parts = [(delay if i else 0.0, f"data: {text}\n\n".encode()) for i, text in enumerate(texts)]
    return Reply(headers={"Content-Type": "text/event-stream"}, parts=parts, drop=drop)


def json_reply(obj: object, status: int = 200, headers: dict[str, str] | None = None, gzipped: bool = False) -> Reply:
    body = json.dumps(obj).encode()
    all_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    if gzipped:
        body = gzip.compress(body)
        all_headers["Content-Encoding"] = "gzip"
    return Reply(status=status, headers=all_headers, parts=[(0.0, body)])


class FakeCloud:
    def __init__(self, home: Path | None = None, api_key: str = "", open_access: bool = False):
        self.home = home
        self.api_key = api_key
        # A plain Ollama host (a remote model's): answers requests that carry no credential too.
        self.open_access = open_access
        self.requests: list[Recorded] = []
        self.closed_early = threading.Event()  # the proxy hung up while a reply was being written
        self._script: Callable[[Recorded], Reply] = lambda recorded: json_reply({"echo": recorded.path})
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reply(self, script: Callable[[Recorded], Reply] | Reply) -> None:
        self._script = script if callable(script) else (lambda recorded: script)
        self.closed_early.clear()

    def _credential(self, method: str, target: str, authorization: str) -> str:
        if self.api_key and authorization == f"Bearer {self.api_key}":
            return "bearer"
        if self.home is None or ":" not in authorization:
            return ""
        wire_key, _, signature = authorization.partition(":")
        public_line = (self.home / ".ollama" / "id_ed25519.pub").read_text().strip()
        if public_line.split(" ")[1] != wire_key:
            return ""
        ts = parse_qs(urlsplit(target).query).get("ts", ["0"])[-1]
        if abs(time.time() - int(ts)) > SIGNATURE_WINDOW_S:
            return ""
        public_key = serialization.load_ssh_public_key(public_line.encode())
        try:
            public_key.verify(base64.b64decode(signature), f"{method},{target}".encode())
        except (InvalidSignature, ValueError):
            return ""
        return "signature"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        split = urlsplit(handler.path)
        recorded = Recorded(
            method=handler.command,
            target=handler.path,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
            credential=self._credential(handler.command, handler.path, handler.headers.get("Authorization", "")),
        )
        self.requests.append(recorded)
        allowed = recorded.credential or self.open_access
        reply = self._script(recorded) if allowed else json_reply({"error": "unauthorized"}, 401)
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Transfer-Encoding", "chunked")
        # One request per connection: a stopped fake must not go on answering on a pooled one.
        handler.send_header("Connection", "close")
        handler.close_connection = True
        handler.end_headers()
        try:
            for delay, part in reply.parts:
                time.sleep(delay)
                handler.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                handler.wfile.flush()
            if reply.drop:
                return
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.closed_early.set()

    def start(self, port: int = 0) -> None:
        """Listens on ``port`` (a free one by default)."""
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                cloud._handle(self)

            do_POST = do_DELETE = do_GET

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @contextmanager
    def running(self) -> Iterator[FakeCloud]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    @contextmanager
    def down(self) -> Iterator[None]:
        """Not listening for the block, then back on the same port: an unreachable upstream."""
        port = self._server.server_address[1]
        self.stop()
        try:
            yield
        finally:
            self.start(port)
