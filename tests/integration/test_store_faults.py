"""Killing the whole server (SIGKILL to every process) in the middle of a pull, an upload and a create.

After each kill the store must be consistent: every manifest names blobs that exist, every blob's bytes
match its name, and the half-done work is invisible. After a restart the pull resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from herd.core.store.convert import convert_bert
from tests.bert_reference import minilm_dir, model_files
from tests.conftest import CHAT_MODEL, Server, kill_server, start_server, stop_server
from tests.registry_server import proxy_to, running_registry

pytestmark = pytest.mark.integration

MiB = 1 << 20


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[str]:
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture
def restartable(tmp_path) -> Iterator[list[Server]]:
    """Servers started on one store in ``tmp_path``; the test appends each one it starts."""
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            stop_server(server)


def start(tmp_path: Path, started: list[Server]) -> Server:
    server = start_server(tmp_path, HERD_NO_BUNDLED="1")
    started.append(server)
    return server


def assert_store_is_consistent(models: Path) -> None:
    """Every visible blob holds the bytes its name promises; every manifest's layers exist."""
    for blob in (models / "blobs").glob("sha256-*"):
        digest = hashlib.sha256()
        with open(blob, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        assert blob.name == f"sha256-{digest.hexdigest()}"
    for manifest_path in (models / "manifests").rglob("*"):
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_bytes())
            for layer in (manifest["config"], *manifest["layers"]):
                assert (models / "blobs" / layer["digest"].replace(":", "-")).exists()


def hidden_files(models: Path, prefix: str) -> list[Path]:
    return list((models / "blobs").glob(f"{prefix}*"))


def test_a_pull_killed_with_the_server_resumes_after_a_restart(client, server, registry, tmp_path, restartable):
    # A real model in the registry: the bundled chat model, pushed from the session's server.
    pushed_name = f"{registry}/herd/resume:v1"
    client.copy(CHAT_MODEL, pushed_name)
    list(client.push(pushed_name, insecure=True, stream=True))
    manifest_bytes = (server.models_dir / "manifests" / registry / "herd" / "resume" / "v1").read_bytes()
    client.delete(pushed_name)
    weights = max(json.loads(manifest_bytes)["layers"], key=lambda layer: layer["size"])

    with proxy_to(registry) as (proxy, recorder):
        name = f"{proxy}/herd/resume:v1"
        recorder.delay_per_chunk_s = 0.01  # about 6 MB/s: the kill lands well inside the weights
        puller = start(tmp_path, restartable)
        with httpx.stream("POST", puller.base_url + "/api/pull", json={"model": name, "insecure": True},
                          timeout=60) as response:
            for line in response.iter_lines():
                progress = json.loads(line)
                if progress.get("digest") == weights["digest"] and progress.get("completed", 0) >= 4 * MiB:
                    break
        kill_server(puller)

        models = puller.models_dir
        manifest_path = models / "manifests" / proxy / "herd" / "resume" / "v1"
        assert not manifest_path.exists()
        assert not (models / "blobs" / weights["digest"].replace(":", "-")).exists()
        (partial,) = hidden_files(models, ".partial-")
        kept = partial.stat().st_size
        assert 4 * MiB <= kept < weights["size"]
        assert_store_is_consistent(models)

        recorder.delay_per_chunk_s = 0.0
        recorder.requests.clear()
        restarted = start(tmp_path, restartable)
        assert ollama.Client(host=restarted.base_url).list().models == []
        pulled = list(ollama.Client(host=restarted.base_url).pull(name, insecure=True, stream=True))
        assert pulled[-1].status == "success"

        (resumed,) = recorder.blob_gets(weights["digest"])
        assert resumed.headers.get("range") == f"bytes={kept}-"
        assert resumed.body_bytes == weights["size"] - kept

    assert manifest_path.read_bytes() == manifest_bytes
    assert hidden_files(models, ".partial-") == []
    assert_store_is_consistent(models)
    reply = ollama.Client(host=restarted.base_url, timeout=300).chat(
        name, messages=[{"role": "user", "content": "What is the capital of France?"}],
        options={"temperature": 0, "num_predict": 16},
    )
    assert "Paris" in reply.message.content


def test_an_upload_killed_with_the_server_leaves_no_blob(tmp_path, restartable):
    data = b"\x00" * (8 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    uploader = start(tmp_path, restartable)

    def half_then_kill() -> Iterator[bytes]:
        yield data[: 4 * MiB]
        kill_server(uploader)
        yield data[4 * MiB:]

    with pytest.raises(httpx.TransportError):
        httpx.post(f"{uploader.base_url}/api/blobs/{digest}", content=half_then_kill(), timeout=60)

    models = uploader.models_dir
    assert not (models / "blobs" / digest.replace(":", "-")).exists()
    assert_store_is_consistent(models)

    restarted = start(tmp_path, restartable)
    assert httpx.head(f"{restarted.base_url}/api/blobs/{digest}").status_code == 404
    assert httpx.post(f"{restarted.base_url}/api/blobs/{digest}", content=data, timeout=60).status_code == 201
    assert httpx.head(f"{restarted.base_url}/api/blobs/{digest}").status_code == 200


def test_a_create_killed_while_quantizing_leaves_no_model(tmp_path, restartable):
    source = tmp_path / "minilm-f16.gguf"
    convert_bert(model_files(minilm_dir()), source)
    creator = start(tmp_path, restartable)
    client = ollama.Client(host=creator.base_url, timeout=300)
    digest = client.create_blob(source)

    for progress in client.create("minilm-q8", files={"model.gguf": digest}, quantize="q8_0", stream=True):
        if progress.status.startswith("quantizing"):
            break
    kill_server(creator)

    models = creator.models_dir
    assert hidden_files(models, ".tmp-quantize-")  # killed half-way: the quantizer's output was not done
    assert not (models / "manifests" / "registry.ollama.ai" / "library" / "minilm-q8").exists()
    assert_store_is_consistent(models)

    restarted = ollama.Client(host=start(tmp_path, restartable).base_url, timeout=300)
    assert [model.model for model in restarted.list().models] == []
    assert list(restarted.create("minilm-q8", files={"model.gguf": digest}, quantize="q8_0", stream=True))[-1].status \
        == "success"
    assert restarted.show("minilm-q8").details.quantization_level == "Q8_0"
    assert_store_is_consistent(models)
