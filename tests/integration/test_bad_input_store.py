"""Hostile input to the model store and registry pulls, through the real server (security.md §6).

After every case the server still answers ``/api/version``, the store is consistent (every blob's
bytes match its name, every manifest's layers exist) and nothing appeared outside the store.

Cases and where they are tested (``unit:`` names a test in tests/unit):

- 1: test_a_blob_digest_that_is_not_a_sha256_writes_nothing
- 2: test_a_registry_digest_that_is_not_a_sha256_creates_nothing;
  unit: test_registry.py::test_a_manifest_with_a_bad_digest_fails_before_any_file_is_touched
- 3: test_model_management.py::test_blob_endpoints_follow_ollama
- 4: test_a_tampered_blob_is_not_stored_and_a_retry_downloads_it_again;
  unit: test_registry.py::test_a_blob_whose_bytes_do_not_match_its_digest_is_rejected
- 5: test_oversized_endless_and_compressed_registry_bodies_are_refused;
  unit: test_registry.py::test_an_endless_chunked_manifest_is_cut_off_with_little_memory,
  test_a_gzip_bomb_is_never_inflated, test_a_manifest_that_trickles_in_is_dropped,
  test_an_oversized_manifest_is_refused, test_a_huge_error_body_is_cut_to_a_line
- 6: test_a_token_realm_on_another_host_is_never_contacted;
  unit: test_registry.py::test_a_token_realm_on_another_host_is_refused
- 7: test_a_redirect_to_a_metadata_address_is_refused;
  unit: test_registry.py::test_a_blob_redirect_to_another_host_carries_no_credentials,
  test_a_redirect_to_a_metadata_or_unroutable_address_is_refused_from_any_registry,
  test_a_public_registry_cannot_redirect_inside,
  test_a_redirect_host_that_resolves_outside_but_connects_inside_is_refused
- 8: test_hostile_model_names_are_refused_by_every_endpoint
- 9: test_create_reads_no_server_path_device_fifo_or_symlink
- 10: test_create_file_names_cannot_leave_the_model_directory
- 31: test_store_faults.py::test_a_pull_killed_with_the_server_resumes_after_a_restart;
  unit: test_registry.py::test_a_pull_killed_at_a_commit_point_leaves_a_consistent_store_and_resumes,
  test_store.py::test_a_manifest_write_killed_before_its_rename_stops_neither_listing_nor_pruning,
  test_store.py::test_prune_keeps_partial_downloads_for_a_week
- 32: unit: test_registry.py::test_two_concurrent_pulls_fetch_each_blob_once,
  test_registry.py::test_two_processes_pulling_into_one_store_fetch_each_blob_once
- 33: test_a_full_disk_mid_upload_and_mid_pull_is_a_clean_error (mounts a 4 MiB tmpfs: needs root)
- 34: test_a_model_deleted_while_it_streams_finishes_its_answer;
  unit: test_registry.py::test_deleting_a_model_mid_pull_keeps_the_blobs_the_pull_shares_with_it
- 35: test_a_corrupt_manifest_at_startup_hides_one_model_and_stops_gc
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from tests.conftest import CHAT_MODEL, Server, start_server, stop_server
from tests.integration.test_store_faults import assert_store_is_consistent
from tests.registry_server import Recorder, reply, serve
from tests.unit.test_registry import (
    WEIGHTS,
    WEIGHTS_DIGEST,
    chunked,
    endless,
    gzip_bomb,
    manifest_bytes,
    scripted,
)

pytestmark = pytest.mark.integration

MiB = 1 << 20
Routes = dict[str, Callable[[BaseHTTPRequestHandler], None]]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def store_server(root: Path) -> Iterator[Server]:
    """A server of its own on an empty store in ``root``: whatever escapes the store shows up beside it."""
    server = start_server(root, HERD_NO_BUNDLED="1")
    yield server
    stop_server(server)


@pytest.fixture(autouse=True)
def still_safe_afterwards(request: pytest.FixtureRequest, root: Path) -> Iterator[None]:
    yield
    if "store_server" not in request.fixturenames:
        return
    server: Server = request.getfixturevalue("store_server")
    assert httpx.get(server.base_url + "/api/version", timeout=10).status_code == 200
    assert_store_is_consistent(server.models_dir)
    assert {path.name for path in root.iterdir()} <= {"models", "server.log", "home"}
    # The server's temporary HOME holds only the cloud key herd serve makes at start.
    home = root / "home"
    if home.exists():
        assert {str(path.relative_to(home)) for path in home.rglob("*")} <= {
            ".ollama", ".ollama/id_ed25519", ".ollama/id_ed25519.pub"}
    if server.models_dir.exists():
        assert {path.name for path in server.models_dir.iterdir()} <= {"blobs", "manifests"}


@pytest.fixture
def hostile() -> Iterator[Callable[[Routes], tuple[str, Recorder]]]:
    with ExitStack() as stack:
        yield lambda routes: stack.enter_context(serve(scripted(routes)))


def pull(server: Server, name: str) -> httpx.Response:
    return httpx.post(
        server.base_url + "/api/pull", json={"model": name, "insecure": True, "stream": False}, timeout=120
    )


def no_model_stored(server: Server) -> bool:
    return httpx.get(server.base_url + "/api/tags").json()["models"] == []


def blob_names(server: Server) -> set[str]:
    blobs = server.models_dir / "blobs"
    return {path.name for path in blobs.iterdir()} if blobs.is_dir() else set()


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:../../etc/passwd",
        "sha256:..%2f..%2fetc%2fpasswd",
        "sha256:%2e%2e%2f%2e%2e%2fescaped",
        "..%2F..%2Fescaped",
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "SHA256:" + "a" * 64,
        "sha256:" + "g" * 64,
        "sha256:" + "a" * 63 + "%00",
    ],
)
def test_a_blob_digest_that_is_not_a_sha256_writes_nothing(store_server: Server, root: Path, digest: str) -> None:
    before = blob_names(store_server)
    # http.client sends the path as written: httpx would resolve the dot segments before sending.
    connection = http.client.HTTPConnection(store_server.base_url.removeprefix("http://"), timeout=30)
    connection.request("POST", f"/api/blobs/{digest}", body=b"GGUF not really")
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status in (400, 404)
    if response.status == 400:
        assert json.loads(body) == {"error": "invalid digest format"}
    assert blob_names(store_server) == before
    assert not list(root.rglob("passwd")) and not list(root.rglob("escaped"))


def test_a_registry_digest_that_is_not_a_sha256_creates_nothing(store_server: Server, root: Path, hostile) -> None:
    traversing = manifest_bytes("sha256:../../x", 4)
    address, recorder = hostile({"/v2/evil/m/manifests/latest": lambda h: reply(h, 200, traversing)})
    reply_ = pull(store_server, f"{address}/evil/m")
    assert (reply_.status_code, reply_.json()) == (500, {"error": "pull model manifest: layer has an invalid digest"})
    assert [seen.path for seen in recorder.requests] == ["/v2/evil/m/manifests/latest"]
    assert not (root / "x").exists() and not (store_server.models_dir / "x").exists()
    assert no_model_stored(store_server)


def test_a_tampered_blob_is_not_stored_and_a_retry_downloads_it_again(store_server: Server, hostile) -> None:
    served = {"bytes": b"the fake weights"}
    address, recorder = hostile(
        {
            "/v2/evil/tampered/manifests/latest": lambda h: reply(h, 200, manifest_bytes(WEIGHTS_DIGEST, len(WEIGHTS))),
            f"/v2/evil/tampered/blobs/{WEIGHTS_DIGEST}": lambda h: reply(h, 200, served["bytes"]),
        }
    )
    name = f"{address}/evil/tampered"
    failed = pull(store_server, name)
    assert (failed.status_code, failed.json()) == (500, {"error": "digest mismatch, file must be downloaded again"})
    assert "sha256-" + WEIGHTS_DIGEST[7:] not in blob_names(store_server)
    assert not [name for name in blob_names(store_server) if name.startswith(".")]  # no partial to resume from

    served["bytes"] = WEIGHTS
    assert pull(store_server, name).json() == {"status": "success"}
    assert len(recorder.blob_gets(WEIGHTS_DIGEST)) == 2
    assert (store_server.models_dir / "blobs" / ("sha256-" + WEIGHTS_DIGEST[7:])).read_bytes() == WEIGHTS
    httpx.request("DELETE", store_server.base_url + "/api/delete", json={"model": name}).raise_for_status()


TOO_LARGE = "pull model manifest: registry sent a manifest that is too large"


@pytest.mark.parametrize(
    "body, error",
    [
        (lambda h: reply(h, 200, b" " * (5 * MiB)), TOO_LARGE),
        (lambda h: chunked(h, endless(b"[" * (64 << 10))), TOO_LARGE),
        (lambda h: reply(h, 200, gzip_bomb(64 * MiB), {"Content-Encoding": "gzip"}),
         "pull model manifest: registry sent a compressed response"),
        (lambda h: reply(h, 500, gzip_bomb(64 * MiB), {"Content-Encoding": "gzip"}),
         "pull model manifest: registry sent a compressed response"),
    ],
    ids=["5MiB", "endless-chunked", "gzip-bomb", "gzip-bomb-error"],
)
def test_oversized_endless_and_compressed_registry_bodies_are_refused(
    store_server: Server, hostile, body, error: str
) -> None:
    address, _ = hostile({"/v2/evil/m/manifests/latest": body})
    started = time.monotonic()
    failed = pull(store_server, f"{address}/evil/m")
    assert (failed.status_code, failed.json()) == (500, {"error": error})
    assert time.monotonic() - started < 30
    assert no_model_stored(store_server)


def test_a_token_realm_on_another_host_is_never_contacted(store_server: Server, hostile) -> None:
    token_server, token_recorder = hostile({"/token": lambda h: reply(h, 200, b'{"token":"stolen"}')})
    realm = f"http://{token_server.replace('127.0.0.1', 'localhost')}/token"
    challenge = {"WWW-Authenticate": f'Bearer realm="{realm}",service="registry.ollama.ai"'}
    address, _ = hostile({"/v2/evil/m/manifests/latest": lambda h: reply(h, 401, b"", challenge)})
    failed = pull(store_server, f"{address}/evil/m")
    assert failed.status_code == 500
    assert failed.json()["error"].startswith("pull model manifest: realm host")
    assert token_recorder.requests == []


def test_a_redirect_to_a_metadata_address_is_refused(store_server: Server, hostile) -> None:
    address, _ = hostile(
        {
            "/v2/evil/m/manifests/latest": lambda h: reply(h, 200, manifest_bytes(WEIGHTS_DIGEST, len(WEIGHTS))),
            f"/v2/evil/m/blobs/{WEIGHTS_DIGEST}": lambda h: reply(
                h, 302, b"", {"Location": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}
            ),
        }
    )
    failed = pull(store_server, f"{address}/evil/m")
    assert (failed.status_code, failed.json()) == (500, {"error": "registry redirected to an internal address"})
    assert no_model_stored(store_server)


HOSTILE_NAMES = [
    "../../etc/passwd", "a/../b", "m:" + "t" * 81, "a\x00b", "x" * 10_000, "é" * 5_000, "ns/../../../../tmp/x"
]


@pytest.mark.parametrize(
    "name", HOSTILE_NAMES, ids=["traversal", "dotdot", "81-char-tag", "nul", "10kB", "10kB-utf8", "deep"]
)
def test_hostile_model_names_are_refused_by_every_endpoint(store_server: Server, name: str) -> None:
    calls = [
        ("POST", "/api/pull", {"model": name, "insecure": True, "stream": False}),
        ("POST", "/api/push", {"model": name, "insecure": True, "stream": False}),
        ("POST", "/api/show", {"model": name}),
        ("DELETE", "/api/delete", {"model": name}),
        ("POST", "/api/copy", {"source": name, "destination": "fine"}),
        ("POST", "/api/copy", {"source": "fine", "destination": name}),
        ("POST", "/api/create", {"model": name, "from": "fine", "stream": False}),
    ]
    for method, path, body in calls:
        response = httpx.request(method, store_server.base_url + path, json=body, timeout=30)
        assert response.status_code == 400, (path, response.text[:200])
        error = response.json()["error"]
        assert len(error) <= 512
        for leak in (str(store_server.models_dir), "manifests/", "stat ", "No such file", "Errno", "Traceback"):
            assert leak not in error, (path, error[:200])


def test_create_reads_no_server_path_device_fifo_or_symlink(store_server: Server) -> None:
    blobs = store_server.models_dir / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    # Planted by someone with access to the store: create must still not block on or stream them.
    fifo_digest, link_digest = "sha256:" + "f" * 64, "sha256:" + "e" * 64
    os.mkfifo(blobs / fifo_digest.replace(":", "-"))
    (blobs / link_digest.replace(":", "-")).symlink_to("/dev/zero")
    try:
        bodies = [
            ({"from": "/dev/random"}, "invalid model name"),
            ({"from": "../../etc/passwd"}, "invalid model name"),
            ({"path": "/dev/zero"}, "neither 'from' or 'files' was specified"),
            ({"modelfile": "FROM /dev/zero"}, "neither 'from' or 'files' was specified"),
            ({"files": {"model.gguf": "/dev/random"}}, "invalid digest format"),
            ({"files": {"model.gguf": fifo_digest}}, f'blob "{fifo_digest}" not found'),
            ({"files": {"model.gguf": link_digest}}, f'blob "{link_digest}" not found'),
        ]
        for body, error in bodies:
            started = time.monotonic()
            response = httpx.post(
                store_server.base_url + "/api/create", json={"model": "planted", **body, "stream": False}, timeout=30
            )
            assert response.status_code == 400, (body, response.text)
            assert response.json() == {"error": error}, body
            assert time.monotonic() - started < 10
        assert no_model_stored(store_server)
    finally:
        (blobs / fifo_digest.replace(":", "-")).unlink()
        (blobs / link_digest.replace(":", "-")).unlink()


@pytest.mark.parametrize(
    "filename",
    ["../evil.gguf", "/abs/evil.gguf", "a/../../evil.gguf", "..\\evil.gguf", "config/../../../evil.json"],
)
def test_create_file_names_cannot_leave_the_model_directory(store_server: Server, root: Path, filename: str) -> None:
    digest = "sha256:" + hashlib.sha256(b"{}").hexdigest()
    httpx.post(f"{store_server.base_url}/api/blobs/{digest}", content=b"{}").raise_for_status()
    response = httpx.post(
        store_server.base_url + "/api/create",
        json={"model": "slipped", "files": {filename: digest, "config.json": digest}, "stream": False},
        timeout=30,
    )
    assert (response.status_code, response.json()) == (400, {"error": "file path must be relative"})
    assert not list(root.rglob("evil*"))


def test_a_model_deleted_while_it_streams_finishes_its_answer(server: Server, client) -> None:
    client.create("doomed", from_=CHAT_MODEL, system="A system prompt only the doomed model has.", stream=False)
    stream = client.generate("doomed", "Count from one to one hundred:", stream=True,
                             options={"temperature": 0, "num_predict": 48})
    first = next(stream)
    assert first.response is not None
    client.delete("doomed")
    rest = list(stream)
    assert rest[-1].done and rest[-1].done_reason in ("stop", "length") and rest[-1].eval_count > 1
    assert httpx.post(server.base_url + "/api/show", json={"model": "doomed"}).status_code == 404
    assert client.generate(CHAT_MODEL, "Hi", options={"num_predict": 2}).done
    assert_store_is_consistent(server.models_dir)


def test_a_corrupt_manifest_at_startup_hides_one_model_and_stops_gc(tmp_path: Path) -> None:
    models = tmp_path / "models"
    good = ModelFiles(models)
    good.add_model("registry.ollama.ai/library/good/latest")
    orphan = good.add_blob(b"an orphan no manifest names")
    corrupt = models / "manifests/registry.ollama.ai/library/broken/latest"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b'{"schemaVersion": 2, "layers": [')
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(orphan, (week_ago, week_ago))

    server = start_server(tmp_path, HERD_NO_BUNDLED="1")
    try:
        assert httpx.get(server.base_url + "/api/version").status_code == 200
        assert [model["name"] for model in httpx.get(server.base_url + "/api/tags").json()["models"]] == ["good:latest"]
        shown = httpx.post(server.base_url + "/api/show", json={"model": "broken"})
        assert (shown.status_code, shown.json()) == (500, {"error": "model manifest is corrupt: manifest is not JSON"})
        assert orphan.exists()  # the broken model might have needed it
    finally:
        stop_server(server)


class ModelFiles:
    """Writes a store by hand, as another tool or an older server might have left it."""

    def __init__(self, models: Path) -> None:
        self.models = models
        (models / "blobs").mkdir(parents=True, exist_ok=True)

    def add_blob(self, data: bytes) -> Path:
        path = self.models / "blobs" / f"sha256-{hashlib.sha256(data).hexdigest()}"
        path.write_bytes(data)
        return path

    def add_model(self, manifest_name: str) -> None:
        config = self.add_blob(json.dumps({"model_format": "gguf"}).encode())
        template = self.add_blob(b"{{ .Prompt }}")
        layer = lambda path, media: {"mediaType": media, "digest": path.name.replace("-", ":", 1),  # noqa: E731
                                     "size": path.stat().st_size}
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": layer(config, "application/vnd.docker.container.image.v1+json"),
            "layers": [layer(template, "application/vnd.ollama.image.template")],
        }
        path = self.models / "manifests" / manifest_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/models`` on a 4 MiB filesystem of its own, so that writing more fails with ENOSPC."""
    models = tmp_path / "models"
    models.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(models)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield tmp_path
    finally:
        subprocess.run(["umount", "-l", str(models)], check=True)


