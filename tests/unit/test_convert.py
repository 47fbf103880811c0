"""safetensors → GGUF conversion of a BERT sentence embedder, checked against a numpy forward pass."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from herd.core.store.convert import ConversionError, convert_bert, read_safetensors_header
from herd.core.store.create import CreateError, CreateSpec, create_model
from herd.core.store.gguf import read_gguf
from herd.core.store.store import ModelStore
from tests.bert_reference import (
    SENTENCES,
    WordPieceTokenizer,
    bert_sentence_embedding,
    minilm_dir,
    model_files,
    reference_embeddings,
)

# ---------------------------------------------------------------- the converted GGUF


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("convert") / "minilm.gguf"
    convert_bert(model_files(minilm_dir()), output)
    return output


def gguf_tensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a GGUF we wrote, as numpy arrays in row-major (Hugging Face) shape."""
    info = read_gguf(path)
    data = path.read_bytes()
    offset = info.data_offset
    tensors = {}
    for tensor in info.tensors:
        dtype = {"F32": "<f4", "F16": "<f2"}[tensor.type_name]
        count = tensor.element_count
        tensors[tensor.name] = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(tensor.shape[::-1])
        offset += -(-count * np.dtype(dtype).itemsize // info.alignment) * info.alignment
    return tensors


def test_converted_minilm_is_a_bert_embedding_gguf(converted):
    info = read_gguf(converted)
    meta = info.metadata
    assert info.version == 3 and info.architecture == "bert"
    assert meta["bert.embedding_length"] == 384
    assert meta["bert.block_count"] == 6
    assert meta["bert.context_length"] == 512
    assert meta["bert.feed_forward_length"] == 1536
    assert meta["bert.attention.head_count"] == 12
    assert meta["bert.attention.layer_norm_epsilon"] == 1e-12
    assert meta["bert.attention.causal"] is False
    assert meta["bert.pooling_type"] == 1  # mean, from 1_Pooling/config.json
    assert meta["tokenizer.ggml.model"] == "bert"
    assert len(meta["tokenizer.ggml.tokens"]) == len(meta["tokenizer.ggml.token_type"]) == 30522
    assert meta["tokenizer.ggml.tokens"][101] == "[CLS]" and meta["tokenizer.ggml.token_type"][101] == 3
    # WordPiece continuations lose ##, word starts gain ▁, as llama.cpp's WPM tokenizer expects.
    vocab = (minilm_dir() / "vocab.txt").read_text().splitlines()
    assert meta["tokenizer.ggml.tokens"][vocab.index("##ization")] == "ization"
    assert meta["tokenizer.ggml.tokens"][vocab.index("hello")] == "\u2581hello"
    special_ids = {"bos": 101, "eos": 102, "unknown": 100, "seperator": 102, "padding": 0, "mask": 103}
    assert {key: meta[f"tokenizer.ggml.{key}_token_id"] for key in special_ids} == special_ids
    assert meta["tokenizer.ggml.add_bos_token"] is True and meta["tokenizer.ggml.add_eos_token"] is True
    assert meta["tokenizer.ggml.normalizer.lowercase"] is True
    types = {tensor.name: (tensor.type_name, tensor.shape) for tensor in info.tensors}
    assert len(types) == 5 + 6 * 16
    assert types["token_embd.weight"] == ("F16", (384, 30522))
    assert types["position_embd.weight"] == ("F32", (384, 512))
    assert types["blk.5.ffn_up.weight"] == ("F16", (384, 1536))
    assert types["blk.0.attn_output_norm.bias"] == ("F32", (384,))


def test_reference_tokenizer_splits_words_as_bert_does():
    tokenizer = WordPieceTokenizer(minilm_dir())
    vocab = {i: t for t, i in tokenizer.vocab.items()}
    ids = tokenizer.encode("Unbelievable tokenization, Héllo!")
    assert [vocab[i] for i in ids] == ["[CLS]", "unbelievable", "token", "##ization", ",", "hello", "!", "[SEP]"]


def test_reference_embeddings_rank_similar_sentences_closest():
    eating, bread, movie = reference_embeddings(SENTENCES)
    assert eating.shape == (384,) and abs(np.linalg.norm(eating) - 1) < 1e-9
    assert eating @ bread > 0.6 > eating @ movie


def test_gguf_weights_give_the_reference_embeddings(converted):
    """The converted tensors (F16 where the converter uses F16) reproduce the model's output."""
    root = minilm_dir()
    config = json.loads((root / "config.json").read_text())
    tensors = gguf_tensors(converted)
    names = {"token_embd": "embeddings.word_embeddings", "token_types": "embeddings.token_type_embeddings",
             "position_embd": "embeddings.position_embeddings", "token_embd_norm": "embeddings.LayerNorm"}
    layer_names = {"attn_q": "attention.self.query", "attn_k": "attention.self.key", "attn_v": "attention.self.value",
                   "attn_output": "attention.output.dense", "attn_output_norm": "attention.output.LayerNorm",
                   "ffn_up": "intermediate.dense", "ffn_down": "output.dense", "layer_output_norm": "output.LayerNorm"}
    weights = {}
    for name, value in tensors.items():
        parts = name.split(".")
        if parts[0] == "blk":
            weights[f"encoder.layer.{parts[1]}.{layer_names[parts[2]]}.{parts[3]}"] = value
        else:
            weights[f"{names[parts[0]]}.{parts[1]}"] = value
    tokenizer = WordPieceTokenizer(root)
    for text, reference in zip(SENTENCES, reference_embeddings(SENTENCES), strict=True):
        vector = bert_sentence_embedding(weights, config, tokenizer.encode(text))
        assert vector @ reference > 0.999


# ---------------------------------------------------------------- bad inputs


def write_safetensors(path: Path, header: dict | bytes, data: bytes = b"") -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x02", "safetensors file is truncated"),
        (struct.pack("<Q", 1 << 40) + b"{}", "safetensors header is larger than 8 MiB"),
        (struct.pack("<Q", 100) + b"{}", "safetensors file is truncated"),
        (struct.pack("<Q", 5) + b"{nope", "safetensors header is not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "safetensors header is not a JSON object"),
    ],
)
def test_malformed_safetensors_headers_are_rejected(tmp_path, content, message):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(ConversionError, match=f"^{message}$"):
        read_safetensors_header(path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}, "lies outside the file"),
        ({"dtype": "F32", "shape": [4], "data_offsets": [12, 8]}, "lies outside the file"),
        ({"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}, "invalid data offsets"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}, "size that does not match its shape"),
        ({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}, "invalid shape"),
        ({"dtype": "F32", "shape": [4]}, "invalid data offsets"),
    ],
)
def test_tensor_entries_outside_the_file_are_rejected(tmp_path, entry, message):
    path = write_safetensors(tmp_path / "model.safetensors", {"w": entry}, b"\0" * 16)
    with pytest.raises(ConversionError, match=message):
        read_safetensors_header(path)


