"""A tiny multimodal projector (mmproj) GGUF for a text model, written with llama.cpp's ``gguf`` package.

No vision model can be downloaded in the test environment, so tests make one: a LLaVA-style CLIP
encoder (``clip.projector_type = mlp``) with one block and random weights, whose two-layer MLP
projects each image patch into the text model's embedding space. libmtmd loads it against the
text model like any real ``mmproj-*.gguf``; an image becomes ``image_tokens`` embeddings. The
weights are random, so the model says nonsense about the picture, but different pictures give
different embeddings, which is what the tests look for.

Also here: :func:`png`, a PNG writer in pure Python, so tests can make real images without PIL.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import gguf
import numpy as np

from herd.core.store.gguf import read_gguf

IMAGE_SIZE = 56  # pixels a side: every image is resized to this
PATCH_SIZE = 14
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # embeddings one image adds to the prompt
VISION_EMBD = 32
VISION_HEADS = 2
VISION_FF = 64
PROJECTOR_HIDDEN = 64


def text_embedding_length(model: Path) -> int:
    info = read_gguf(model)
    return int(info.metadata[f"{info.architecture}.embedding_length"])


def write_mmproj(model: Path, out: Path, seed: int = 0) -> Path:
    """Writes a projector for ``model`` (a GGUF text model) to ``out``."""
    n_embd_text = text_embedding_length(model)
    rng = np.random.default_rng(seed)

    def normal(shape: tuple[int, ...], std: float, dtype=np.float32) -> np.ndarray:
        return rng.normal(0.0, std, shape).astype(dtype)

    writer = gguf.GGUFWriter(out, arch="clip")
    writer.add_name("herd test projector")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type("mlp")
    writer.add_vision_image_size(IMAGE_SIZE)
    writer.add_vision_patch_size(PATCH_SIZE)
    writer.add_vision_embedding_length(VISION_EMBD)
    writer.add_vision_feed_forward_length(VISION_FF)
    writer.add_vision_projection_dim(n_embd_text)
    writer.add_vision_head_count(VISION_HEADS)
    writer.add_vision_attention_layernorm_eps(1e-5)
    writer.add_vision_block_count(1)
    writer.add_vision_image_mean([0.5, 0.5, 0.5])
    writer.add_vision_image_std([0.5, 0.5, 0.5])
    writer.add_vision_use_gelu(True)

    d, ff = VISION_EMBD, VISION_FF
    n_pos = IMAGE_TOKENS
    # numpy shapes are GGUF's dimensions reversed: a (rows, row length) matrix maps row length → rows.
    tensors = {
        "v.patch_embd.weight": normal((d, 3, PATCH_SIZE, PATCH_SIZE), 0.1, np.float16),
        "v.patch_embd.bias": normal((d,), 0.1),
        "v.position_embd.weight": normal((n_pos, d), 0.1),
        "v.pre_ln.weight": np.ones(d, np.float32),
        "v.pre_ln.bias": np.zeros(d, np.float32),
        "mm.0.weight": normal((PROJECTOR_HIDDEN, d), 0.3, np.float16),
        "mm.0.bias": normal((PROJECTOR_HIDDEN,), 0.1),
        "mm.2.weight": normal((n_embd_text, PROJECTOR_HIDDEN), 0.3, np.float16),
        "mm.2.bias": normal((n_embd_text,), 0.05),
    }
    for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
        tensors[f"v.blk.0.{part}.weight"] = normal((d, d), 0.1, np.float16)
        tensors[f"v.blk.0.{part}.bias"] = np.zeros(d, np.float32)
    for norm in ("ln1", "ln2"):
        tensors[f"v.blk.0.{norm}.weight"] = np.ones(d, np.float32)
        tensors[f"v.blk.0.{norm}.bias"] = np.zeros(d, np.float32)
    tensors["v.blk.0.ffn_up.weight"] = normal((ff, d), 0.1, np.float16)
    tensors["v.blk.0.ffn_up.bias"] = np.zeros(ff, np.float32)
    tensors["v.blk.0.ffn_down.weight"] = normal((d, ff), 0.1, np.float16)
    tensors["v.blk.0.ffn_down.bias"] = np.zeros(d, np.float32)
    for name, data in tensors.items():
        writer.add_tensor(name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def png(width: int, height: int, pixel) -> bytes:
    """An 8-bit RGB PNG whose pixel (x, y) is ``pixel(x, y)``, an (r, g, b) tuple."""
    rows = b"".join(
        b"\x00" + bytes(channel for x in range(width) for channel in pixel(x, y)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def red_square() -> bytes:
    return png(32, 32, lambda x, y: (220, 20, 20))


def blue_stripes() -> bytes:
    return png(40, 24, lambda x, y: (10, 40, 230) if (x // 4) % 2 else (250, 250, 250))
