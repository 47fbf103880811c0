#!/usr/bin/env python3
"""Single-stream decode speed through herd's REST API against raw llama-cpp-python, in one run.

For each bundled model: start ``herd serve`` on free ports with a fresh store, stream
``/api/generate`` (raw prompt, fixed seed, ``num_predict`` tokens) several times and take the
median decode rate seen by the client (tokens after the first ÷ time from first to last byte)
and the time to first token; then load the same GGUF in this process with the same context
size and threads, run the same sampler chain token by token with ``llama_decode``, and print
herd/raw. Run it on an otherwise idle machine:

    python scripts/bench.py [--tokens 128] [--runs 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import llama_cpp

PROMPT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined movable metal type, oil-based ink and a wooden press adapted from wine making. "
    "Within a few decades printing shops had spread across Europe, and books that once took "
    "scribes months to copy could be produced in days. The consequences were"
)
MODELS = ("smollm2:135m", "gemma3:270m-pt")
SEED = 42
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "seed": SEED}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_herd(store: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port, grpc_port = free_port(), free_port()
    env = dict(os.environ, OLLAMA_MODELS=str(store), OLLAMA_HOST=f"127.0.0.1:{port}",
               HERD_GRPC_HOST=f"127.0.0.1:{grpc_port}", OLLAMA_KEEP_ALIVE="-1")
    proc = subprocess.Popen([sys.executable, "-m", "herd.cli.main", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/api/version", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("herd did not start")


def prompt_for(run: int) -> str:
    # A different first word each run, so herd's prefix cache cannot shorten the prompt.
    return f"{run}. {PROMPT}"


def herd_run(client: httpx.Client, base: str, model: str, tokens: int, threads: int, run: int) -> tuple[float, float, float]:
    """(decode tokens/s seen by the client, TTFT seconds, decode tokens/s the runner reports)."""
    body = {"model": model, "prompt": prompt_for(run), "raw": True, "stream": True,
            "options": {**SAMPLING, "num_predict": tokens, "num_thread": threads}}
    sent = time.perf_counter()
    first = last = None
    final = {}
    with client.stream("POST", base + "/api/generate", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            chunk = json.loads(line)
            now = time.perf_counter()
            if chunk.get("response") and first is None:
                first = now
            if chunk.get("response"):
                last = now
            if chunk.get("done"):
                final = chunk
    count = final["eval_count"]
    return (count - 1) / (last - first), first - sent, count / (final["eval_duration"] / 1e9)


class RawEngine:
    """The model loaded in this process with llama-cpp-python's low-level API."""

    def __init__(self, model_path: str, threads: int, n_ctx: int):
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 999 if llama_cpp.llama_supports_gpu_offload() else 0
        self.model = llama_cpp.llama_model_load_from_file(model_path.encode(), mparams)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_threads, cparams.n_threads_batch = n_ctx, 512, threads, threads
        cparams.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)

    def close(self) -> None:
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def raw_run(engine: RawEngine, tokens: int, run: int) -> tuple[float, float, int]:
    """The same generation, token by token with llama_decode and the same sampler chain."""
    ctx, vocab = engine.ctx, engine.vocab
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    data = prompt_for(run).encode()
    buf = (llama_cpp.llama_token * (len(data) + 8))()
    n_prompt = llama_cpp.llama_tokenize(vocab, data, len(data), buf, len(buf), True, True)
    prompt = list(buf[:n_prompt])
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    for sampler in (llama_cpp.llama_sampler_init_top_k(SAMPLING["top_k"]),
                    llama_cpp.llama_sampler_init_top_p(SAMPLING["top_p"], 1),
                    llama_cpp.llama_sampler_init_temp(SAMPLING["temperature"]),
                    llama_cpp.llama_sampler_init_dist(SEED)):
        llama_cpp.llama_sampler_chain_add(chain, sampler)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    piece = (llama_cpp.ctypes.c_char * 256)()

    def decode(toks: list[int], start: int) -> None:
        for i, tok in enumerate(toks):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, start + i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, i == len(toks) - 1
        batch.n_tokens = len(toks)
        assert llama_cpp.llama_decode(ctx, batch) == 0

    started = time.perf_counter()
    decode(prompt, 0)
    token = llama_cpp.llama_sampler_sample(chain, ctx, -1)
    first = last = time.perf_counter()
    count = 1
    pos = len(prompt)
    while count < tokens and not llama_cpp.llama_vocab_is_eog(vocab, token):
        llama_cpp.llama_token_to_piece(vocab, token, piece, len(piece), 0, False)
        decode([token], pos)
        pos += 1
        token = llama_cpp.llama_sampler_sample(chain, ctx, -1)
        last = time.perf_counter()
        count += 1
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_sampler_free(chain)
    return (count - 1) / (last - first), first - started, count


def model_path(store: Path, name: str) -> str:
    """The GGUF blob of ``name`` in the bench's own store (read from its manifest)."""
    model, tag = name.split(":")
    manifest = json.loads((store / "manifests/registry.ollama.ai/library" / model / tag).read_text())
    digest = next(l["digest"] for l in manifest["layers"] if l["mediaType"].endswith(".model"))
    return str(store / "blobs" / digest.replace(":", "-"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="models to measure (default: both bundled)")
    parser.add_argument("--store", type=Path, help="an existing models directory (default: a fresh one with the bundled models)")
    args = parser.parse_args()
    print(f"# herd bench: {args.tokens} tokens, {args.runs} runs, {args.threads} threads, num_ctx {args.ctx}")
    print(f"{'model':<16} {'raw tok/s':>10} {'herd tok/s':>11} {'ratio':>6} {'raw TTFT ms':>12} {'herd TTFT ms':>13}"
          f" {'runner tok/s':>13}")
    with tempfile.TemporaryDirectory(prefix="herd-bench-") as tmp:
        store = args.store or Path(tmp)
        proc, base = start_herd(store, args.threads)
        try:
            with httpx.Client() as client:
                for name in args.models:
                    client.post(base + "/api/generate", json={"model": name, "options": {"num_thread": args.threads}}, timeout=600)
                    engine = RawEngine(model_path(store, name), args.threads, args.ctx)
                    herd_run(client, base, name, 16, args.threads, run=0)  # warm-up
                    raw_run(engine, 16, run=0)
                    # Alternate the two so drifting machine load hits both alike; an idle
                    # runner costs no CPU while the raw engine decodes.
                    herd, raw = [], []
                    for run in range(1, args.runs + 1):
                        herd.append(herd_run(client, base, name, args.tokens, args.threads, run))
                        raw.append(raw_run(engine, args.tokens, run))
                    engine.close()
                    client.post(base + "/api/generate", json={"model": name, "keep_alive": 0}, timeout=60)
                    herd_rate = statistics.median(r[0] for r in herd)
                    raw_rate = statistics.median(r[0] for r in raw)
                    print(f"{name:<16} {raw_rate:>10.1f} {herd_rate:>11.1f} {herd_rate / raw_rate:>6.3f} "
                          f"{statistics.median(r[1] for r in raw) * 1e3:>12.1f} "
                          f"{statistics.median(r[1] for r in herd) * 1e3:>13.1f} "
                          f"{statistics.median(r[2] for r in herd):>13.1f}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
