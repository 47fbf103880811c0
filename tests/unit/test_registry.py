"""Pull and push against a real Docker registry, and against scripted hostile ones."""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import json
import multiprocessing
import os
import signal
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from herd.core.store import registry as registry_module
from herd.core.store.manifest import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_TEMPLATE,
    Layer,
    Manifest,
)
from herd.core.store.names import ModelName
from herd.core.store.registry import ManifestNotFound, RegistryError, pull_model, push_model
from herd.core.store.store import ModelNotFound, ModelStore
from tests.integration.test_store_faults import assert_store_is_consistent
from tests.registry_server import (  # noqa: F401  (registry: the fixture)
    Recorder,
    Seen,
    proxy_to,
    registry,
    reply,
    serve,
    statuses,
)

MiB = 1 << 20


class Interrupted(Exception):
    pass


def make_model(store: ModelStore, name: str, weights: bytes) -> Manifest:
    """A tiny stand-in model: a weights layer, a template and a config, then its manifest."""
    layers = []
    for media_type, data in ((MEDIA_TYPE_MODEL, weights), (MEDIA_TYPE_TEMPLATE, b"{{ .Prompt }}")):
        digest, size = store.add_blob_bytes(data)
        layers.append(Layer(media_type, digest, size))
    config_digest, config_size = store.add_blob_bytes(json.dumps({"model_format": "gguf"}).encode())
    manifest = Manifest(config=Layer(MEDIA_TYPE_CONFIG, config_digest, config_size), layers=layers)
    store.write_manifest(ModelName.parse(name), manifest)
    return manifest


def publish(store: ModelStore, name: str, weights: bytes) -> Manifest:
    """:func:`make_model` in ``store``, pushed to the registry ``name`` points at."""
    manifest = make_model(store, name, weights)
    push_model(store, name, insecure=True, progress=lambda line: None)
    return manifest


def blob_files(store: ModelStore) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in store.blobs_dir.iterdir()}


@pytest.fixture
def counting_proxy(registry: str) -> Iterator[tuple[str, Recorder]]:  # noqa: F811
    with proxy_to(registry) as proxy:
        yield proxy


def test_plain_http_needs_insecure(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="^insecure protocol http$"):
        pull_model(ModelStore(tmp_path), "http://127.0.0.1:9/herd/m", insecure=False, progress=lambda line: None)
    assert not (tmp_path / "blobs").exists()


