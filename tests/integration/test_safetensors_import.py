"""Importing a Hugging Face BERT sentence embedder through /api/create, then embedding with llama.cpp."""

from __future__ import annotations

import numpy as np
import pytest

from tests.bert_reference import SENTENCES, minilm_dir, model_files, reference_embeddings

pytestmark = pytest.mark.integration


def test_a_safetensors_bert_becomes_an_embedding_model(client):
    files = {name: client.create_blob(path) for name, path in model_files(minilm_dir()).items()}
    progress = list(client.create("minilm", files=files, stream=True))
    statuses = [p.status for p in progress]
    assert "converting model" in statuses and statuses[-1] == "success"

    shown = client.show("minilm")
    assert shown.capabilities == ["embedding"]
    assert shown.details.family == "bert"

    response = client.embed("minilm", input=SENTENCES)
    assert len(response.embeddings) == len(SENTENCES)
    for vector, reference in zip(response.embeddings, reference_embeddings(SENTENCES), strict=True):
        vector = np.asarray(vector)
        assert vector.shape == (384,)
        assert abs(np.linalg.norm(vector) - 1) < 1e-3
        assert vector @ reference >= 0.99
