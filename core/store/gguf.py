"""A bounded, pure-Python reader for GGUF headers: metadata and tensor descriptions.

Every count, length and offset in a GGUF header is attacker-controlled (Ollama and llama.cpp have
had CVEs for huge counts, zero alignment and tensors past the end of the file), so each one is
checked against the bytes the file really has before anything is allocated or read. Nothing here
reads tensor data. Error messages never name the file: they may reach an HTTP client.
"""

from __future__ import annotations

import math
import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import structlog

log = structlog.get_logger(__name__)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_STRING_BYTES = 16 << 20
MAX_ARRAY_ELEMENTS = 64 << 20
MAX_TENSOR_DIMS = 4
MAX_ALIGNMENT = 1 << 20
DEFAULT_ALIGNMENT = 32
# llama.cpp's own limits, past which its loader has written or read out of bounds.
MAX_BLOCK_COUNT = 512  # LLAMA_MAX_LAYERS
MAX_TENSOR_NAME_BYTES = 63  # GGML_MAX_NAME less the terminator
MAX_TOKEN_BYTES = 64 << 10

_HEADER_BYTES = 24  # magic, version, tensor count, metadata count
# Smallest possible records, used to reject counts the file cannot hold before looping over them.
_MIN_KV_BYTES = 8 + 1 + 4 + 1  # key length, a one-byte key, value type, a one-byte value
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8  # name length, dims, type, offset
# Large sequential reads: the gemma vocabulary alone is 262k strings.
_READ_CHUNK = 4 << 20

_TYPE_STRING = 8
_TYPE_ARRAY = 9
_TYPE_UINT32 = 4
_TYPE_INT32 = 5
_SCALAR_FORMATS = {
    0: "B",  # uint8
    1: "b",  # int8
    2: "H",  # uint16
    3: "h",  # int16
    4: "I",  # uint32
    5: "i",  # int32
    6: "f",  # float32
    7: "?",  # bool
    10: "Q",  # uint64
    11: "q",  # int64
    12: "d",  # float64
}
_FLOAT32 = 6

_TOKENS_KEY = "tokenizer.ggml.tokens"
# Arrays llama.cpp reads one entry per token, with the element type it reads them as: a narrower
# type makes it read past the array.
_PER_TOKEN_ARRAYS = {"tokenizer.ggml.scores": _FLOAT32, "tokenizer.ggml.token_type": _TYPE_INT32}
_TOKEN_TYPE_BYTE = 6  # llama_token_type LLAMA_TOKEN_TYPE_BYTE
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")

# ggml tensor types: id → (name, elements per block, bytes per block), as Ollama's fs/ggml names
# them. Ids that ggml removed (4, 5, 31–33, 36–38) are absent, so such tensors are rejected.
_TENSOR_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}

# general.file_type (llama_ftype) → the quantization name Ollama shows.
_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class GGUFError(ValueError):
    """The file is not a GGUF model this server accepts. The message never names the file."""


class NotGGUFError(GGUFError):
    """The file does not even start as a GGUF file (no ``GGUF`` magic)."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's description from the header."""

    name: str
    type_name: str
    shape: tuple[int, ...]

    @property
    def element_count(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says about a model."""

    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    alignment: int
    data_offset: int

    @property
    def architecture(self) -> str:
        """``general.architecture``, or ``"unknown"`` as Ollama reports a file without one."""
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) and value else "unknown"

    def architecture_value(self, key: str) -> Any:
        """The value of ``<architecture>.<key>``, e.g. ``context_length``; None when absent."""
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def parameter_count(self) -> int:
        """Sum of the tensors' element counts, as Ollama computes ``general.parameter_count``."""
        return sum(tensor.element_count for tensor in self.tensors)

    @property
    def file_type_name(self) -> str:
        """``general.file_type`` as Ollama names it (``Q4_K_M``, ``F16``…), else ``"unknown"``."""
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, bool) or not isinstance(file_type, int):
            return "unknown"
        return _FILE_TYPES.get(file_type, "unknown")