def test_an_interrupted_pull_resumes_where_it_stopped(
    tmp_path: Path,
    registry: str,  # noqa: F811
    counting_proxy: tuple[str, Recorder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = ModelStore(tmp_path / "a")
    manifest = publish(source, f"{registry}/herd/big", os.urandom(3 * MiB))
    proxy, recorder = counting_proxy
    name = f"{proxy}/herd/big"
    weights = manifest.layers[0]
    monkeypatch.setattr(registry_module, "_PROGRESS_INTERVAL_S", 0.0)

    def stop_after_first_chunk(line: dict[str, Any]) -> None:
        if line.get("digest") == weights.digest and 0 < line["completed"] < line["total"]:
            raise Interrupted()

    target = ModelStore(tmp_path / "b")
    with pytest.raises(Interrupted):
        pull_model(target, name, insecure=True, progress=stop_after_first_chunk)

    with pytest.raises(ModelNotFound):
        target.get(name)
    assert not target.blob_path(weights.digest).exists()
    partial = target.blobs_dir / f".partial-sha256-{weights.digest[7:]}"
    kept = partial.stat().st_size
    assert 0 < kept < weights.size

    recorder.requests.clear()
    pull_model(target, name, insecure=True, progress=lambda line: None)

    (resumed,) = recorder.blob_gets(weights.digest)
    assert resumed.headers.get("range") == f"bytes={kept}-"
    assert resumed.body_bytes == weights.size - kept
    assert target.blob_path(weights.digest).read_bytes() == source.blob_path(weights.digest).read_bytes()
    assert not partial.exists()
    assert target.get(name).manifest == manifest


def test_two_concurrent_pulls_fetch_each_blob_once(
    tmp_path: Path,
    registry: str,  # noqa: F811
    counting_proxy: tuple[str, Recorder],
) -> None:
    source = ModelStore(tmp_path / "a")
    manifest = publish(source, f"{registry}/herd/shared", os.urandom(2 * MiB))
    proxy, recorder = counting_proxy
    name = f"{proxy}/herd/shared"
    target = ModelStore(tmp_path / "b")
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def pull() -> None:
        start.wait()
        try:
            pull_model(target, name, insecure=True, progress=lambda line: None)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    for layer in (*manifest.layers, manifest.config):
        assert len(recorder.blob_gets(layer.digest)) == 1, layer.media_type
        assert target.blob_path(layer.digest).read_bytes() == source.blob_path(layer.digest).read_bytes()
    assert not [path for path in target.blobs_dir.iterdir() if path.name.startswith(".")]


@pytest.mark.parametrize("remove_replaced_layers", [True, False])
def test_pulling_a_new_version_removes_the_layers_only_the_old_one_used(
    tmp_path: Path,
    registry: str,  # noqa: F811
    remove_replaced_layers: bool,
) -> None:
    source = ModelStore(tmp_path / "a")
    name = f"{registry}/herd/versioned:latest"
    old = publish(source, name, b"old weights")
    target = ModelStore(tmp_path / "b", remove_replaced_layers=remove_replaced_layers)
    pull_model(target, name, insecure=True, progress=lambda line: None)
    new = publish(source, name, b"new weights")

    lines: list[dict[str, Any]] = []
    pull_model(target, name, insecure=True, progress=lines.append)

    removing = ["removing unused layers"] if remove_replaced_layers else []
    seen = statuses(lines)
    assert seen[seen.index("writing manifest"):] == ["writing manifest", *removing, "success"]
    assert target.get(name).manifest == new
    assert target.blob_path(old.layers[0].digest).exists() is not remove_replaced_layers
    assert target.blob_path(old.layers[1].digest).exists()  # the template: the new version has it too


def test_a_replaced_layer_another_model_uses_is_kept(tmp_path: Path, registry: str) -> None:  # noqa: F811
    source = ModelStore(tmp_path / "a")
    name = f"{registry}/herd/shared-old:latest"
    old = publish(source, name, b"old weights")
    target = ModelStore(tmp_path / "b")
    pull_model(target, name, insecure=True, progress=lambda line: None)
    target.copy(name, "keeps-the-old-one:latest")
    publish(source, name, b"new weights")

    lines: list[dict[str, Any]] = []
    pull_model(target, name, insecure=True, progress=lines.append)

    assert "removing unused layers" not in statuses(lines)
    assert target.blob_path(old.layers[0].digest).exists()
    assert target.get("keeps-the-old-one").manifest == old


# Scripted registries for what a real one never sends.

WEIGHTS = b"the real weights"
WEIGHTS_DIGEST = "sha256:" + hashlib.sha256(WEIGHTS).hexdigest()


def manifest_bytes(digest: str, size: int) -> bytes:
    layer = {"mediaType": MEDIA_TYPE_MODEL, "digest": digest, "size": size}
    config = {"mediaType": MEDIA_TYPE_CONFIG, "digest": digest, "size": size}
    return json.dumps(
        {"schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST, "config": config, "layers": [layer]}
    ).encode()


def scripted(routes: dict[str, Callable[[BaseHTTPRequestHandler], None]]) -> Callable[..., None]:
    def handle(handler: BaseHTTPRequestHandler, recorder: Recorder) -> None:
        with recorder.lock:
            recorder.requests.append(Seen(handler.command, handler.path, dict(handler.headers.items())))
        route = routes.get(handler.path)
        if route is None:
            reply(handler, 404, b'{"errors":[{"code":"NOT_FOUND"}]}')
        else:
            route(handler)

    return handle


@pytest.fixture
def hostile() -> Iterator[Callable[[dict[str, Callable[[BaseHTTPRequestHandler], None]]], tuple[str, Recorder]]]:
    """Starts scripted registries: ``hostile({path: handler})`` gives ``(address, recorder)``."""
    with ExitStack() as stack:

        def start(routes: dict[str, Callable[[BaseHTTPRequestHandler], None]]) -> tuple[str, Recorder]:
            return stack.enter_context(serve(scripted(routes)))

        yield start


def store_is_untouched(store: ModelStore) -> bool:
    return not store.root.exists() or not any(store.root.iterdir())


def test_a_blob_whose_bytes_do_not_match_its_digest_is_rejected(tmp_path: Path, hostile) -> None:
    tampered = b"the fake weights"  # same length, other bytes
    address, _ = hostile(
        {
            "/v2/evil/m/manifests/latest": lambda h: reply(h, 200, manifest_bytes(WEIGHTS_DIGEST, len(WEIGHTS))),
            f"/v2/evil/m/blobs/{WEIGHTS_DIGEST}": lambda h: reply(h, 200, tampered),
        }
    )
    store = ModelStore(tmp_path)
    with pytest.raises(RegistryError, match="digest mismatch"):
        pull_model(store, f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert list(store.blobs_dir.iterdir()) == []  # no final blob and no partial to resume from
    assert not store.manifests_dir.exists()


def test_a_blob_larger_than_declared_is_rejected(tmp_path: Path, hostile) -> None:
    address, _ = hostile(
        {
            "/v2/evil/m/manifests/latest": lambda h: reply(h, 200, manifest_bytes(WEIGHTS_DIGEST, len(WEIGHTS))),
            f"/v2/evil/m/blobs/{WEIGHTS_DIGEST}": lambda h: reply(h, 200, WEIGHTS + b"x" * MiB),
        }
    )
    store = ModelStore(tmp_path)
    with pytest.raises(RegistryError, match="larger than its declared size"):
        pull_model(store, f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert not store.blob_path(WEIGHTS_DIGEST).exists()
    assert not store.manifests_dir.exists()


@pytest.mark.parametrize("digest", ["sha256:../../x", "sha256:" + "g" * 64, "sha256:" + "a" * 63, "md5:abc"])
def test_a_manifest_with_a_bad_digest_fails_before_any_file_is_touched(tmp_path: Path, hostile, digest: str) -> None:
    address, recorder = hostile({"/v2/evil/m/manifests/latest": lambda h: reply(h, 200, manifest_bytes(digest, 4))})
    store = ModelStore(tmp_path / "models")
    with pytest.raises(RegistryError, match="invalid digest"):
        pull_model(store, f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert store_is_untouched(store)
    assert not (tmp_path / "x").exists()
    assert [seen.path for seen in recorder.requests] == ["/v2/evil/m/manifests/latest"]


def test_an_oversized_manifest_is_refused(tmp_path: Path, hostile) -> None:
    address, _ = hostile({"/v2/evil/m/manifests/latest": lambda h: reply(h, 200, b" " * (5 * MiB))})
    store = ModelStore(tmp_path)
    with pytest.raises(RegistryError, match="too large"):
        pull_model(store, f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert store_is_untouched(store)


def test_a_compressed_manifest_is_refused(tmp_path: Path, hostile) -> None:
    gzip_bomb_head = b"\x1f\x8b\x08\x00" + b"\x00" * 16
    address, _ = hostile(
        {"/v2/evil/m/manifests/latest": lambda h: reply(h, 200, gzip_bomb_head, {"Content-Encoding": "gzip"})}
    )
    with pytest.raises(RegistryError, match="compressed"):
        pull_model(ModelStore(tmp_path), f"{address}/evil/m", insecure=True, progress=lambda line: None)


def test_a_token_realm_on_another_host_is_refused(tmp_path: Path, hostile) -> None:
    token_server, token_requests = hostile({"/token": lambda h: reply(h, 200, b'{"token":"stolen"}')})
    other_host = token_server.replace("127.0.0.1", "localhost")
    challenge = f'Bearer realm="http://{other_host}/token",service="evil",scope="repository:evil/m:pull"'
    address, _ = hostile({"/v2/evil/m/manifests/latest": lambda h: reply(h, 401, b"", {"WWW-Authenticate": challenge})})
    with pytest.raises(RegistryError, match="does not match original host"):
        pull_model(ModelStore(tmp_path), f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert token_requests.requests == []


def test_a_token_from_the_registrys_own_realm_is_sent_back_to_it(tmp_path: Path, hostile) -> None:
    def manifest(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("Authorization") == "Bearer s3cret":
            reply(handler, 404, b"")
        else:
            realm = f"http://{handler.headers['Host']}/token"
            challenge = f'Bearer realm="{realm}",service="reg",scope="repository:ns/m:pull"'
            reply(handler, 401, b"", {"WWW-Authenticate": challenge})

    address, recorder = hostile(
        {
            "/v2/ns/m/manifests/latest": manifest,
            "/token?service=reg&scope=repository%3Ans%2Fm%3Apull": lambda h: reply(h, 200, b'{"token":"s3cret"}'),
        }
    )
    with pytest.raises(ManifestNotFound):
        pull_model(ModelStore(tmp_path), f"{address}/ns/m", insecure=True, progress=lambda line: None)
    paths = [seen.path for seen in recorder.requests]
    assert paths == [
        "/v2/ns/m/manifests/latest",
        "/token?service=reg&scope=repository%3Ans%2Fm%3Apull",
        "/v2/ns/m/manifests/latest",
    ]
    assert "Authorization" not in recorder.requests[1].headers


def test_a_blob_redirect_to_another_host_carries_no_credentials(tmp_path: Path, hostile) -> None:
    cdn, cdn_recorder = hostile({"/blob": lambda h: reply(h, 200, WEIGHTS)})
    cdn_url = f"http://{cdn.replace('127.0.0.1', 'localhost')}/blob"

    def authorized(then: Callable[[BaseHTTPRequestHandler], None]) -> Callable[[BaseHTTPRequestHandler], None]:
        def route(handler: BaseHTTPRequestHandler) -> None:
            if handler.headers.get("Authorization") == "Bearer s3cret":
                then(handler)
            else:
                challenge = f'Bearer realm="http://{handler.headers["Host"]}/token",service="reg"'
                reply(handler, 401, b"", {"WWW-Authenticate": challenge})

        return route

    address, _ = hostile(
        {
            "/v2/ns/m/manifests/latest": authorized(
                lambda h: reply(h, 200, manifest_bytes(WEIGHTS_DIGEST, len(WEIGHTS)))
            ),
            f"/v2/ns/m/blobs/{WEIGHTS_DIGEST}": authorized(lambda h: reply(h, 307, b"", {"Location": cdn_url})),
            "/token?service=reg": lambda h: reply(h, 200, b'{"token":"s3cret"}'),
        }
    )
    store = ModelStore(tmp_path)
    pull_model(store, f"{address}/ns/m", insecure=True, progress=lambda line: None)

    assert store.blob_path(WEIGHTS_DIGEST).read_bytes() == WEIGHTS
    (fetched,) = cdn_recorder.requests
    assert "Authorization" not in fetched.headers


# Bounded reads: nothing a registry sends grows memory past a small bound.

PUBLIC_ADDRESS = ipaddress.ip_address("93.184.215.14")


def chunked(handler: BaseHTTPRequestHandler, chunks: Iterator[bytes], headers: dict[str, str] | None = None) -> None:
    """A 200 whose body is sent chunked, without a length, for as long as ``chunks`` lasts."""
    handler.send_response(200)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    try:
        for chunk in chunks:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        handler.wfile.write(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client stopped reading, as it should


def endless(chunk: bytes) -> Iterator[bytes]:
    while True:
        yield chunk


def gzip_bomb(inflated_bytes: int) -> bytes:
    """A gzip stream of zeros: about a thousandth of what it inflates to."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as file:
        block = b"\0" * MiB
        for _ in range(inflated_bytes // MiB):
            file.write(block)
    return out.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb(256 * MiB)


def peak_allocation(work: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        work()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_an_endless_chunked_manifest_is_cut_off_with_little_memory(tmp_path: Path, hostile) -> None:
    address, _ = hostile({"/v2/evil/m/manifests/latest": lambda h: chunked(h, endless(b"{" * (64 << 10)))})
    store = ModelStore(tmp_path)

    def pull() -> None:
        with pytest.raises(RegistryError, match="^pull model manifest: registry sent a manifest that is too large$"):
            pull_model(store, f"{address}/evil/m", insecure=True, progress=lambda line: None)

    assert peak_allocation(pull) < 16 * MiB
    assert store_is_untouched(store)


def test_a_manifest_that_trickles_in_is_dropped(tmp_path: Path, hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_SMALL_BODY_DEADLINE_S", 0.5)

    def trickle() -> Iterator[bytes]:
        while True:
            time.sleep(0.05)
            yield b" "

    address, _ = hostile({"/v2/evil/m/manifests/latest": lambda h: chunked(h, trickle())})
    started = time.monotonic()
    with pytest.raises(RegistryError, match="took too long to send a manifest"):
        pull_model(ModelStore(tmp_path), f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("where", ["manifest", "token", "error", "blob"])
def test_a_gzip_bomb_is_never_inflated(tmp_path: Path, hostile, bomb: bytes, where: str) -> None:
    gzipped = {"Content-Encoding": "gzip"}

    def challenge(handler: BaseHTTPRequestHandler) -> None:
        realm = f"http://{handler.headers['Host']}/token"
        reply(handler, 401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'})

    routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {
        "manifest": {"/v2/evil/m/manifests/latest": lambda h: reply(h, 200, bomb, gzipped)},
        "token": {
            "/v2/evil/m/manifests/latest": challenge,
            "/token?service=reg": lambda h: reply(h, 200, bomb, gzipped),
        },
        "error": {"/v2/evil/m/manifests/latest": lambda h: reply(h, 500, bomb, gzipped)},
        "blob": {
            "/v2/evil/m/manifests/latest": lambda h: reply(h, 200, manifest_bytes(WEIGHTS_DIGEST, len(WEIGHTS))),
            f"/v2/evil/m/blobs/{WEIGHTS_DIGEST}": lambda h: reply(h, 200, bomb, gzipped),
        },
    }[where]
    address, recorder = hostile(routes)
    store = ModelStore(tmp_path)

    def pull() -> None:
        with pytest.raises(RegistryError, match="registry sent a compressed response"):
            pull_model(store, f"{address}/evil/m", insecure=True, progress=lambda line: None)

    assert peak_allocation(pull) < 16 * MiB
    assert all(seen.headers.get("Accept-Encoding") == "identity" for seen in recorder.requests)
    assert not store.blob_path(WEIGHTS_DIGEST).exists()
    assert not store.manifests_dir.exists()


def test_a_huge_error_body_is_cut_to_a_line(tmp_path: Path, hostile) -> None:
    address, _ = hostile({"/v2/evil/m/manifests/latest": lambda h: reply(h, 503, b"too busy " + b"E" * (8 * MiB))})
    with pytest.raises(RegistryError) as raised:
        pull_model(ModelStore(tmp_path), f"{address}/evil/m", insecure=True, progress=lambda line: None)
    message = str(raised.value)
    assert message.startswith("pull model manifest: 503: too busy EEE")
    assert len(message) < 600


# Redirects: never further inside than the registry itself.


def as_if_public(registry_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the session see ``registry_address`` as a registry on the internet."""
    real_peer = registry_module._peer_address

    def peer(response: httpx.Response) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        if response.url.netloc.decode() == registry_address:
            return PUBLIC_ADDRESS
        return real_peer(response)

    monkeypatch.setattr(registry_module, "_peer_address", peer)


def redirecting_registry(hostile, location: str) -> str:
    address, _ = hostile(
        {
            "/v2/evil/m/manifests/latest": lambda h: reply(h, 200, manifest_bytes(WEIGHTS_DIGEST, len(WEIGHTS))),
            f"/v2/evil/m/blobs/{WEIGHTS_DIGEST}": lambda h: reply(h, 307, b"", {"Location": location}),
        }
    )
    return address


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x",
        "http://[::ffff:169.254.169.254]/x",
        "http://0.0.0.0/x",
        "http://224.0.0.1/x",
    ],
)
def test_a_redirect_to_a_metadata_or_unroutable_address_is_refused_from_any_registry(
    tmp_path: Path, hostile, location: str
) -> None:
    address = redirecting_registry(hostile, location)  # a registry on loopback, the most trusted place
    store = ModelStore(tmp_path)
    with pytest.raises(RegistryError, match="^registry redirected to an internal address$"):
        pull_model(store, f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert not store.blob_path(WEIGHTS_DIGEST).exists()
    assert not store.manifests_dir.exists()


@pytest.mark.parametrize("internal_host", ["127.0.0.1", "localhost", "10.0.0.1", "192.168.1.1", "[::1]"])
def test_a_public_registry_cannot_redirect_inside(
    tmp_path: Path, hostile, monkeypatch: pytest.MonkeyPatch, internal_host: str
) -> None:
    cdn, cdn_recorder = hostile({"/blob": lambda h: reply(h, 200, WEIGHTS)})
    port = cdn.rsplit(":", 1)[1]
    address = redirecting_registry(hostile, f"http://{internal_host}:{port}/blob")
    as_if_public(address, monkeypatch)
    with pytest.raises(RegistryError, match="^registry redirected to an internal address$"):
        pull_model(ModelStore(tmp_path), f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert cdn_recorder.requests == []  # refused before connecting: the host name resolved inside


def test_a_redirect_host_that_resolves_outside_but_connects_inside_is_refused(
    tmp_path: Path, hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: the name resolved to a public address when checked, then to loopback when connected.
    cdn, cdn_recorder = hostile({"/blob": lambda h: reply(h, 200, WEIGHTS)})
    address = redirecting_registry(hostile, f"http://{cdn.replace('127.0.0.1', 'localhost')}/blob")
    as_if_public(address, monkeypatch)
    monkeypatch.setattr(registry_module, "_resolve", lambda url: [PUBLIC_ADDRESS])
    store = ModelStore(tmp_path)
    with pytest.raises(RegistryError, match="^registry redirected to an internal address$"):
        pull_model(store, f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert [path.name for path in store.blobs_dir.iterdir() if path.stat().st_size] == []  # nothing was read
    assert not store.manifests_dir.exists()


def test_a_registry_on_loopback_may_redirect_to_loopback(tmp_path: Path, hostile) -> None:
    cdn, cdn_recorder = hostile({"/blob": lambda h: reply(h, 200, WEIGHTS)})
    address = redirecting_registry(hostile, f"http://{cdn.replace('127.0.0.1', 'localhost')}/blob")
    store = ModelStore(tmp_path)
    pull_model(store, f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert store.blob_path(WEIGHTS_DIGEST).read_bytes() == WEIGHTS
    assert len(cdn_recorder.requests) == 1  # layer and config share the digest here: fetched once


def test_addresses_are_placed_from_the_internet_inward() -> None:
    scope = registry_module._address_scope
    assert scope(ipaddress.ip_address("93.184.215.14")) is registry_module._Scope.PUBLIC
    assert scope(ipaddress.ip_address("2606:4700::1111")) is registry_module._Scope.PUBLIC
    for private in ("10.1.2.3", "172.16.0.1", "192.168.0.1", "100.64.0.1", "fd00:ec2::254"):
        assert scope(ipaddress.ip_address(private)) is registry_module._Scope.PRIVATE, private
    for loopback in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"):
        assert scope(ipaddress.ip_address(loopback)) is registry_module._Scope.LOOPBACK, loopback
    for never in ("169.254.169.254", "fe80::1", "0.0.0.0", "::", "224.0.0.1", "240.0.0.1", "::ffff:169.254.169.254"):
        assert scope(ipaddress.ip_address(never)) is None, never


def test_deleting_a_model_mid_pull_keeps_the_blobs_the_pull_shares_with_it(tmp_path: Path, hostile) -> None:
    store = ModelStore(tmp_path)
    old = make_model(store, "old", b"weights both models have")
    shared = old.layers[0]
    own_bytes = b"weights only the new model has"
    own_digest = "sha256:" + hashlib.sha256(own_bytes).hexdigest()
    manifest = Manifest(config=old.config, layers=[shared, Layer(MEDIA_TYPE_MODEL, own_digest, len(own_bytes))])

    def own_blob_after_deleting_old(handler: BaseHTTPRequestHandler) -> None:
        store.delete("old")  # lands after the pull found the shared blob stored, before its manifest
        reply(handler, 200, own_bytes)

    address, _ = hostile(
        {
            "/v2/ns/new/manifests/latest": lambda h: reply(h, 200, manifest.to_json_bytes()),
            f"/v2/ns/new/blobs/{own_digest}": own_blob_after_deleting_old,
        }
    )
    pull_model(store, f"{address}/ns/new", insecure=True, progress=lambda line: None)

    with pytest.raises(ModelNotFound):
        store.get("old")
    assert store.get(f"{address}/ns/new").manifest == manifest
    for layer in (*manifest.layers, manifest.config):
        assert store.blob_path(layer.digest).is_file()
    assert not store.blob_path(old.layers[1].digest).exists()  # the template only the deleted model used


# Processes: a pull killed at its commit points, and two processes pulling into one store.


def in_child(work: Callable[[], None]) -> int:
    """Runs ``work`` in a forked process; returns its exit code (negative: the signal that ended it)."""
    process = multiprocessing.get_context("fork").Process(target=work)
    process.start()
    process.join(timeout=120)
    return process.exitcode


def killed_when_renaming(is_target: Callable[[Path], bool], work: Callable[[], None]) -> Callable[[], None]:
    """``work`` with SIGKILL in place of the rename that would commit what ``is_target`` picks."""

    def run() -> None:
        real_replace = os.replace

        def replace(source: Any, destination: Any) -> None:
            if is_target(Path(destination)):
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(source, destination)

        os.replace = replace
        work()

    return run


@pytest.mark.parametrize("commit_point", ["blob", "manifest"])
def test_a_pull_killed_at_a_commit_point_leaves_a_consistent_store_and_resumes(
    tmp_path: Path,
    registry: str,  # noqa: F811
    counting_proxy: tuple[str, Recorder],
    commit_point: str,
) -> None:
    source = ModelStore(tmp_path / "a")
    manifest = publish(source, f"{registry}/herd/killed", os.urandom(MiB))
    proxy, recorder = counting_proxy
    name = f"{proxy}/herd/killed"
    target = ModelStore(tmp_path / "b")
    weights = manifest.layers[0]
    # The weights layer is pulled first: "blob" kills it verified but not yet renamed to its address.
    is_target = {
        "blob": lambda path: path.name == weights.digest.replace(":", "-"),
        "manifest": lambda path: path.parent.name == "killed",
    }[commit_point]

    exit_code = in_child(
        killed_when_renaming(is_target, lambda: pull_model(target, name, insecure=True, progress=lambda line: None))
    )

    assert exit_code == -signal.SIGKILL
    with pytest.raises(ModelNotFound):
        target.get(name)
    assert_store_is_consistent(target.root)
    fetched_before = len(recorder.blob_gets(weights.digest))
    assert fetched_before == 1
    pull_model(target, name, insecure=True, progress=lambda line: None)
    assert len(recorder.blob_gets(weights.digest)) == fetched_before  # the kept bytes were used, not fetched again
    assert target.get(name).manifest == manifest
    assert_store_is_consistent(target.root)
    assert not [path for path in target.blobs_dir.iterdir() if path.name.startswith(".")]


def test_two_processes_pulling_into_one_store_fetch_each_blob_once(
    tmp_path: Path,
    registry: str,  # noqa: F811
    counting_proxy: tuple[str, Recorder],
) -> None:
    source = ModelStore(tmp_path / "a")
    manifest = publish(source, f"{registry}/herd/twice", os.urandom(2 * MiB))
    proxy, recorder = counting_proxy
    recorder.delay_per_chunk_s = 0.01  # long enough for both processes to be mid-pull together
    target_root = tmp_path / "b"
    start = multiprocessing.get_context("fork").Barrier(2)

    def pull() -> None:
        start.wait()
        pull_model(ModelStore(target_root), f"{proxy}/herd/twice", insecure=True, progress=lambda line: None)

    processes = [multiprocessing.get_context("fork").Process(target=pull) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)

    assert [process.exitcode for process in processes] == [0, 0]
    target = ModelStore(target_root)
    for layer in (*manifest.layers, manifest.config):
        assert len(recorder.blob_gets(layer.digest)) == 1, layer.media_type
    assert target.get(f"{proxy}/herd/twice").manifest == manifest
    assert_store_is_consistent(target_root)
    assert not [path for path in target.blobs_dir.iterdir() if path.name.startswith(".")]


def test_a_push_is_not_sent_to_an_upload_location_inside(tmp_path: Path, hostile) -> None:
    store = ModelStore(tmp_path)
    make_model(store, "m", b"weights to keep private")
    address, recorder = hostile(
        {
            "/v2/evil/m/blobs/uploads/": lambda h: reply(
                h, 202, b"", {"Location": "http://169.254.169.254/latest/user-data"}
            ),
        }
    )
    store.copy("m", f"{address}/evil/m")
    with pytest.raises(RegistryError, match="^registry redirected to an internal address$"):
        push_model(store, f"{address}/evil/m", insecure=True, progress=lambda line: None)
    assert not [seen for seen in recorder.requests if seen.method == "PUT"]
