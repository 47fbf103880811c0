#!/usr/bin/env python3
"""herd through its REST API against raw llama-cpp-python on the same GGUF, in one run.

For each bundled model, with ``herd serve`` started on free ports and a fresh store, and the
same GGUF loaded in this process with llama-cpp-python's low-level API (same context size per
sequence, threads and sampler chain):

single       one stream at a time: median decode rate seen by the client (tokens after the
             first ÷ time from first to last byte) and time to first token, herd and raw
             alternated run by run.
concurrency  1, 4, 8 and 16 clients, each streaming ``--requests`` generations of ``--tokens``
             tokens back to back (a closed loop, as a chat service sees); raw is the same loop
             in-process: one ``llama_decode`` per step over one token of every generating
             sequence plus the prompt of any sequence that has just arrived. Raw and herd
             take turns ``--rounds`` times per level, each going first in every other
             round, so the machine's drift hits both alike.
             Aggregate tokens/s (all tokens ÷ wall time, over every round), herd/raw, and TTFT
             p50/p99 over every request.
turns        a chat with a ~1,000-token history: TTFT of the cold first turn and of the second
             turn, which should find the first turn's cells in the prefix cache.
embed        ``/api/embed`` with 256 short inputs against the same inputs embedded in-process
             with the same batching (inputs/s, herd/raw).

Run it on an otherwise idle machine:

    python scripts/bench.py [--only single concurrency turns embed] [--models …] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

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
TOKENS = 128  # per generation
CTX = 4096  # per sequence
STAGGER_MS = 100.0  # between the clients' first requests
# Per concurrency level. One round's herd/raw ratio moves by up to ±0.1 with the VM's speed on 2
# cores, against a target 0.05 below parity; pooling eight rounds narrows four's spread by ~30 %.
ROUNDS = 8

R = TypeVar("R")
H = TypeVar("H")


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

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buf = (llama_cpp.llama_token * (len(data) + 8))()
        return list(buf[: llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, len(buf), True, True)])

    def close(self) -> None:
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def raw_run(engine: RawEngine, tokens: int, run: int) -> tuple[float, float, int]:
    """The same generation, token by token with llama_decode and the same sampler chain."""
    ctx, vocab = engine.ctx, engine.vocab
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    prompt = engine.tokenize(prompt_for(run))
    chain = sampler_chain(SEED)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    piece = (ctypes.c_char * 256)()

    def decode(toks: list[int], start: int) -> None:
        for i, tok in enumerate(toks):
            _put(batch, i, tok, start + i, 0, i == len(toks) - 1)
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


# ---------------------------------------------------------------- concurrency

ANIMALS = ("fox", "heron", "badger", "otter", "crow", "hare", "lynx", "seal")
DREAMS = ("sailing to the far islands", "building a lighthouse", "learning to sing", "mapping the stars")


def story_prompt(series: str, client: int, request: int) -> str:
    """A short prompt (~30 tokens), different from the first token on, so no two share cells.

    ``series`` (the concurrency level and round) keeps one run's prompts out of another's prefix cache.
    """
    return (f"{series}:{client}.{request} Once upon a time, in a village by the sea, there lived a "
            f"{ANIMALS[(client + request) % len(ANIMALS)]} who dreamed of "
            f"{DREAMS[(client * 3 + request) % len(DREAMS)]}. One morning,")


@dataclass
class LevelResult:
    tokens: int
    seconds: float
    ttfts: list[float]

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds

    def ttft_ms(self, q: float) -> float:
        ordered = sorted(self.ttfts)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    @classmethod
    def pooled(cls, results: list[LevelResult]) -> LevelResult:
        return cls(sum(r.tokens for r in results), sum(r.seconds for r in results),
                   [t for r in results for t in r.ttfts])


def sampler_chain(seed: int):
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    for sampler in (llama_cpp.llama_sampler_init_top_k(SAMPLING["top_k"]),
                    llama_cpp.llama_sampler_init_top_p(SAMPLING["top_p"], 1),
                    llama_cpp.llama_sampler_init_temp(SAMPLING["temperature"]),
                    llama_cpp.llama_sampler_init_dist(seed)):
        llama_cpp.llama_sampler_chain_add(chain, sampler)
    return chain


@dataclass
class _RawSequence:
    prompt: list[int]
    chain: object
    arrived: float
    n_past: int = 0
    pending: int = -1
    generated: int = 0


def requests_per_client(streams: int) -> int:
    """About the same number of tokens at every level; at least 3, so the start is not half the sample."""
    return max(3, 24 // streams)


def alternate(round_: int, raw: Callable[[], R], herd: Callable[[], H]) -> tuple[R, H]:
    """Runs ``raw`` and ``herd`` once each: raw first in even rounds, herd first in odd ones.

    Taking turns shares the machine's drift between the two; swapping who goes first also
    cancels a drift that runs the same way through a section, which would otherwise count
    against whichever always runs second.
    """
    if round_ % 2 == 0:
        raw_result = raw()
        return raw_result, herd()
    herd_result = herd()
    return raw(), herd_result


def first_arrival(client: int, stagger_s: float) -> float:
    """When a client sends its first request, relative to the start of the level.

    Clients that all start at once and all stop after exactly ``--tokens`` tokens would stay in
    lockstep for ever, every round a thundering herd of prompts; real clients arrive spread
    out. Both loops use the same offsets, so herd and raw see the same arrivals.
    """
    return client * stagger_s


def raw_concurrent(model, threads: int, ctx_per_seq: int, clients: int, requests: int, tokens: int,
                   stagger_s: float, series: str) -> LevelResult:
    """``clients`` closed loops of ``requests`` generations each, batched in one context."""
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = ctx_per_seq * clients, 512, 512
    cparams.n_seq_max, cparams.kv_unified, cparams.no_perf = clients, True, True
    cparams.n_threads = cparams.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model.model, cparams)
    mem = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    piece = (ctypes.c_char * 256)()
    queues = [[story_prompt(series, c, r) for r in range(requests)] for c in range(clients)]
    slots: list[_RawSequence | None] = [None] * clients
    ttfts: list[float] = []
    total = 0
    started = time.perf_counter()
    arrived = [started + first_arrival(i, stagger_s) for i in range(clients)]
    while any(queues) or any(slots):
        now = time.perf_counter()
        for i, slot in enumerate(slots):
            if slot is None and queues[i] and arrived[i] <= now:
                slots[i] = _RawSequence(model.tokenize(queues[i].pop(0)), sampler_chain(SEED + total + i), arrived[i])
        if not any(slots):
            time.sleep(max(0.0, min(a for a, q in zip(arrived, queues) if q) - now))
            continue
        n = 0
        outputs = []
        for i, seq in enumerate(slots):
            if seq is not None and seq.pending >= 0:
                _put(batch, n, seq.pending, seq.n_past, i, True)
                outputs.append((i, n))
                n += 1
        for i, seq in enumerate(slots):
            if seq is None or seq.pending >= 0 or n >= 512:
                continue
            take = seq.prompt[seq.n_past: seq.n_past + 512 - n]
            for k, tok in enumerate(take):
                last = seq.n_past + k == len(seq.prompt) - 1
                _put(batch, n, tok, seq.n_past + k, i, last)
                if last:
                    outputs.append((i, n))
                n += 1
            seq.n_past += len(take)
        batch.n_tokens = n
        assert llama_cpp.llama_decode(ctx, batch) == 0
        now = time.perf_counter()
        for i, index in outputs:
            seq = slots[i]
            if seq.pending >= 0:
                seq.n_past += 1
            else:
                ttfts.append(now - seq.arrived)
            token = llama_cpp.llama_sampler_sample(seq.chain, ctx, index)
            seq.generated += 1
            llama_cpp.llama_token_to_piece(model.vocab, token, piece, len(piece), 0, False)
            if seq.generated >= tokens or llama_cpp.llama_vocab_is_eog(model.vocab, token):
                total += seq.generated
                llama_cpp.llama_memory_seq_rm(mem, i, -1, -1)
                llama_cpp.llama_sampler_free(seq.chain)
                slots[i] = None
                arrived[i] = now
            else:
                seq.pending = token
    elapsed = time.perf_counter() - started
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    return LevelResult(total, elapsed, ttfts)


def _put(batch, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
    batch.seq_id[i][0], batch.logits[i] = seq_id, logits


async def herd_concurrent(base: str, model: str, clients: int, requests: int, tokens: int, threads: int,
                          stagger_s: float, series: str) -> LevelResult:
    """The same closed loops as streaming ``/api/generate`` clients of the running server."""
    ttfts: list[float] = []
    counts: list[int] = []

    async def client_loop(client: httpx.AsyncClient, index: int) -> None:
        await asyncio.sleep(first_arrival(index, stagger_s))
        for r in range(requests):
            body = {"model": model, "prompt": story_prompt(series, index, r), "raw": True, "stream": True,
                    "options": {**SAMPLING, "seed": SEED + index * requests + r,
                                "num_predict": tokens, "num_thread": threads}}
            sent = time.perf_counter()
            first = None
            async with client.stream("POST", base + "/api/generate", json=body, timeout=600) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    chunk = json.loads(line)
                    if first is None and chunk.get("response"):
                        first = time.perf_counter()
                        ttfts.append(first - sent)
                    if chunk.get("done"):
                        counts.append(chunk["eval_count"])

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client, i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return LevelResult(sum(counts), elapsed, ttfts)


def bench_concurrency(base: str, engine: RawEngine, name: str, args) -> None:
    print(f"\n## {name}: concurrent streams, closed loops of {args.tokens}-token requests, first requests "
          f"{args.stagger:.0f} ms apart, raw and herd alternated {args.rounds} times per level")
    print(f"{'streams':>7} {'raw tok/s':>10} {'herd tok/s':>11} {'ratio':>6} {'rounds':>11} {'raw TTFT p50/p99 ms':>20}"
          f" {'herd TTFT p50/p99 ms':>21}")
    for level in args.levels:
        requests = args.requests or requests_per_client(level)
        # The machine's speed drifts from one minute to the next: alternating shares the drift out.
        raws, herds = [], []
        for round_ in range(args.rounds):
            series = f"{level}.{round_}"
            raw_round, herd_round = alternate(
                round_,
                lambda: raw_concurrent(engine, args.threads, args.ctx, level, requests, args.tokens,
                                       args.stagger / 1e3, series),
                lambda: asyncio.run(herd_concurrent(base, name, level, requests, args.tokens, args.threads,
                                                    args.stagger / 1e3, series)))
            raws.append(raw_round)
            herds.append(herd_round)
        raw, herd = LevelResult.pooled(raws), LevelResult.pooled(herds)
        # The spread of the rounds' own ratios says how far the pooled one can be trusted.
        ratios = sorted(h.rate / r.rate for r, h in zip(raws, herds))
        spread = f"{ratios[0]:.2f}–{ratios[-1]:.2f}"
        print(f"{level:>7} {raw.rate:>10.1f} {herd.rate:>11.1f} {herd.rate / raw.rate:>6.3f} {spread:>11} "
              f"{raw.ttft_ms(0.5):>9.0f} / {raw.ttft_ms(0.99):<8.0f} {herd.ttft_ms(0.5):>10.0f} / {herd.ttft_ms(0.99):<8.0f}",
              flush=True)


# ---------------------------------------------------------------- second turn

HISTORY_PARAGRAPH = (
    "The lighthouse keeper kept a log of every ship that passed the point: its flag, its cargo "
    "as far as he could guess it, the weather, and the hour. Over thirty years the log grew to "
    "eleven volumes, and the harbour office still consults it when a family asks about a vessel. "
)


def chat_ttft(client: httpx.Client, base: str, name: str, messages: list[dict], threads: int) -> tuple[float, str]:
    body = {"model": name, "messages": messages, "stream": True,
            "options": {**SAMPLING, "num_predict": 32, "num_thread": threads}}
    sent = time.perf_counter()
    first = None
    reply = []
    with client.stream("POST", base + "/api/chat", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            chunk = json.loads(line)
            if first is None and chunk.get("message", {}).get("content"):
                first = time.perf_counter()
            reply.append(chunk.get("message", {}).get("content", ""))
    return (first or time.perf_counter()) - sent, "".join(reply)


def bench_turns(client: httpx.Client, base: str, name: str, args) -> None:
    print(f"\n## {name}: chat with a ~1,000-token history, first turn cold vs second turn")
    firsts, seconds = [], []
    for run in range(3):
        history = f"Conversation {run}. " + HISTORY_PARAGRAPH * 15 + "\nWhat did the keeper record?"
        messages = [{"role": "user", "content": history}]
        first, reply = chat_ttft(client, base, name, messages, args.threads)
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And for how long?"}]
        second, _ = chat_ttft(client, base, name, messages, args.threads)
        firsts.append(first)
        seconds.append(second)
    first, second = statistics.median(firsts), statistics.median(seconds)
    print(f"first turn TTFT {first * 1e3:.0f} ms, second turn TTFT {second * 1e3:.0f} ms, "
          f"second/first {second / first:.3f} (medians of 3)")


# ---------------------------------------------------------------- embeddings

def embed_inputs() -> list[str]:
    return [f"Note {i}: the {ANIMALS[i % len(ANIMALS)]} was seen near the harbour at dawn." for i in range(256)]


def raw_embed(engine: RawEngine, threads: int, ctx_per_seq: int, inputs: list[str]) -> float:
    """Seconds to embed ``inputs`` in-process, as many per decode as fit (mean pooling)."""
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = ctx_per_seq
    cparams.n_seq_max = min(64, llama_cpp.llama_max_parallel_sequences())
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.embeddings, cparams.kv_unified, cparams.no_perf = True, True, True
    if cparams.pooling_type == llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED:
        cparams.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
    ctx = llama_cpp.llama_init_from_model(engine.model, cparams)
    mem = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(ctx_per_seq, 0, 1)
    n_embd = llama_cpp.llama_model_n_embd(engine.model)
    started = time.perf_counter()
    tokenized = [engine.tokenize(text) for text in inputs]
    start = 0
    while start < len(tokenized):
        group = tokenized[start: start + cparams.n_seq_max]
        while sum(map(len, group)) > ctx_per_seq:
            group = group[:-1]
        llama_cpp.llama_memory_clear(mem, True)
        n = 0
        for seq_id, tokens in enumerate(group):
            for pos, tok in enumerate(tokens):
                _put(batch, n, tok, pos, seq_id, True)
                n += 1
        batch.n_tokens = n
        assert llama_cpp.llama_decode(ctx, batch) == 0
        for seq_id in range(len(group)):
            llama_cpp.llama_get_embeddings_seq(ctx, seq_id)[:n_embd]
        start += len(group)
    elapsed = time.perf_counter() - started
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    return elapsed


def bench_embed(client: httpx.Client, base: str, engine: RawEngine, name: str, args) -> None:
    inputs = embed_inputs()
    body = {"model": name, "input": inputs, "options": {"num_thread": args.threads}}
    client.post(base + "/api/embed", json={**body, "input": inputs[:4]}, timeout=600).raise_for_status()  # warm-up
    raw_embed(engine, args.threads, args.ctx, inputs[:4])

    def herd_embed() -> float:
        started = time.perf_counter()
        response = client.post(base + "/api/embed", json=body, timeout=600)
        response.raise_for_status()
        assert len(response.json()["embeddings"]) == len(inputs)
        return time.perf_counter() - started

    raw_s, herd_s = zip(*(alternate(round_, lambda: raw_embed(engine, args.threads, args.ctx, inputs), herd_embed)
                          for round_ in range(2)))
    herd, raw = len(inputs) / statistics.median(herd_s), len(inputs) / statistics.median(raw_s)
    print(f"\n## {name}: /api/embed, {len(inputs)} short inputs (means of 2)")
    print(f"raw {raw:.1f} inputs/s, herd {herd:.1f} inputs/s, herd/raw {herd / raw:.3f}")


# ---------------------------------------------------------------- main

def model_path(store: Path, name: str) -> str:
    """The GGUF blob of ``name`` in the bench's own store (read from its manifest)."""
    model, tag = name.split(":")
    manifest = json.loads((store / "manifests/registry.ollama.ai/library" / model / tag).read_text())
    digest = next(l["digest"] for l in manifest["layers"] if l["mediaType"].endswith(".model"))
    return str(store / "blobs" / digest.replace(":", "-"))


