"""Quantizing on /api/create: an F16 GGUF becomes Q8_0 or Q4_K_M through llama.cpp's quantizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ollama
import pytest

from herd.core.store.convert import GGUFWriter, convert_bert
from tests.bert_reference import SENTENCES, minilm_dir, model_files, reference_embeddings
from tests.conftest import CHAT_MODEL

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def minilm_f16(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 converted to an F16 GGUF, as a user would upload it."""
    path = tmp_path_factory.mktemp("minilm") / "minilm-f16.gguf"
    convert_bert(model_files(minilm_dir()), path)
    return path


def cosines_to_reference(client, model: str) -> list[float]:
    response = client.embed(model, input=SENTENCES)
    return [
        float(np.asarray(vector) @ reference / np.linalg.norm(vector))
        for vector, reference in zip(response.embeddings, reference_embeddings(SENTENCES), strict=True)
    ]


def temp_files_left(server) -> list[str]:
    return [path.name for path in (server.models_dir / "blobs").glob(".tmp-*")]


def test_an_f16_gguf_is_quantized_to_q8_0_and_still_embeds(client, server, minilm_f16):
    digest = client.create_blob(minilm_f16)
    progress = list(client.create("minilm-q8", files={"model.gguf": digest}, quantize="q8_0", stream=True))

    statuses = [p.status for p in progress]
    assert statuses[0] == "parsing GGUF" and statuses[-1] == "success"
    quantizing = [p for p in progress if p.status == "quantizing F16 model to Q8_0"]
    assert quantizing, statuses
    assert quantizing[0].completed == 0 and quantizing[-1].completed == quantizing[-1].total > 0
    assert [p.completed for p in quantizing] == sorted(p.completed for p in quantizing)
    assert statuses.index("verifying conversion") > statuses.index("quantizing F16 model to Q8_0")
    assert statuses.index("writing manifest") > statuses.index("verifying conversion")

    shown = client.show("minilm-q8")
    assert shown.details.quantization_level == "Q8_0"
    assert shown.details.family == "bert"
    size = next(m.size for m in client.list().models if m.model == "minilm-q8:latest")
    assert size < minilm_f16.stat().st_size * 0.6
    assert min(cosines_to_reference(client, "minilm-q8")) >= 0.99
    assert temp_files_left(server) == []


def test_q4_k_m_falls_back_on_small_rows_and_still_embeds(client, minilm_f16):
    # MiniLM's rows are 384 wide, not a multiple of 256: llama.cpp quantizes those tensors to a
    # fallback type, and the file still reports Q4_K_M, as llama.cpp's own quantizer writes it.
    digest = client.create_blob(minilm_f16)
    progress = list(client.create("minilm-q4", files={"model.gguf": digest}, quantize="Q4_K_M", stream=True))
    assert "quantizing F16 model to Q4_K_M" in [p.status for p in progress]
    assert progress[-1].status == "success"

    assert client.show("minilm-q4").details.quantization_level == "Q4_K_M"
    # Measured at 0.990–0.994 against the numpy reference; Q8_0 is at 0.9996.
    assert min(cosines_to_reference(client, "minilm-q4")) >= 0.98


def test_a_stored_f16_model_is_quantized_from_its_name(client, minilm_f16):
    digest = client.create_blob(minilm_f16)
    list(client.create("minilm-f16", files={"model.gguf": digest}, stream=True))
    assert client.show("minilm-f16").details.quantization_level == "F16"

    progress = list(client.create("minilm-from-q8", from_="minilm-f16", quantize="q8_0", stream=True))
    assert "quantizing F16 model to Q8_0" in [p.status for p in progress]
    assert client.show("minilm-from-q8").details.quantization_level == "Q8_0"
    assert client.show("minilm-f16").details.quantization_level == "F16"
    assert min(cosines_to_reference(client, "minilm-from-q8")) >= 0.99


def test_quantizing_to_the_type_it_already_has_keeps_the_weights(client, minilm_f16):
    digest = client.create_blob(minilm_f16)
    progress = list(client.create("minilm-same", files={"model.gguf": digest}, quantize="f16", stream=True))
    assert not any(p.status.startswith("quantizing") for p in progress)
    assert f"using existing layer {digest}" in [p.status for p in progress]
    assert client.show("minilm-same").details.quantization_level == "F16"


def test_an_already_quantized_model_is_refused(client):
    with pytest.raises(ollama.ResponseError) as raised:
        list(client.create("smollm2-requantized", from_=CHAT_MODEL, quantize="q8_0", stream=True))
    assert raised.value.status_code == 400
    assert raised.value.error == "quantization is only supported for F16, BF16 and F32 models"
    assert "smollm2-requantized" not in [m.model.split(":")[0] for m in client.list().models]


def test_an_unknown_quantization_type_is_refused(client, minilm_f16):
    digest = client.create_blob(minilm_f16)
    with pytest.raises(ollama.ResponseError) as raised:
        client.create("minilm-q9", files={"model.gguf": digest}, quantize="q9_9")
    assert raised.value.status_code == 400
    assert raised.value.error.startswith("unsupported quantization type Q9_9 - supported types are ")
    assert "Q4_K_M" in raised.value.error


def test_a_quantizer_failure_is_a_clear_error_without_paths(client, server, tmp_path):
    # An F16 file llama.cpp cannot load: the quantizer child fails, the server carries on.
    unknown = tmp_path / "unknown-architecture.gguf"
    writer = GGUFWriter()
    writer.add_string("general.architecture", "nonesuch")
    writer.add_uint32("general.file_type", 1)
    writer.write(unknown)
    digest = client.create_blob(unknown)

    with pytest.raises(ollama.ResponseError) as raised:
        client.create("nonesuch-q8", files={"model.gguf": digest}, quantize="q8_0")
    assert raised.value.status_code == 400
    assert raised.value.error == "llama.cpp could not quantize the model to Q8_0"
    assert "/" not in raised.value.error
    assert temp_files_left(server) == []
    assert client.show(CHAT_MODEL).details.quantization_level == "Q4_1"
