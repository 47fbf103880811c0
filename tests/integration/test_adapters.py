"""LoRA adapters on /api/create: uploaded as a GGUF blob, applied by llama.cpp when the model runs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import ollama
import pytest

from herd.core.store.bundled import locate_gemma3, locate_smollm2
from tests.conftest import CHAT_MODEL
from tests.lora import write_lora

pytestmark = pytest.mark.integration

GREEDY = {"temperature": 0, "num_predict": 24}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def lora(tmp_path_factory) -> Path:
    return write_lora(locate_smollm2(), tmp_path_factory.mktemp("lora") / "smollm2-lora.gguf")


def create_error(server, **body) -> tuple[int, str]:
    reply = httpx.post(server.base_url + "/api/create", json={"model": "bad-adapter", "stream": False, **body},
                       timeout=60)
    return reply.status_code, reply.json().get("error")


def test_a_model_with_an_adapter_answers_differently_and_keeps_its_base(client, server, lora):
    digest = client.create_blob(lora)
    progress = list(client.create("smol-lora", from_=CHAT_MODEL, adapters={"smollm2-lora.gguf": digest}, stream=True))
    assert progress[-1].status == "success"

    manifest = json.loads((server.models_dir / "manifests/registry.ollama.ai/library/smol-lora/latest").read_text())
    adapters = [layer for layer in manifest["layers"] if layer["mediaType"] == "application/vnd.ollama.image.adapter"]
    assert [layer["digest"] for layer in adapters] == [digest]
    assert client.show("smol-lora").details.family == "llama"

    base = client.chat(CHAT_MODEL, messages=QUESTION, options=GREEDY).message.content
    adapted = client.chat("smol-lora", messages=QUESTION, options=GREEDY).message.content
    assert "Paris" in base
    assert adapted and adapted != base
    assert client.chat(CHAT_MODEL, messages=QUESTION, options=GREEDY).message.content == base

    # A model made from the adapted one keeps its adapter.
    client.create("smol-lora-pirate", from_="smol-lora", system="Talk like a pirate.", stream=False)
    manifest = json.loads(
        (server.models_dir / "manifests/registry.ollama.ai/library/smol-lora-pirate/latest").read_text()
    )
    assert digest in [layer["digest"] for layer in manifest["layers"]]
    for name in ("smol-lora", "smol-lora-pirate"):
        client.delete(name)


def test_adapter_errors_are_400_and_create_nothing(client, server, lora, tmp_path):
    good = client.create_blob(lora)
    weights = client.create_blob(locate_smollm2())
    other_model = client.create_blob(write_lora(locate_gemma3(), tmp_path / "gemma-lora.gguf"))
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_bytes(b"not a GGUF file at all")
    text = client.create_blob(not_gguf)

    cases = [
        ({"a.gguf": good, "b.gguf": good}, "only one adapter is currently supported"),
        ({"lora.gguf": weights}, "the adapter file is not a LoRA adapter"),
        ({"lora.gguf": other_model}, "the adapter is for gemma3 models, not llama"),
        ({"lora.gguf": text}, "supplied file was not in GGUF format"),
        ({"adapter.safetensors": good}, "only GGUF adapters are supported: convert the adapter to GGUF first"),
        ({"../lora.gguf": good}, "file path must be relative"),
        ({"lora.gguf": "sha256:xyz"}, "invalid digest format"),
    ]
    for adapters, message in cases:
        assert create_error(server, **{"from": CHAT_MODEL, "adapters": adapters}) == (400, message)
    with pytest.raises(ollama.ResponseError):
        client.show("bad-adapter")


def test_herd_create_takes_an_adapter_from_a_modelfile(server, lora, tmp_path):
    from tests.integration.test_cli import herd

    (tmp_path / "lora.gguf").write_bytes(lora.read_bytes())
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {CHAT_MODEL}\nADAPTER ./lora.gguf\n")
    created = herd(server, "create", "cli-lora", "-f", str(modelfile))
    assert created.returncode == 0, created.stderr
    manifest = json.loads((server.models_dir / "manifests/registry.ollama.ai/library/cli-lora/latest").read_text())
    assert "application/vnd.ollama.image.adapter" in [layer["mediaType"] for layer in manifest["layers"]]
    assert herd(server, "rm", "cli-lora").returncode == 0
