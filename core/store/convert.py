"""Converting a Hugging Face BERT sentence embedder (safetensors + config + tokenizer) into a GGUF.

The output is what llama.cpp's own ``convert_hf_to_gguf.py`` (``BertModel``) writes: architecture
``bert``, its tensor names and metadata, the WordPiece vocabulary in "phantom space" form, F32 for
1-D tensors and the position/token-type tables, F16 for the other 2-D weights.

Everything read here is uploaded by a client, so each header length, offset, dtype and shape is
checked against the file and against config.json before it is used. Error messages never name
files on disk: they may reach an HTTP client.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import numpy as np
import structlog

log = structlog.get_logger(__name__)

MAX_SAFETENSORS_HEADER_BYTES = 8 << 20
MAX_JSON_FILE_BYTES = 32 << 20
GGUF_ALIGNMENT = 32
SUPPORTED_ARCHITECTURES = ("BertModel", "BertForMaskedLM")

# llama.cpp's enum llama_pooling_type.
POOLING_MEAN = 1
POOLING_CLS = 2
POOLING_LAST = 3

# llama.cpp's enum llama_token_type, as tokenizer.ggml.token_type stores it.
TOKEN_TYPE_NORMAL = 1
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_UNUSED = 5

_GGML_F32 = 0
_GGML_F16 = 1
_FILE_TYPE_MOSTLY_F16 = 1
_GGUF_VERSION = 3

_SAFETENSORS_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
# Tensors a sentence embedder carries that llama.cpp's converter drops: the position id buffer,
# the pooler and the masked-LM / next-sentence heads.
_DROPPED = re.compile(r"^(embeddings\.position_ids|pooler\..*|cls\.(predictions|seq_relationship)\..*)$")
_GLOBAL_TENSORS = {
    "embeddings.word_embeddings": "token_embd",
    "embeddings.token_type_embeddings": "token_types",
    "embeddings.position_embeddings": "position_embd",
    "embeddings.LayerNorm": "token_embd_norm",
}
_LAYER_TENSORS = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
_LAYER_NAME = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
# The converter keeps these 2-D tables in F32 whatever the output type.
_F32_TABLES = ("position_embd.weight", "token_types.weight")


class ConversionError(ValueError):
    """The uploaded files cannot be converted; the message is safe to show a client."""


@dataclass(frozen=True)
class SafetensorsTensor:
    """One tensor's entry in a safetensors header, with its data's absolute file offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int
    path: Path


