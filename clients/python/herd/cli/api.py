"""A small client of herd's REST API for the CLI, as ``ollama``'s commands talk to its server.

Standard library only: the CLI must start fast and install nothing beyond herd itself.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORT = 11434


class ApiError(Exception):
    """What the server refused, with its message; ``status`` 0 when it could not be reached."""

    def __init__(self, message: str, status: int = 0, body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.body = body or {}


def base_url(environ=os.environ) -> str:
    """The server's URL from ``OLLAMA_HOST``, read as Ollama reads it.

    No scheme means http and port 11434; an explicit ``http://`` or ``https://`` without a port
    means 80 or 443.
    """
    raw = environ.get("OLLAMA_HOST", "").strip().strip("\"'") or f"127.0.0.1:{DEFAULT_PORT}"
    if "://" in raw:
        scheme = raw.split("://", 1)[0].lower()
        default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT)
    else:
        raw, default_port = "http://" + raw, DEFAULT_PORT
    parts = urlsplit(raw)
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"  # a server listening everywhere is reached on loopback
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{parts.port or default_port}{parts.path.rstrip('/')}"


class Client:
    def __init__(self, url: str | None = None, api_key: str | None = None):
        self.url = url or base_url()
        if api_key is None:
            # The key `herd serve` was started with, when the shell has it too.
            api_key = os.environ.get("OLLAMA_API_KEY") or os.environ.get("HERD_API_KEY", "")
        self.api_key = api_key

    def _request(self, method: str, path: str, body: Any = None, data: bytes | None = None):
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request)
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            try:
                body = json.loads(text)
                message = body["error"]
            except (ValueError, KeyError, TypeError):
                body, message = None, text.strip() or error.reason
            raise ApiError(message, error.code, body if isinstance(body, dict) else None) from None
        except urllib.error.URLError:
            raise ApiError("could not connect to herd: is `herd serve` running?") from None

    def get(self, path: str) -> Any:
        with self._request("GET", path) as response:
            return json.loads(response.read() or b"null")

    def post(self, path: str, body: Any, method: str = "POST") -> Any:
        with self._request(method, path, body) as response:
            text = response.read()
            return json.loads(text) if text else None

    def stream(self, path: str, body: Any) -> Iterator[dict]:
        """NDJSON lines of a streaming endpoint; an ``{"error"}`` line raises ApiError."""
        with self._request("POST", path, body) as response:
            for line in response:
                if not line.strip():
                    continue
                chunk = json.loads(line)
                if "error" in chunk:
                    raise ApiError(chunk["error"], 500)
                yield chunk

    def upload_blob(self, digest: str, path) -> None:
        exists = urllib.request.Request(self.url + f"/api/blobs/{digest}", method="HEAD")
        try:
            urllib.request.urlopen(exists).close()
            return
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise ApiError(f"blob check failed ({error.code})", error.code) from None
        except urllib.error.URLError:
            raise ApiError("could not connect to herd: is `herd serve` running?") from None
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            request = urllib.request.Request(
                self.url + f"/api/blobs/{digest}", data=file, method="POST",
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )
            try:
                urllib.request.urlopen(request).close()
            except urllib.error.HTTPError as error:
                raise ApiError(json.loads(error.read() or b'{"error":"upload failed"}').get("error", "upload failed"), error.code) from None