def read_gguf(path: Path | str) -> GGUFInfo:
    """Read and check a GGUF file's header; raises GGUFError for anything malformed or unreadable."""
    try:
        file_stat = os.stat(path)
        # A FIFO or a device (/dev/random) would block or never end.
        if not stat.S_ISREG(file_stat.st_mode):
            raise GGUFError("model file is not a regular file")
        with open(path, "rb") as file:
            return _Parser(file, file_stat.st_size).parse()
    except OSError as exc:
        log.warning("gguf_unreadable", error=str(exc))
        raise GGUFError("model file cannot be read") from exc


def human_number(n: int) -> str:
    """A parameter count as Ollama's ``format.HumanNumber`` writes it: ``134.52M``, ``8B``, ``1.5B``."""
    if n >= 1_000_000_000:
        number = float(n) / 1_000_000_000
        return f"{number:.0f}B" if number == math.floor(number) else f"{number:.1f}B"
    if n >= 1_000_000:
        number = float(n) / 1_000_000
        return f"{number:.0f}M" if number == math.floor(number) else f"{number:.2f}M"
    if n >= 1_000:
        return f"{float(n) / 1_000:.0f}K"
    return str(n)


class _Parser:
    """Walks the header over a sliding buffer; every read is bounded by the bytes left in the file."""

    def __init__(self, file: BinaryIO, file_size: int) -> None:
        self._file = file
        self._file_size = file_size
        self._buf = b""
        self._pos = 0
        self._buf_start = 0  # file offset of self._buf[0]

    @property
    def _offset(self) -> int:
        return self._buf_start + self._pos

    def _remaining(self) -> int:
        return self._file_size - self._offset

    def _fill(self, n: int) -> None:
        """Make n bytes available at self._pos, reading ahead in large chunks."""
        available = len(self._buf) - self._pos
        if available >= n:
            return
        if n > self._remaining():
            raise GGUFError("model file is truncated")
        chunks = [self._buf[self._pos :]]
        want = max(n - available, _READ_CHUNK)
        while available < n:
            chunk = self._file.read(want)
            if not chunk:
                raise GGUFError("model file is truncated")
            chunks.append(chunk)
            available += len(chunk)
            want -= len(chunk)
        self._buf_start += self._pos
        self._buf = b"".join(chunks)
        self._pos = 0

    def _bytes(self, n: int) -> bytes:
        self._fill(n)
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data

    def _u32(self) -> int:
        self._fill(4)
        (value,) = _U32.unpack_from(self._buf, self._pos)
        self._pos += 4
        return value

    def _u64(self) -> int:
        self._fill(8)
        (value,) = _U64.unpack_from(self._buf, self._pos)
        self._pos += 8
        return value

    def _string_bytes(self) -> bytes:
        length = self._u64()
        if length > MAX_STRING_BYTES:
            raise GGUFError("model file has a string longer than 16 MiB")
        return self._bytes(length)

    def _string(self) -> str:
        return self._string_bytes().decode("utf-8", "replace")

    def parse(self) -> GGUFInfo:
        if self._file_size < len(GGUF_MAGIC) or self._bytes(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise NotGGUFError("not a GGUF file")
        if self._file_size < _HEADER_BYTES:
            raise GGUFError("model file is truncated")
        version = self._u32()
        if version & 0xFFFF == 0 and version != 0:
            raise GGUFError("GGUF file has the wrong byte order")
        if version not in SUPPORTED_VERSIONS:
            raise GGUFError(f"unsupported GGUF version {version}")
        tensor_count = self._u64()
        kv_count = self._u64()
        if kv_count * _MIN_KV_BYTES + tensor_count * _MIN_TENSOR_BYTES > self._remaining():
            raise GGUFError("model file declares more entries than it holds")

        metadata: dict[str, Any] = {}
        array_types: dict[str, int] = {}
        for _ in range(kv_count):
            key, value, element_type = self._key_value()
            if key in metadata:
                raise GGUFError(f"duplicate metadata key {_label(key)}")
            metadata[key] = value
            if element_type is not None:
                array_types[key] = element_type
        alignment = self._alignment(metadata)
        _check_llama_limits(metadata, array_types)

        tensors: list[TensorInfo] = []
        extents: list[tuple[int, int]] = []
        for _ in range(tensor_count):
            tensor, offset, size = self._tensor()
            tensors.append(tensor)
            extents.append((offset, size))
        if len({tensor.name for tensor in tensors}) != len(tensors):
            raise GGUFError("model file has duplicate tensor names")

        data_offset = _align(self._offset, alignment)
        expected_offset = 0
        for tensor, (offset, size) in zip(tensors, extents, strict=True):
            # ggml lays tensors out back to back, each padded to the alignment; anything else
            # means overlapping or hidden data.
            if offset != expected_offset:
                raise GGUFError(f"tensor {_label(tensor.name)} has an unexpected offset")
            if data_offset + offset + size > self._file_size:
                raise GGUFError(f"tensor {_label(tensor.name)} lies beyond the end of the model file")
            expected_offset = _align(offset + size, alignment)
        return GGUFInfo(
            version=version, metadata=metadata, tensors=tensors, alignment=alignment, data_offset=data_offset
        )

    def _key_value(self) -> tuple[str, Any, int | None]:
        """A metadata entry: key, value and, for an array, its element type."""
        raw_key = self._string_bytes()
        if not raw_key:
            raise GGUFError("model file has an empty metadata key")
        try:
            key = raw_key.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError("model file has a metadata key that is not UTF-8") from None
        value_type = self._u32()
        if key == "general.alignment" and value_type != _TYPE_UINT32:
            raise GGUFError("general.alignment must be a uint32")
        if value_type == _TYPE_ARRAY:
            element_type = self._u32()
            max_string = MAX_TOKEN_BYTES if key == _TOKENS_KEY else MAX_STRING_BYTES
            return key, self._array(element_type, max_string), element_type
        return key, self._scalar(value_type), None

    def _scalar(self, value_type: int) -> Any:
        if value_type == _TYPE_STRING:
            return self._string()
        fmt = _SCALAR_FORMATS.get(value_type)
        if fmt is None:
            raise GGUFError(f"unknown metadata value type {value_type}")
        size = struct.calcsize("<" + fmt)
        self._fill(size)
        (value,) = struct.unpack_from("<" + fmt, self._buf, self._pos)
        self._pos += size
        if value_type == _FLOAT32:
            return _shortest_float32(value)
        return value

    def _array(self, element_type: int, max_string: int) -> list[Any]:
        count = self._u64()
        if count > MAX_ARRAY_ELEMENTS:
            raise GGUFError("model file has an array of more than 64 Mi elements")
        if element_type == _TYPE_ARRAY:
            raise GGUFError("model file has nested arrays")
        if element_type == _TYPE_STRING:
            return self._string_array(count, max_string)
        fmt = _SCALAR_FORMATS.get(element_type)
        if fmt is None:
            raise GGUFError(f"unknown array element type {element_type}")
        layout = struct.Struct(f"<{count}{fmt}")
        if layout.size > self._remaining():
            raise GGUFError("model file is truncated")
        self._fill(layout.size)
        values = list(layout.unpack_from(self._buf, self._pos))
        self._pos += layout.size
        return values

    def _string_array(self, count: int, max_length: int) -> list[str]:
        if count * 8 > self._remaining():
            raise GGUFError("model file is truncated")
        values: list[str] = []
        append = values.append
        unpack_length = _U64.unpack_from
        buf, pos = self._buf, self._pos
        # One tight loop with local names: this is where a 262k-token vocabulary spends its time.
        for _ in range(count):
            if pos + 8 > len(buf):
                self._pos = pos
                self._fill(8)
                buf, pos = self._buf, self._pos
            (length,) = unpack_length(buf, pos)
            pos += 8
            if length > max_length:
                raise GGUFError(f"model file has a string longer than {_size_label(max_length)}")
            if pos + length > len(buf):
                self._pos = pos
                self._fill(length)
                buf, pos = self._buf, self._pos
            append(buf[pos : pos + length].decode("utf-8", "replace"))
            pos += length
        self._pos = pos
        return values

    def _alignment(self, metadata: dict[str, Any]) -> int:
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if alignment == 0 or alignment & (alignment - 1) or alignment > MAX_ALIGNMENT:
            raise GGUFError("general.alignment must be a power of two no larger than 1 MiB")
        return alignment

    def _tensor(self) -> tuple[TensorInfo, int, int]:
        raw_name = self._string_bytes()
        name = raw_name.decode("utf-8", "replace")
        if len(raw_name) > MAX_TENSOR_NAME_BYTES:
            raise GGUFError(f"tensor {_label(name)} has a name longer than {MAX_TENSOR_NAME_BYTES} bytes")
        dims = self._u32()
        if dims > MAX_TENSOR_DIMS:
            raise GGUFError(f"tensor {_label(name)} has more than {MAX_TENSOR_DIMS} dimensions")
        shape = tuple(self._u64() for _ in range(dims))
        type_id = self._u32()
        offset = self._u64()
        tensor_type = _TENSOR_TYPES.get(type_id)
        if tensor_type is None:
            raise GGUFError(f"tensor {_label(name)} has unknown type {type_id}")
        type_name, block_elements, block_bytes = tensor_type
        elements = math.prod(shape)
        # ggml holds shapes and counts in int64.
        if any(dim >= 1 << 63 for dim in shape) or elements >= 1 << 63:
            raise GGUFError(f"tensor {_label(name)} is too large")
        row = shape[0] if shape else 1
        if row % block_elements:
            raise GGUFError(f"tensor {_label(name)} rows are not a whole number of {type_name} blocks")
        size = elements // block_elements * block_bytes
        return TensorInfo(name=name, type_name=type_name, shape=shape), offset, size


def _check_llama_limits(metadata: dict[str, Any], array_types: dict[str, int]) -> None:
    """Values llama.cpp trusts as indexes or sizes: layer counts, the vocabulary and token ids into it."""
    for key, value in metadata.items():
        if key.endswith(".block_count") and (not _is_int(value) or not 0 <= value <= MAX_BLOCK_COUNT):
            raise GGUFError(f"{key} must be a layer count no larger than {MAX_BLOCK_COUNT}")
    tokens = metadata.get(_TOKENS_KEY)
    if tokens is None:
        return
    if array_types.get(_TOKENS_KEY) != _TYPE_STRING:
        raise GGUFError(f"{_TOKENS_KEY} must be an array of strings")
    for key, element_type in _PER_TOKEN_ARRAYS.items():
        if key not in metadata:
            continue
        if array_types.get(key) != element_type:
            raise GGUFError(f"{key} has the wrong element type")
        if len(metadata[key]) != len(tokens):
            raise GGUFError(f"{key} does not have one entry per token")
    for key, value in metadata.items():
        if key.startswith("tokenizer.ggml.") and key.endswith("_token_id"):
            if not _is_int(value) or not 0 <= value < len(tokens):
                raise GGUFError(f"{key} is not a token of the vocabulary")
    # llama.cpp turns byte tokens into bytes by parsing their hex digits, unchecked.
    byte_typed = [i for i, kind in enumerate(metadata.get("tokenizer.ggml.token_type", ())) if kind == _TOKEN_TYPE_BYTE]
    byte_shaped = [token for token in tokens if token.startswith("<0x") and len(token) == 6]
    if not all(_BYTE_TOKEN.fullmatch(token) for token in (*byte_shaped, *(tokens[i] for i in byte_typed))):
        raise GGUFError("model file has a malformed byte token")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _size_label(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"


def _label(name: str) -> str:
    """A name from the file, cut short for an error message."""
    return repr(name[:64])


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


def _shortest_float32(value: float) -> float:
    """The float32 as its shortest decimal (1e-06, not 9.999999974752427e-07), as Go prints it."""
    if not math.isfinite(value):
        return value
    packed = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return value
