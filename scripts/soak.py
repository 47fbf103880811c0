#!/usr/bin/env python3
"""A soak test: concurrent clients mixing every kind of request for some minutes; errors must be 0.

Each of ``--clients`` clients picks its next request at random (seeded, so a run can be repeated)
from: native generate and chat, streamed and not; ``/v1/chat/completions``, streamed and not;
``/api/embed``; ``/api/show``, ``/api/tags`` and ``/api/ps``. It reports per kind the number of
requests, errors (a non-200 status or an in-band error line/event) and p50/p99 latency of the
whole request, and the resident memory (RSS) of the herd processes (``herd serve``, gateway, core
and runners, summed from /proc) after a warm-up of one request of each kind, at its peak and at
the end.

    python scripts/soak.py --clients 8 --minutes 2            # starts herd on a fresh store
    python scripts/soak.py --url http://127.0.0.1:11434 --pid <herd serve pid>   # an existing herd

Exits 1 when any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import start_herd  # noqa: E402  (scripts/ is not a package)

MODEL = "smollm2:135m"
TOKENS = 24
PROMPTS = ["Tell me a short story.", "What is the capital of France?", "Write a haiku about rain.",
           "Explain photosynthesis in one sentence.", "List three colours."]


class Failed(Exception):
    """A request the server answered with an error."""


def check(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise Failed(f"{response.request.url.path}: {response.status_code} {response.text[:200]}")


async def read_ndjson(response: httpx.Response) -> None:
    check(response)
    last = {}
    async for line in response.aiter_lines():
        if line:
            last = json.loads(line)
            if "error" in last:
                raise Failed(f"{response.request.url.path}: in-band error {last['error']}")
    if not last.get("done"):
        raise Failed(f"{response.request.url.path}: stream ended without done")


async def read_sse(response: httpx.Response) -> None:
    check(response)
    finished = False
    async for line in response.aiter_lines():
        if line == "data: [DONE]":
            finished = True
        elif line.startswith("data: ") and "error" in json.loads(line[6:]):
            raise Failed(f"{response.request.url.path}: in-band error {line[:200]}")
    if not finished:
        raise Failed(f"{response.request.url.path}: stream ended without [DONE]")


def request_kinds(client: httpx.AsyncClient, model: str, rng: random.Random) -> dict[str, Callable[[], Awaitable[None]]]:
    options = {"num_predict": TOKENS}

    def messages() -> list[dict]:
        return [{"role": "user", "content": rng.choice(PROMPTS)}]

    async def stream(path: str, body: dict, reader: Callable[[httpx.Response], Awaitable[None]]) -> None:
        async with client.stream("POST", path, json=body) as response:
            await reader(response)

    async def post(path: str, body: dict) -> None:
        check(await client.post(path, json=body))

    async def get(path: str) -> None:
        check(await client.get(path))

    return {
        "generate stream": lambda: stream("/api/generate", {"model": model, "prompt": rng.choice(PROMPTS),
                                                             "options": options}, read_ndjson),
        "generate": lambda: post("/api/generate", {"model": model, "prompt": rng.choice(PROMPTS), "stream": False,
                                                   "options": options}),
        "chat stream": lambda: stream("/api/chat", {"model": model, "messages": messages(), "options": options},
                                      read_ndjson),
        "chat": lambda: post("/api/chat", {"model": model, "messages": messages(), "stream": False,
                                           "options": options}),
        "v1 chat stream": lambda: stream("/v1/chat/completions", {"model": model, "messages": messages(),
                                                                  "max_tokens": TOKENS, "stream": True}, read_sse),
        "v1 chat": lambda: post("/v1/chat/completions", {"model": model, "messages": messages(),
                                                         "max_tokens": TOKENS}),
        "embed": lambda: post("/api/embed", {"model": model, "input": rng.sample(PROMPTS, 2)}),
        "show": lambda: post("/api/show", {"model": model}),
        "tags": lambda: get("/api/tags"),
        "ps": lambda: get("/api/ps"),
    }


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children[int(stat.read_text().rsplit(")", 1)[1].split()[1])].append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


async def soak(base: str, pid: int | None, clients: int, seconds: float, model: str, seed: int) -> int:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        check(await client.post("/api/generate", json={"model": model, "keep_alive": -1}))  # loaded before timing
        # One of each kind first, so the baseline already holds what a first use allocates once
        # (the embedding context, the KV cache's first cells).
        for warm_up in request_kinds(client, model, random.Random(seed)).values():
            await warm_up()
        rss = [tree_rss_bytes(pid)] if pid else []
        deadline = time.monotonic() + seconds

        async def run_client(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            kinds = request_kinds(client, model, rng)
            while time.monotonic() < deadline:
                kind = rng.choice(list(kinds))
                started = time.monotonic()
                try:
                    await kinds[kind]()
                    latencies[kind].append(time.monotonic() - started)
                except (Failed, httpx.HTTPError, json.JSONDecodeError) as exc:
                    errors[kind].append(f"{type(exc).__name__}: {exc}")

        async def sample_rss() -> None:
            while pid and time.monotonic() < deadline:
                await asyncio.sleep(5)
                rss.append(tree_rss_bytes(pid))

        await asyncio.gather(sample_rss(), *(run_client(i) for i in range(clients)))
        if pid:
            rss.append(tree_rss_bytes(pid))

    total = sum(len(v) for v in latencies.values()) + sum(len(v) for v in errors.values())
    failed = sum(len(v) for v in errors.values())
    print(f"# herd soak: {clients} clients, {seconds / 60:g} min, model {model}, {TOKENS} tokens per generation")
    print(f"requests {total}, errors {failed}")
    print("| kind | requests | errors | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|")
    for kind in sorted(set(latencies) | set(errors)):
        done = sorted(latencies[kind])
        p50 = statistics.median(done) * 1000 if done else float("nan")
        p99 = done[min(len(done) - 1, int(len(done) * 0.99))] * 1000 if done else float("nan")
        print(f"| {kind} | {len(done) + len(errors[kind])} | {len(errors[kind])} | {p50:.0f} | {p99:.0f} |")
    if rss:
        mib = [value / 2**20 for value in rss]
        print(f"RSS of the herd processes: {mib[0]:.0f} MiB after warm-up, peak {max(mib):.0f}, "
              f"end {mib[-1]:.0f} (drift {mib[-1] - mib[0]:+.0f} MiB)")
    for kind, messages in errors.items():
        for message in messages[:5]:
            print(f"error [{kind}]: {message}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", help="an existing herd (default: start one on a fresh store)")
    parser.add_argument("--pid", type=int, help="with --url: the herd serve process, for RSS figures")
    parser.add_argument("--threads", type=int, default=2, help="threads of a herd this script starts")
    args = parser.parse_args()
    if args.url:
        return asyncio.run(soak(args.url, args.pid, args.clients, args.minutes * 60, args.model, args.seed))
    with tempfile.TemporaryDirectory(prefix="herd-soak-") as store:
        proc, base = start_herd(Path(store), args.threads)
        try:
            return asyncio.run(soak(base, proc.pid, args.clients, args.minutes * 60, args.model, args.seed))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
