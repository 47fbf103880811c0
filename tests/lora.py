"""LoRA adapters for a GGUF model, written with llama.cpp's own ``gguf`` package.

Random low-rank updates on every attention query and value projection: enough to change what the
model says, so a test can tell whether the adapter was applied.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from herd.core.store.gguf import read_gguf

TARGETS = ("attn_q.weight", "attn_v.weight")


def write_lora(model: Path, out: Path, rank: int = 8, seed: int = 0, std: float = 0.2) -> Path:
    info = read_gguf(model)
    writer = gguf.GGUFWriter(out, arch=info.architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    rng = np.random.default_rng(seed)
    for tensor in info.tensors:
        if tensor.name.endswith(TARGETS):
            n_in, n_out = tensor.shape[0], tensor.shape[1]  # GGUF order: the row length first
            writer.add_tensor(tensor.name + ".lora_a", rng.normal(0, std, (rank, n_in)).astype(np.float32))
            writer.add_tensor(tensor.name + ".lora_b", rng.normal(0, std, (n_out, rank)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
