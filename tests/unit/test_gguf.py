"""The GGUF header reader on the two bundled models and on hand-crafted hostile files."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from herd.core.store.bundled import locate_gemma3, locate_smollm2
from herd.core.store.gguf import GGUFError, human_number, read_gguf

UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64 = 4, 5, 6, 7, 8, 9, 10
F32, Q4_0 = 0, 2


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str | bytes, value_type: int, payload: bytes) -> bytes:
    return gguf_string(key) + struct.pack("<I", value_type) + payload


def kv_u32(key: str, value: int) -> bytes:
    return kv(key, UINT32, struct.pack("<I", value))


def kv_str(key: str, value: str) -> bytes:
    return kv(key, STRING, gguf_string(value))


def kv_string_array(key: str, values: list[str]) -> bytes:
    return kv(key, ARRAY, struct.pack("<IQ", STRING, len(values)) + b"".join(gguf_string(v) for v in values))


def tensor_info(name: str, shape: tuple[int, ...], tensor_type: int = F32, offset: int = 0) -> bytes:
    return (
        gguf_string(name)
        + struct.pack("<I", len(shape))
        + struct.pack(f"<{len(shape)}Q", *shape)
        + struct.pack("<IQ", tensor_type, offset)
    )


def gguf_file(
    kvs: list[bytes],
    tensors: list[bytes],
    data: bytes = b"",
    *,
    version: int = 3,
    magic: bytes = b"GGUF",
    counts: tuple[int, int] | None = None,
) -> bytes:
    tensor_count, kv_count = counts if counts is not None else (len(tensors), len(kvs))
    header = magic + struct.pack("<IQQ", version, tensor_count, kv_count) + b"".join(kvs) + b"".join(tensors)
    return header + b"\0" * (-len(header) % 32) + data


ARCH = kv_str("general.architecture", "llama")
# Two tensors back to back: 4 F32 values (16 bytes, padded to 32), then 64 Q4_0 values (2 blocks of 18).
VALID_TENSORS = [tensor_info("a.weight", (4,), F32, 0), tensor_info("b.weight", (32, 2), Q4_0, 32)]
VALID_DATA = b"\1" * 32 + b"\2" * 36


def valid_file() -> bytes:
    return gguf_file(
        [
            ARCH,
            kv_u32("llama.context_length", 2048),
            kv("llama.rope.scale", FLOAT32, struct.pack("<f", 0.95)),
            kv("general.flag", BOOL, b"\1"),
            kv("general.big", UINT64, struct.pack("<Q", 2**40)),
            kv_u32("general.file_type", 15),
            kv_string_array("tokenizer.ggml.tokens", ["<s>", "é", "x"]),
            kv("tokenizer.ggml.scores", ARRAY, struct.pack("<IQ3f", FLOAT32, 3, -1, 0, 7)),
            kv("tokenizer.ggml.token_type", ARRAY, struct.pack("<IQ3i", INT32, 3, 3, 1, 1)),
            kv_u32("tokenizer.ggml.eos_token_id", 2),
            kv_u32("llama.block_count", 512),
        ],
        VALID_TENSORS,
        VALID_DATA,
    )


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    return path


def test_reads_a_well_formed_file(tmp_path: Path) -> None:
    info = read_gguf(write(tmp_path, valid_file()))
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.metadata["llama.context_length"] == 2048
    assert info.architecture_value("context_length") == 2048
    assert info.metadata["llama.rope.scale"] == 0.95
    assert info.metadata["general.flag"] is True
    assert info.metadata["general.big"] == 2**40
    assert info.metadata["tokenizer.ggml.tokens"] == ["<s>", "é", "x"]
    assert info.metadata["tokenizer.ggml.scores"] == [-1, 0, 7]
    assert [(t.name, t.type_name, t.shape) for t in info.tensors] == [
        ("a.weight", "F32", (4,)),
        ("b.weight", "Q4_0", (32, 2)),
    ]
    assert info.parameter_count == 68
    assert info.file_type_name == "Q4_K_M"
    assert info.alignment == 32
    assert info.data_offset % 32 == 0
    assert info.data_offset + len(VALID_DATA) == len(valid_file())


def _vocabulary_file(*extra: bytes, tokens: list[str] | None = None) -> bytes:
    return gguf_file([ARCH, kv_string_array("tokenizer.ggml.tokens", tokens or ["<s>", "a", "b"]), *extra], [])


def _int32_array(key: str, values: list[int]) -> bytes:
    return kv(key, ARRAY, struct.pack(f"<IQ{len(values)}i", INT32, len(values), *values))


# What llama.cpp's loader trusts beyond the GGUF format itself (§3 of the security notes).
BAD_FOR_LLAMA = {
    "block_count 513": (gguf_file([ARCH, kv_u32("llama.block_count", 513)], []), "llama.block_count"),
    "vision block_count 2^31": (gguf_file([ARCH, kv_u32("clip.vision.block_count", 2**31)], []), "block_count"),
    "block_count as a string": (gguf_file([ARCH, kv_str("llama.block_count", "12")], []), "block_count"),
    "eos id equal to the vocabulary size": (
        _vocabulary_file(kv_u32("tokenizer.ggml.eos_token_id", 3)),
        "eos_token_id is not a token",
    ),
    "bos id of 2^32-1": (_vocabulary_file(kv_u32("tokenizer.ggml.bos_token_id", 2**32 - 1)), "bos_token_id"),
    "negative padding id": (
        _vocabulary_file(kv("tokenizer.ggml.padding_token_id", INT32, struct.pack("<i", -1))),
        "padding_token_id",
    ),
    "token longer than 64 KiB": (_vocabulary_file(tokens=["a", "x" * (64 * 1024 + 1)]), "longer than 64 KiB"),
    "token length 2^31": (
        gguf_file([ARCH, kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQQ", STRING, 1, 2**31) + b"x" * 64)], []),
        "longer than 64 KiB",
    ),
    "byte token <0x-1>": (_vocabulary_file(tokens=["a", "<0x-1>"]), "malformed byte token"),
    "byte token <0xZZ>": (_vocabulary_file(tokens=["a", "<0xZZ>"]), "malformed byte token"),
    "byte-typed token that is not <0xHH>": (
        _vocabulary_file(_int32_array("tokenizer.ggml.token_type", [1, 6]), tokens=["a", "<0x1FF>"]),
        "malformed byte token",
    ),
    "scores typed uint8": (
        _vocabulary_file(kv("tokenizer.ggml.scores", ARRAY, struct.pack("<IQ3B", 0, 3, 1, 2, 3))),
        "scores has the wrong element type",
    ),
    "token types typed uint8": (
        _vocabulary_file(kv("tokenizer.ggml.token_type", ARRAY, struct.pack("<IQ3B", 0, 3, 1, 1, 1))),
        "token_type has the wrong element type",
    ),
    "fewer scores than tokens": (
        _vocabulary_file(kv("tokenizer.ggml.scores", ARRAY, struct.pack("<IQ2f", FLOAT32, 2, 0, 0))),
        "one entry per token",
    ),
    "tokens not strings": (gguf_file([ARCH, _int32_array("tokenizer.ggml.tokens", [1])], []), "array of strings"),
    "tensor name of 64 bytes": (gguf_file([ARCH], [tensor_info("t" * 64, (4,))], b"\0" * 32), "name longer than 63"),
}


@pytest.mark.parametrize(("data", "reason"), BAD_FOR_LLAMA.values(), ids=BAD_FOR_LLAMA.keys())
def test_values_llama_cpp_trusts_are_checked(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(GGUFError, match=reason):
        read_gguf(write(tmp_path, data))


def test_well_formed_byte_tokens_and_ids_inside_the_vocabulary_pass(tmp_path: Path) -> None:
    data = _vocabulary_file(
        _int32_array("tokenizer.ggml.token_type", [3, 6, 6]),
        kv_u32("tokenizer.ggml.unknown_token_id", 0),
        tokens=["<unk>", "<0x0A>", "<0xff>"],
    )
    assert read_gguf(write(tmp_path, data)).metadata["tokenizer.ggml.tokens"][1] == "<0x0A>"


def test_smollm2_header() -> None:
    info = read_gguf(locate_smollm2())
    assert info.architecture == "llama"
    assert info.architecture_value("context_length") == 8192
    assert info.architecture_value("embedding_length") == 576
    assert info.file_type_name == "Q4_1"
    assert len(info.tensors) == 272
    assert human_number(info.parameter_count) == "134.52M"
    assert len(info.metadata["tokenizer.ggml.tokens"]) == 49152
    assert info.metadata["llama.attention.layer_norm_rms_epsilon"] == 1e-05


def test_gemma3_header_with_its_262k_vocabulary_reads_in_well_under_a_second() -> None:
    path = locate_gemma3()
    started = time.perf_counter()
    info = read_gguf(path)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert info.architecture == "gemma3"
    assert info.architecture_value("context_length") == 32768
    assert info.file_type_name == "Q4_K_M"
    assert len(info.tensors) == 236
    assert human_number(info.parameter_count) == "268.10M"
    assert len(info.metadata["tokenizer.ggml.tokens"]) == 262144
    assert "gemma3.pooling_type" not in info.metadata


def _replace_alignment(value_type: int, payload: bytes) -> bytes:
    return gguf_file([ARCH, kv("general.alignment", value_type, payload)], VALID_TENSORS, VALID_DATA)


BAD_FILES = {
    "empty": (b"", "not a GGUF file"),
    "three bytes": (b"GGU", "not a GGUF file"),
    "just the magic (CVE-2024-39720)": (b"GGUF", "truncated"),
    "23 bytes": (valid_file()[:23], "truncated"),
    "truncated in the metadata": (valid_file()[:320], "truncated"),
    "truncated in the tensor infos": (valid_file()[: len(valid_file()) - len(VALID_DATA) - 40], "truncated"),
    "bad magic": (gguf_file([ARCH], [], magic=b"GGML"), "not a GGUF file"),
    "version 0": (gguf_file([ARCH], [], version=0), "version 0"),
    "version 1": (gguf_file([ARCH], [], version=1), "version 1"),
    "version 4": (gguf_file([ARCH], [], version=4), "version 4"),
    "byte-swapped version": (gguf_file([ARCH], [], version=0x03000000), "byte order"),
    "huge metadata count": (gguf_file([ARCH], [], counts=(0, 2**63 - 1)), "more entries than it holds"),
    "metadata count of -1": (gguf_file([ARCH], [], counts=(0, 2**64 - 1)), "more entries than it holds"),
    "huge tensor count": (gguf_file([ARCH], [], counts=(2**63 - 1, 1)), "more entries than it holds"),
    "string length 2^40": (
        gguf_file([kv("general.name", STRING, struct.pack("<Q", 2**40) + b"x" * 64)], []),
        "longer than 16 MiB",
    ),
    "string longer than 16 MiB": (
        gguf_file([kv("general.name", STRING, struct.pack("<Q", (16 << 20) + 1))], []),
        "longer than 16 MiB",
    ),
    "string past the end": (
        gguf_file([kv("general.name", STRING, struct.pack("<Q", 1000) + b"x" * 10)], []),
        "truncated",
    ),
    "array of 2^40 elements": (
        gguf_file([kv("general.a", ARRAY, struct.pack("<IQ", UINT32, 2**40))], []),
        "more than 64 Mi elements",
    ),
    "number array longer than the file": (
        gguf_file([kv("general.a", ARRAY, struct.pack("<IQ", UINT64, 10**6))], []),
        "truncated",
    ),
    "string array longer than the file": (
        gguf_file([kv("general.a", ARRAY, struct.pack("<IQ", STRING, 10**6))], []),
        "truncated",
    ),
    "nested array": (
        gguf_file([kv("general.a", ARRAY, struct.pack("<IQ", ARRAY, 1) + struct.pack("<IQ", UINT32, 0))], []),
        "nested arrays",
    ),
    "unknown value type": (gguf_file([kv("general.a", 13, b"\0" * 8)], []), "unknown metadata value type 13"),
    "unknown array element type": (
        gguf_file([kv("general.a", ARRAY, struct.pack("<IQ", 99, 1) + b"\0" * 8)], []),
        "unknown array element type 99",
    ),
    "empty key": (gguf_file([kv("", UINT32, b"\0" * 4)], []), "empty metadata key"),
    "key not UTF-8": (gguf_file([kv(b"\xff\xfe", UINT32, b"\0" * 4)], []), "not UTF-8"),
    "duplicate key": (gguf_file([ARCH, ARCH], []), "duplicate metadata key"),
    "alignment 0 (CVE-2025-0317)": (_replace_alignment(UINT32, struct.pack("<I", 0)), "power of two"),
    "alignment 13": (_replace_alignment(UINT32, struct.pack("<I", 13)), "power of two"),
    "alignment 2^30": (_replace_alignment(UINT32, struct.pack("<I", 2**30)), "power of two"),
    "alignment stored as int32": (_replace_alignment(INT32, struct.pack("<i", 32)), "must be a uint32"),
    "tensor with 5 dimensions": (gguf_file([ARCH], [tensor_info("t", (1, 1, 1, 1, 1))], b"\0" * 32), "dimensions"),
    "unknown tensor type": (gguf_file([ARCH], [tensor_info("t", (4,), 99)], b"\0" * 32), "unknown type 99"),
    "removed tensor type Q4_2": (gguf_file([ARCH], [tensor_info("t", (32,), 4)], b"\0" * 32), "unknown type 4"),
    "row not a whole block": (gguf_file([ARCH], [tensor_info("t", (31,), Q4_0)], b"\0" * 32), "whole number"),
    "element count overflows int64": (
        gguf_file([ARCH], [tensor_info("t", (2**32, 2**32), F32)], b"\0" * 32),
        "too large",
    ),
    "duplicate tensor names": (
        gguf_file([ARCH], [tensor_info("t", (4,), F32, 0), tensor_info("t", (4,), F32, 32)], b"\0" * 64),
        "duplicate tensor names",
    ),
    "tensor beyond the end of the file (CVE-2026-7482)": (
        gguf_file([ARCH], [tensor_info("t", (1 << 20,), F32, 0)], b"\0" * 32),
        "beyond the end",
    ),
    "tensor data one byte short": (gguf_file([ARCH], VALID_TENSORS, VALID_DATA[:-1]), "beyond the end"),
    "tensor offsets out of order": (
        gguf_file([ARCH], [tensor_info("a", (4,), F32, 32), tensor_info("b", (4,), F32, 0)], b"\0" * 64),
        "unexpected offset",
    ),
}


@pytest.mark.parametrize(("data", "reason"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_hostile_files_raise_gguf_error_fast_without_naming_the_file(tmp_path: Path, data: bytes, reason: str) -> None:
    path = write(tmp_path, data)
    started = time.perf_counter()
    with pytest.raises(GGUFError, match=reason) as raised:
        read_gguf(path)
    assert time.perf_counter() - started < 0.5
    assert str(tmp_path) not in str(raised.value)
    assert "model.gguf" not in str(raised.value)


def test_missing_file_is_a_gguf_error_without_the_path(tmp_path: Path) -> None:
    with pytest.raises(GGUFError) as raised:
        read_gguf(tmp_path / "absent.gguf")
    assert str(tmp_path) not in str(raised.value)


def test_directories_and_fifos_are_refused_without_reading(tmp_path: Path) -> None:
    with pytest.raises(GGUFError):
        read_gguf(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(GGUFError):
        read_gguf(fifo)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1_000, "1K"),
        (1_499, "1K"),
        (26_000, "26K"),
        (1_000_000, "1M"),
        (134_515_008, "134.52M"),
        (268_098_176, "268.10M"),
        (1_000_000_000, "1B"),
        (1_500_000_000, "1.5B"),
        (7_241_732_096, "7.2B"),
        (8_000_000_000, "8B"),
    ],
)
def test_human_number_matches_ollama(count: int, text: str) -> None:
    assert human_number(count) == text


def test_version_2_and_a_custom_alignment_are_accepted(tmp_path: Path) -> None:
    kvs = [ARCH, kv_u32("general.alignment", 64)]
    header = b"GGUF" + struct.pack("<IQQ", 2, 2, len(kvs)) + b"".join(kvs)
    header += tensor_info("a", (4,), F32, 0) + tensor_info("b", (4,), F32, 64)
    data = header + b"\0" * (-len(header) % 64) + b"\0" * 80
    info = read_gguf(write(tmp_path, data))
    assert info.version == 2
    assert info.alignment == 64
    assert info.data_offset % 64 == 0
    assert [t.name for t in info.tensors] == ["a", "b"]