def read_safetensors_header(path: Path) -> dict[str, SafetensorsTensor]:
    """The tensors a safetensors file describes, each checked to lie inside the file."""
    try:
        with open(path, "rb") as file:
            file_size = file.seek(0, 2)
            file.seek(0)
            if file_size < 8:
                raise ConversionError("safetensors file is truncated")
            (header_size,) = struct.unpack("<Q", file.read(8))
            if header_size > MAX_SAFETENSORS_HEADER_BYTES:
                raise ConversionError("safetensors header is larger than 8 MiB")
            if 8 + header_size > file_size:
                raise ConversionError("safetensors file is truncated")
            raw_header = file.read(header_size)
    except OSError as exc:
        log.warning("safetensors_unreadable", error=exc.strerror)
        raise ConversionError("safetensors file cannot be read") from None
    try:
        header = json.loads(raw_header)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConversionError("safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ConversionError("safetensors header is not a JSON object")
    data_start = 8 + header_size
    data_size = file_size - data_start
    tensors: dict[str, SafetensorsTensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _tensor_entry(name, entry, data_start, data_size, path)
    return tensors


def _tensor_entry(name: str, entry: Any, data_start: int, data_size: int, path: Path) -> SafetensorsTensor:
    label = repr(name[:64])
    if not isinstance(entry, dict):
        raise ConversionError(f"safetensors tensor {label} has no description")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise ConversionError(f"safetensors tensor {label} has no dtype")
    if not (isinstance(shape, list) and len(shape) <= 4 and all(_is_count(dim) for dim in shape)):
        raise ConversionError(f"safetensors tensor {label} has an invalid shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise ConversionError(f"safetensors tensor {label} has invalid data offsets")
    begin, end = offsets
    if begin > end or end > data_size:
        raise ConversionError(f"safetensors tensor {label} lies outside the file")
    item_size = _SAFETENSORS_DTYPES[dtype].itemsize if dtype in _SAFETENSORS_DTYPES else None
    # Dropped tensors may have any dtype (position_ids is I64); a tensor we convert is checked again.
    if item_size is not None and math.prod(shape) * item_size != end - begin:
        raise ConversionError(f"safetensors tensor {label} has a size that does not match its shape")
    return SafetensorsTensor(name, dtype, tuple(shape), data_start + begin, data_start + end, path)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62


def load_tensor(tensor: SafetensorsTensor) -> np.ndarray:
    """The tensor's data as float32 in its safetensors shape."""
    dtype = _SAFETENSORS_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise ConversionError(f"tensor {tensor.name[:64]!r} has unsupported dtype {tensor.dtype[:16]!r}")
    count = math.prod(tensor.shape)
    try:
        with open(tensor.path, "rb") as file:
            file.seek(tensor.start)
            data = np.fromfile(file, dtype=dtype, count=count)
    except OSError as exc:
        log.warning("safetensors_unreadable", error=exc.strerror)
        raise ConversionError("safetensors file cannot be read") from None
    if data.size != count:
        raise ConversionError("safetensors file is truncated")
    if tensor.dtype == "BF16":
        # bfloat16 is the top half of a float32.
        data = (data.astype(np.uint32) << 16).view(np.float32)
    return data.astype(np.float32, copy=False).reshape(tensor.shape)


@dataclass(frozen=True)
class BertConfig:
    """The config.json fields the GGUF needs, checked."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_json(cls, config: Mapping[str, Any]) -> "BertConfig":
        architectures = config.get("architectures") or []
        if not isinstance(architectures, list) or not architectures:
            raise ConversionError("config.json names no architecture")
        if not any(arch in SUPPORTED_ARCHITECTURES for arch in architectures):
            raise ConversionError(f"unsupported architecture: {str(architectures[0])[:64]}")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ConversionError("only BERT models with GELU activation are supported")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ConversionError("only BERT models with absolute position embeddings are supported")
        values = {
            key: config.get(key)
            for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                        "num_attention_heads", "max_position_embeddings")
        }
        for key, value in values.items():
            if not (isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 24):
                raise ConversionError(f"config.json has an invalid {key}")
        if values["hidden_size"] % values["num_attention_heads"]:
            raise ConversionError("config.json hidden_size is not a multiple of num_attention_heads")
        type_vocab_size = config.get("type_vocab_size", 2)
        eps = config.get("layer_norm_eps", 1e-12)
        if not (isinstance(type_vocab_size, int) and 0 < type_vocab_size <= 1024):
            raise ConversionError("config.json has an invalid type_vocab_size")
        if not (isinstance(eps, (int, float)) and 0 < eps < 1):
            raise ConversionError("config.json has an invalid layer_norm_eps")
        return cls(**values, type_vocab_size=type_vocab_size, layer_norm_eps=float(eps))

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """GGUF tensor name → the safetensors (row-major) shape this config requires."""
        hidden, ff = self.hidden_size, self.intermediate_size
        shapes: dict[str, tuple[int, ...]] = {
            "token_embd.weight": (self.vocab_size, hidden),
            "token_types.weight": (self.type_vocab_size, hidden),
            "position_embd.weight": (self.max_position_embeddings, hidden),
            "token_embd_norm.weight": (hidden,),
            "token_embd_norm.bias": (hidden,),
        }
        for layer in range(self.num_hidden_layers):
            for name, shape in (
                ("attn_q", (hidden, hidden)), ("attn_k", (hidden, hidden)), ("attn_v", (hidden, hidden)),
                ("attn_output", (hidden, hidden)), ("attn_output_norm", None),
                ("ffn_up", (ff, hidden)), ("ffn_down", (hidden, ff)), ("layer_output_norm", None),
            ):
                out_rows = shape[0] if shape else hidden
                shapes[f"blk.{layer}.{name}.weight"] = shape or (hidden,)
                shapes[f"blk.{layer}.{name}.bias"] = (out_rows,)
        return shapes


@dataclass(frozen=True)
class Vocabulary:
    """The WordPiece vocabulary as the GGUF stores it, and the tokenizer settings llama.cpp reads."""

    tokens: list[str]
    token_types: list[int]
    special_ids: dict[str, int]  # bos, eos, unknown, seperator, padding, mask (llama.cpp's key names)
    lowercase: bool | None


def bert_vocabulary(files: Mapping[str, Path], vocab_size: int) -> Vocabulary:
    """The vocabulary from tokenizer.json (WordPiece) or vocab.txt, padded to ``vocab_size`` as the converter does."""
    tokenizer = _json_file(files, "tokenizer.json") if "tokenizer.json" in files else {}
    tokenizer_config = {}
    # special_tokens_map.json and tokenizer_config.json both name the special tokens; the latter wins.
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if name in files and isinstance(content := _json_file(files, name), dict):
            tokenizer_config.update(content)
    model = tokenizer.get("model") if isinstance(tokenizer.get("model"), dict) else {}
    by_token: dict[str, int]
    if model.get("type") == "WordPiece" and isinstance(model.get("vocab"), dict):
        by_token = model["vocab"]
    elif "vocab.txt" in files:
        by_token = {}
        for index, line in enumerate(_read_limited(files["vocab.txt"]).decode("utf-8", "replace").splitlines()):
            by_token.setdefault(line, index)
    else:
        raise ConversionError("a BERT model needs tokenizer.json (WordPiece) or vocab.txt")
    by_id: dict[int, str] = {}
    for token, token_id in by_token.items():
        if not (isinstance(token_id, int) and 0 <= token_id < vocab_size):
            raise ConversionError("tokenizer has a token id outside config.json vocab_size")
        by_id[token_id] = token
    special = {
        entry.get("content")
        for entry in tokenizer.get("added_tokens", [])
        if isinstance(entry, dict) and entry.get("special")
    }
    named = {
        kind: _special_text(tokenizer_config.get(f"{kind}_token"))
        for kind in ("cls", "sep", "unk", "pad", "mask", "bos", "eos")
    }
    special |= {text for text in named.values() if text}

    tokens: list[str] = []
    token_types: list[int] = []
    for token_id in range(vocab_size):
        token = by_id.get(token_id)
        if token is None:
            tokens.append(f"[PAD{token_id}]")
            token_types.append(TOKEN_TYPE_UNUSED)
        elif token in special:
            tokens.append(token)
            token_types.append(TOKEN_TYPE_CONTROL)
        else:
            # llama.cpp's WPM tokenizer marks word starts with ▁ instead of continuations with ##.
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            token_types.append(TOKEN_TYPE_NORMAL)

    # A BERT tokenizer's [CLS] plays BOS and [SEP] plays EOS, as the converter resolves them.
    texts = {
        "bos": named["bos"] or named["cls"] or "[CLS]",
        "eos": named["eos"] or named["sep"] or "[SEP]",
        "unknown": named["unk"] or "[UNK]",
        "seperator": named["sep"] or "[SEP]",
        "padding": named["pad"] or "[PAD]",
        "mask": named["mask"] or "[MASK]",
    }
    special_ids = {kind: by_token[text] for kind, text in texts.items() if text in by_token}
    lowercase = _lowercase(tokenizer, tokenizer_config)
    return Vocabulary(tokens=tokens, token_types=token_types, special_ids=special_ids, lowercase=lowercase)


def _special_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _lowercase(tokenizer: Mapping[str, Any], tokenizer_config: Mapping[str, Any]) -> bool | None:
    normalizer = tokenizer.get("normalizer")
    normalizers = [normalizer] if isinstance(normalizer, dict) else []
    if normalizers and normalizers[0].get("type") == "Sequence":
        normalizers = [n for n in normalizers[0].get("normalizers", []) if isinstance(n, dict)]
    for entry in normalizers:
        if entry.get("type") == "Lowercase":
            return True
        if entry.get("type") == "BertNormalizer" and isinstance(entry.get("lowercase"), bool):
            return entry["lowercase"]
    do_lower_case = tokenizer_config.get("do_lower_case")
    return do_lower_case if isinstance(do_lower_case, bool) else None


def pooling_type(files: Mapping[str, Path]) -> int | None:
    """llama.cpp's pooling type from the sentence-transformers Pooling module, None without one."""
    pooling_dir = "1_Pooling"
    if "modules.json" in files:
        modules = _json_file(files, "modules.json")
        paths = [
            module.get("path")
            for module in (modules if isinstance(modules, list) else [])
            if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling")
        ]
        if not paths or not isinstance(paths[0], str):
            return None
        pooling_dir = paths[0]
    config_name = f"{pooling_dir}/config.json" if pooling_dir else "config.json"
    if config_name not in files:
        return None
    pooling = _json_file(files, config_name)
    if not isinstance(pooling, dict):
        raise ConversionError("pooling config is not a JSON object")
    if pooling.get("pooling_mode_mean_tokens"):
        return POOLING_MEAN
    if pooling.get("pooling_mode_cls_token"):
        return POOLING_CLS
    if pooling.get("pooling_mode_lasttoken"):
        return POOLING_LAST
    mode = {"mean": POOLING_MEAN, "cls": POOLING_CLS, "lasttoken": POOLING_LAST}.get(pooling.get("pooling_mode"))
    if mode is None:
        raise ConversionError("only mean, cls and last-token pooling are supported")
    return mode


def convert_bert(files: Mapping[str, Path], output: Path) -> None:
    """Write the GGUF for the Hugging Face model whose files are ``files`` (relative name → path)."""
    if "config.json" not in files:
        raise ConversionError("config.json is missing")
    config_json = _json_file(files, "config.json")
    if not isinstance(config_json, dict):
        raise ConversionError("config.json is not a JSON object")
    config = BertConfig.from_json(config_json)
    tensors = _mapped_tensors(files, config)
    vocabulary = bert_vocabulary(files, config.vocab_size)
    pooling = pooling_type(files)

    writer = GGUFWriter()
    writer.add_string("general.architecture", "bert")
    writer.add_uint32("general.file_type", _FILE_TYPE_MOSTLY_F16)
    writer.add_uint32("general.quantization_version", 2)
    writer.add_uint32("bert.block_count", config.num_hidden_layers)
    writer.add_uint32("bert.context_length", config.max_position_embeddings)
    writer.add_uint32("bert.embedding_length", config.hidden_size)
    writer.add_uint32("bert.feed_forward_length", config.intermediate_size)
    writer.add_uint32("bert.attention.head_count", config.num_attention_heads)
    writer.add_float32("bert.attention.layer_norm_epsilon", config.layer_norm_eps)
    writer.add_bool("bert.attention.causal", False)
    if pooling is not None:
        writer.add_uint32("bert.pooling_type", pooling)
    writer.add_uint32("tokenizer.ggml.token_type_count", config.type_vocab_size)
    writer.add_string("tokenizer.ggml.model", "bert")
    # llama.cpp ignores the pre-tokenizer name for WordPiece vocabularies.
    writer.add_string("tokenizer.ggml.pre", "default")
    writer.add_string_array("tokenizer.ggml.tokens", vocabulary.tokens)
    writer.add_int32_array("tokenizer.ggml.token_type", vocabulary.token_types)
    for kind, token_id in vocabulary.special_ids.items():
        writer.add_uint32(f"tokenizer.ggml.{kind}_token_id", token_id)
    # [CLS] text [SEP]: BOS and EOS added, no separate separator (the converter's reading of BERT's post-processor).
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_bool("tokenizer.ggml.add_eos_token", True)
    writer.add_bool("tokenizer.ggml.add_sep_token", False)
    if vocabulary.lowercase is not None:
        writer.add_bool("tokenizer.ggml.normalizer.lowercase", vocabulary.lowercase)
    for name, tensor in tensors.items():
        keep_f32 = len(tensor.shape) == 1 or name in _F32_TABLES
        writer.add_tensor(name, tensor, _GGML_F32 if keep_f32 else _GGML_F16)
    writer.write(output)
    log.info("bert_converted", layers=config.num_hidden_layers, tensors=len(tensors), pooling=pooling)


def _mapped_tensors(files: Mapping[str, Path], config: BertConfig) -> dict[str, SafetensorsTensor]:
    """GGUF name → safetensors tensor, every expected tensor present with the shape config requires."""
    # Only top-level shards hold the transformer; sentence-transformers modules (2_Dense/…) are not part of it.
    shard_names = sorted(name for name in files if name.lower().endswith(".safetensors") and "/" not in name)
    if not shard_names:
        raise ConversionError("no safetensors files provided")
    mapped: dict[str, SafetensorsTensor] = {}
    for shard_name in shard_names:
        for hf_name, tensor in read_safetensors_header(files[shard_name]).items():
            gguf_name = gguf_tensor_name(hf_name)
            if gguf_name is None:
                continue
            if gguf_name in mapped:
                raise ConversionError(f"tensor {hf_name[:64]!r} appears twice")
            mapped[gguf_name] = tensor
    expected = config.expected_shapes()
    unexpected = sorted(set(mapped) - set(expected))
    if unexpected:
        raise ConversionError(f"unexpected tensor {unexpected[0][:64]!r} for a BERT model of this config")
    for name, shape in expected.items():
        tensor = mapped.get(name)
        if tensor is None:
            raise ConversionError(f"tensor {name!r} is missing")
        if tensor.shape != shape:
            raise ConversionError(f"tensor {name!r} has shape {list(tensor.shape)}, config.json requires {list(shape)}")
        if tensor.dtype not in _SAFETENSORS_DTYPES:
            raise ConversionError(f"tensor {name!r} has unsupported dtype {tensor.dtype[:16]!r}")
    return {name: mapped[name] for name in expected}


def gguf_tensor_name(hf_name: str) -> str | None:
    """llama.cpp's name for a Hugging Face BERT tensor; None for tensors the converter drops.

    Names neither mapped nor dropped come back unchanged, so the shape check reports them.
    """
    name = hf_name.removeprefix("bert.")
    if name.endswith(".gamma"):
        name = name[: -len(".gamma")] + ".weight"
    elif name.endswith(".beta"):
        name = name[: -len(".beta")] + ".bias"
    if _DROPPED.match(name):
        return None
    base, _, suffix = name.rpartition(".")
    if base in _GLOBAL_TENSORS and suffix in ("weight", "bias"):
        return f"{_GLOBAL_TENSORS[base]}.{suffix}"
    match = _LAYER_NAME.match(name)
    if match and match.group(2) in _LAYER_TENSORS:
        return f"blk.{int(match.group(1))}.{_LAYER_TENSORS[match.group(2)]}.{match.group(3)}"
    return hf_name


def _json_file(files: Mapping[str, Path], name: str) -> Any:
    try:
        return json.loads(_read_limited(files[name]))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConversionError(f"{name} is not valid JSON") from None


def _read_limited(path: Path) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_JSON_FILE_BYTES + 1)
    except OSError as exc:
        log.warning("model_file_unreadable", error=exc.strerror)
        raise ConversionError("a model file cannot be read") from None
    if len(data) > MAX_JSON_FILE_BYTES:
        raise ConversionError("a tokenizer or config file is larger than 32 MiB")
    return data


class GGUFWriter:
    """A GGUF v3 writer for metadata and F32/F16 tensors converted from safetensors as they are written."""

    _UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY = 4, 5, 6, 7, 8, 9

    def __init__(self) -> None:
        self._metadata: list[bytes] = []
        self._tensors: list[tuple[str, SafetensorsTensor, int]] = []

    def add_uint32(self, key: str, value: int) -> None:
        self._add(key, self._UINT32, struct.pack("<I", value))

    def add_float32(self, key: str, value: float) -> None:
        self._add(key, self._FLOAT32, struct.pack("<f", value))

    def add_bool(self, key: str, value: bool) -> None:
        self._add(key, self._BOOL, struct.pack("<?", value))

    def add_string(self, key: str, value: str) -> None:
        self._add(key, self._STRING, _gguf_string(value))

    def add_string_array(self, key: str, values: list[str]) -> None:
        body = b"".join(_gguf_string(value) for value in values)
        self._add(key, self._ARRAY, struct.pack("<IQ", self._STRING, len(values)) + body)

    def add_int32_array(self, key: str, values: list[int]) -> None:
        body = np.asarray(values, dtype="<i4").tobytes()
        self._add(key, self._ARRAY, struct.pack("<IQ", self._INT32, len(values)) + body)

    def add_tensor(self, name: str, source: SafetensorsTensor, ggml_type: int) -> None:
        self._tensors.append((name, source, ggml_type))

    def _add(self, key: str, value_type: int, value: bytes) -> None:
        self._metadata.append(_gguf_string(key) + struct.pack("<I", value_type) + value)

    def write(self, path: Path) -> None:
        with open(path, "wb") as file:
            file.write(b"GGUF" + struct.pack("<IQQ", _GGUF_VERSION, len(self._tensors), len(self._metadata)))
            file.writelines(self._metadata)
            offset = 0
            for name, source, ggml_type in self._tensors:
                # ggml lists dimensions innermost first: a (rows, columns) matrix is [columns, rows].
                dims = source.shape[::-1]
                file.write(_gguf_string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, ggml_type, offset))
                offset = _align(offset + _tensor_bytes(source, ggml_type))
            _pad(file)
            for _, source, ggml_type in self._tensors:
                data = load_tensor(source).astype("<f4" if ggml_type == _GGML_F32 else "<f2")
                file.write(data.tobytes())
                _pad(file)


def _tensor_bytes(source: SafetensorsTensor, ggml_type: int) -> int:
    return math.prod(source.shape) * (4 if ggml_type == _GGML_F32 else 2)


def _gguf_string(value: str) -> bytes:
    encoded = value.encode("utf-8")
    return struct.pack("<Q", len(encoded)) + encoded


def _align(offset: int) -> int:
    return (offset + GGUF_ALIGNMENT - 1) // GGUF_ALIGNMENT * GGUF_ALIGNMENT


def _pad(file: BinaryIO) -> None:
    position = file.tell()
    file.write(b"\0" * (_align(position) - position))