def test_header_offsets_are_read_relative_to_the_data(tmp_path):
    header = {"__metadata__": {"format": "pt"}, "w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [8, 16]}}
    path = write_safetensors(tmp_path / "model.safetensors", header, b"\0" * 16)
    (tensor,) = read_safetensors_header(path).values()
    assert tensor.shape == (2, 2) and tensor.end - tensor.start == 8
    assert tensor.start == path.stat().st_size - 8


@pytest.fixture
def model_copy(tmp_path) -> Path:
    """A copy of MiniLM's directory whose config and weights a test may spoil."""
    root = tmp_path / "model"
    shutil.copytree(minilm_dir(), root)
    return root


def edit_config(root: Path, **changes) -> None:
    config = json.loads((root / "config.json").read_text())
    config.update(changes)
    (root / "config.json").write_text(json.dumps(config))


def test_other_architectures_are_refused(model_copy, tmp_path):
    edit_config(model_copy, architectures=["LlamaForCausalLM"], model_type="llama")
    with pytest.raises(ConversionError, match="^unsupported architecture: LlamaForCausalLM$"):
        convert_bert(model_files(model_copy), tmp_path / "out.gguf")


def test_shapes_that_contradict_the_config_are_refused(model_copy, tmp_path):
    edit_config(model_copy, hidden_size=768, num_attention_heads=12)
    with pytest.raises(ConversionError, match=r"has shape \[30522, 384\], config.json requires \[30522, 768\]"):
        convert_bert(model_files(model_copy), tmp_path / "out.gguf")


def test_missing_layers_are_refused(model_copy, tmp_path):
    edit_config(model_copy, num_hidden_layers=7)
    with pytest.raises(ConversionError, match="^tensor 'blk.6.attn_q.weight' is missing$"):
        convert_bert(model_files(model_copy), tmp_path / "out.gguf")


def test_unknown_dtypes_are_refused(tmp_path):
    root = tmp_path / "model"
    root.mkdir()
    for name in ("config.json", "vocab.txt"):
        shutil.copy(minilm_dir() / name, root / name)
    edit_config(root, vocab_size=4, hidden_size=2, intermediate_size=2, num_hidden_layers=1, num_attention_heads=1,
                max_position_embeddings=2)
    header = {"embeddings.word_embeddings.weight": {"dtype": "F8_E4M3", "shape": [4, 2], "data_offsets": [0, 8]}}
    write_safetensors(root / "model.safetensors", header, b"\0" * 8)
    with pytest.raises(ConversionError, match="unsupported dtype 'F8_E4M3'"):
        convert_bert(model_files(root), tmp_path / "out.gguf")


# ---------------------------------------------------------------- create


def upload(store: ModelStore, root: Path) -> dict[str, str]:
    files = {}
    for name, path in model_files(root).items():
        digest, _ = store.add_blob_bytes(path.read_bytes())
        files[name] = digest
    return files


def test_create_converts_an_uploaded_model_directory(tmp_path):
    store = ModelStore(tmp_path / "models")
    files = upload(store, minilm_dir())
    statuses = []
    create_model(store, CreateSpec(name="minilm", files=files), lambda status, digest: statuses.append(status),
                 check_template=lambda template: None)
    assert statuses[0] == "converting model" and statuses[-2:] == ["writing manifest", "success"]
    model = store.get("minilm")
    assert model.capabilities(set()) == ["embedding"]
    assert model.embedding_length == 384 and model.details().family == "bert"
    assert [p.name for p in store.blobs_dir.iterdir() if p.name.startswith(".")] == []


def test_create_reports_a_missing_blob(tmp_path):
    store = ModelStore(tmp_path / "models")
    files = upload(store, minilm_dir())
    missing = "sha256:" + hashlib.sha256(b"absent").hexdigest()
    files["tokenizer.json"] = missing
    with pytest.raises(CreateError, match=f'^blob "{missing}" not found$'):
        create_model(store, CreateSpec(name="minilm", files=files), lambda *_: None, check_template=lambda t: None)


def test_create_passes_conversion_errors_to_the_client(tmp_path, model_copy):
    edit_config(model_copy, architectures=["GPT2LMHeadModel"])
    store = ModelStore(tmp_path / "models")
    with pytest.raises(CreateError, match="^unsupported architecture: GPT2LMHeadModel$"):
        create_model(store, CreateSpec(name="x", files=upload(store, model_copy)), lambda *_: None,
                     check_template=lambda t: None)
    assert store.list_models() == []