def bench_single(client: httpx.Client, base: str, engine: RawEngine, name: str, args) -> None:
    herd_run(client, base, name, 16, args.threads, run=0)  # warm-up
    raw_run(engine, 16, run=0)
    # An idle runner costs no CPU while the raw engine decodes, and the other way round.
    herd, raw = [], []
    for run in range(1, args.runs + 1):
        raw_result, herd_result = alternate(run, lambda: raw_run(engine, args.tokens, run),
                                            lambda: herd_run(client, base, name, args.tokens, args.threads, run))
        raw.append(raw_result)
        herd.append(herd_result)
    herd_rate = statistics.median(r[0] for r in herd)
    raw_rate = statistics.median(r[0] for r in raw)
    print(f"\n## {name}: one stream, {args.tokens} tokens, medians of {args.runs} runs")
    print(f"{'raw tok/s':>10} {'herd tok/s':>11} {'ratio':>6} {'raw TTFT ms':>12} {'herd TTFT ms':>13} {'runner tok/s':>13}")
    print(f"{raw_rate:>10.1f} {herd_rate:>11.1f} {herd_rate / raw_rate:>6.3f} "
          f"{statistics.median(r[1] for r in raw) * 1e3:>12.1f} "
          f"{statistics.median(r[1] for r in herd) * 1e3:>13.1f} "
          f"{statistics.median(r[2] for r in herd):>13.1f}")