def test_a_full_disk_mid_upload_and_mid_pull_is_a_clean_error(small_disk: Path, hostile) -> None:
    big = os.urandom(6 * MiB)
    big_digest = "sha256:" + hashlib.sha256(big).hexdigest()
    server = start_server(small_disk, HERD_NO_BUNDLED="1")
    try:
        uploaded = httpx.post(f"{server.base_url}/api/blobs/{big_digest}", content=big, timeout=60)
        assert (uploaded.status_code, uploaded.json()) == (500, {"error": "no space left on device"})
        assert blob_names(server) == set()

        address, _ = hostile(
            {
                "/v2/big/m/manifests/latest": lambda h: reply(h, 200, manifest_bytes(big_digest, len(big))),
                f"/v2/big/m/blobs/{big_digest}": lambda h: reply(h, 200, big),
            }
        )
        pulled = pull(server, f"{address}/big/m")
        assert (pulled.status_code, pulled.json()) == (500, {"error": "no space left on device"})
        assert blob_names(server) == set()
        assert no_model_stored(server)
        assert_store_is_consistent(server.models_dir)

        small = b"fits on the disk"
        small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
        assert httpx.post(f"{server.base_url}/api/blobs/{small_digest}", content=small).status_code == 201
        assert httpx.get(server.base_url + "/api/version").status_code == 200
    finally:
        stop_server(server)
