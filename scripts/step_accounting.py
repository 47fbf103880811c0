#!/usr/bin/env python3
"""Where a concurrency level's time goes, step by step: raw's loop against herd's runner.

Runs ``scripts/bench.py``'s closed loops at one level, raw and herd alternated ``--rounds`` times,
with every ``llama_decode`` timed in both (``scripts/decode_timing``), and prints per run:

tok/s        the run's aggregate rate, as the bench reports it
decode       decode-only steps: how many, their mean batch, their mean time
prompt       steps holding a prompt: how many, their mean tokens and time
gap          median time between the end of one decode and the start of the next (Python)
stretch      how much longer decode-only steps of a full batch ran than the median of their 25
             neighbours: time taken from the decode threads by other work (other processes,
             the runner's event loop), with the machine's slower drift taken out
busy         decode time ÷ wall time

    python scripts/step_accounting.py [--level 8] [--rounds 3] [--model smollm2:135m] [--env K=V …]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import httpx

SCRIPTS = Path(__file__).resolve().parent
TIMING = SCRIPTS / "decode_timing"


def read_steps(log_dir: Path) -> list[tuple[float, float, int, int]]:
    steps = []
    for log in log_dir.glob("decode.*.log"):
        for line in log.read_text().splitlines():
            start, end, n_tokens, outputs = line.split()
            steps.append((float(start), float(end), int(n_tokens), int(outputs)))
    return sorted(steps)


def stretch(durations: list[float]) -> float:
    """Mean of each step's time over the median of its 25 neighbours, less one."""
    ratios = [d / statistics.median(durations[max(0, i - 12): i + 13]) for i, d in enumerate(durations)]
    return statistics.mean(ratios) - 1 if ratios else float("nan")


def describe(name: str, rate: float, steps: list[tuple[float, float, int, int]], wall: float, level: int) -> str:
    decode = [s for s in steps if s[2] == s[3]]
    prompt = [s for s in steps if s[2] != s[3]]
    full = [(s[1] - s[0]) * 1e3 for s in decode if s[2] == level]
    gaps = [(b[0] - a[1]) * 1e3 for a, b in zip(steps, steps[1:])]

    def mean(values) -> float:
        return statistics.mean(values) if values else float("nan")

    return (f"{name:>7} {rate:6.1f} {len(decode):6d} {mean([s[2] for s in decode]):6.2f} "
            f"{mean([(s[1] - s[0]) * 1e3 for s in decode]):7.2f} {len(prompt):6d} {mean([s[2] for s in prompt]):6.1f} "
            f"{mean([(s[1] - s[0]) * 1e3 for s in prompt]):7.1f} {statistics.median(gaps):6.2f} "
            f"{100 * stretch(full):6.1f}% {100 * sum(s[1] - s[0] for s in steps) / wall:5.1f}%")


def timed(label: str, run: Callable) -> Callable[[], tuple[str, float, float, float]]:
    """``run`` (a bench level) made to return its label, its rate and the window its decode steps fall in."""

    def measured() -> tuple[str, float, float, float]:
        started = time.perf_counter()
        rate = run().rate
        return label, rate, started, time.perf_counter()

    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", type=int, default=8, help="concurrent streams")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="smollm2:135m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--env", nargs="*", default=[], metavar="K=V", help="extra environment for herd serve")
    args = parser.parse_args()

    log_dir = Path(tempfile.mkdtemp(prefix="herd-decode-"))
    os.environ["HERD_DECODE_LOG"] = str(log_dir)
    sys.path[:0] = [str(TIMING), str(SCRIPTS)]
    import bench
    import sitecustomize  # noqa: F401  (times this process's raw loop)

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TIMING), os.environ.get("PYTHONPATH")]))
    os.environ.update(kv.split("=", 1) for kv in args.env)
    requests = bench.requests_per_client(args.level)
    stagger_s = bench.STAGGER_MS / 1e3
    with tempfile.TemporaryDirectory() as store_dir:
        server, base = bench.start_herd(Path(store_dir), args.threads)
        runs = []
        try:
            httpx.post(base + "/api/generate", json={"model": args.model, "options": {"num_thread": args.threads}},
                       timeout=600).raise_for_status()
            engine = bench.RawEngine(bench.model_path(Path(store_dir), args.model), args.threads, bench.CTX)
            for round_ in range(args.rounds):
                series = f"steps.{args.level}.{round_}"
                runs += bench.alternate(
                    round_,
                    timed(f"raw{round_}", lambda: bench.raw_concurrent(
                        engine, args.threads, bench.CTX, args.level, requests, bench.TOKENS, stagger_s, series)),
                    timed(f"herd{round_}", lambda: asyncio.run(bench.herd_concurrent(
                        base, args.model, args.level, requests, bench.TOKENS, args.threads, stagger_s, series))))
        finally:
            server.terminate()
            server.wait(timeout=30)
    steps = read_steps(log_dir)
    print(f"{args.model}, {args.level} streams, {requests} requests of {bench.TOKENS} tokens each")
    print(f"{'run':>7} {'tok/s':>6} {'decode':>6} {'batch':>6} {'ms':>7} {'prompt':>6} {'tokens':>6} {'ms':>7} "
          f"{'gap ms':>6} {'stretch':>7} {'busy':>6}")
    for name, rate, started, ended in runs:
        print(describe(name, rate, [s for s in steps if started <= s[0] <= ended], ended - started, args.level))
    return 0


if __name__ == "__main__":
    sys.exit(main())