SECTIONS = ("single", "concurrency", "turns", "embed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run (default: all)")
    parser.add_argument("--tokens", type=int, default=TOKENS)
    parser.add_argument("--runs", type=int, default=5, help="single-stream runs per model")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16], help="concurrent streams")
    parser.add_argument("--requests", type=int, help="requests per client at each level (default: 24 ÷ streams, at least 3)")
    parser.add_argument("--stagger", type=float, default=STAGGER_MS, help="ms between the clients' first requests")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="raw and herd runs alternated per concurrency level")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ctx", type=int, default=CTX, help="context per sequence")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="models to measure (default: both bundled)")
    parser.add_argument("--store", type=Path, help="an existing models directory (default: a fresh one with the bundled models)")
    args = parser.parse_args()
    print(f"# herd bench: {' '.join(args.only)}; {args.threads} threads, num_ctx {args.ctx}")
    with tempfile.TemporaryDirectory(prefix="herd-bench-") as tmp:
        store = args.store or Path(tmp)
        proc, base = start_herd(store, args.threads)
        try:
            with httpx.Client() as client:
                for name in args.models:
                    client.post(base + "/api/generate", json={"model": name, "options": {"num_thread": args.threads}}, timeout=600)
                    engine = RawEngine(model_path(store, name), args.threads, args.ctx)
                    if "single" in args.only:
                        bench_single(client, base, engine, name, args)
                    if "concurrency" in args.only:
                        bench_concurrency(base, engine, name, args)
                    if "turns" in args.only:
                        bench_turns(client, base, name, args)
                    if "embed" in args.only:
                        bench_embed(client, base, engine, name, args)
                    engine.close()
                    client.post(base + "/api/generate", json={"model": name, "keep_alive": 0}, timeout=60)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
