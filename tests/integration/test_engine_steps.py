"""What each ``llama_decode`` of the batching loop holds, on the real chat model in-process."""

from __future__ import annotations

import threading
from collections import Counter

import llama_cpp
import pytest

from herd.core.runner.engine import Engine, EngineConfig, SamplingParams, Sequence
from herd.core.store.bundled import locate_smollm2

pytestmark = pytest.mark.integration

GREEDY = SamplingParams(temperature=0.0, top_k=40, top_p=0.9, min_p=0.0, typical_p=1.0, repeat_last_n=64,
                        repeat_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0, seed=0)


class RecordedEngine:
    """An engine on the real chat model whose every ``llama_decode`` is recorded as tokens per sequence id."""

    def __init__(self, monkeypatch, **config):
        self.engine = Engine(EngineConfig(model_path=str(locate_smollm2()), n_ctx=512, n_parallel=4, n_threads=2,
                                          n_gpu_layers=0, **config))
        self.steps: list[Counter] = []
        self.finished = threading.Semaphore(0)
        self.texts: dict[int, list[str]] = {}
        decode = llama_cpp.llama_decode

        def recording_decode(ctx, batch):
            self.steps.append(Counter(batch.seq_id[i][0] for i in range(batch.n_tokens)))
            return decode(ctx, batch)

        monkeypatch.setattr(llama_cpp, "llama_decode", recording_decode)

    def submit(self, index: int, prompt: str, num_predict: int, on_text=lambda: None) -> Sequence:
        self.texts[index] = []

        def emit(text, result, _logprobs):
            self.texts[index].append(text)
            on_text()
            if result is not None:
                self.finished.release()

        seq = Sequence(prompt_tokens=self.engine.tokenize(prompt, True), num_predict=num_predict, stop=[],
                       sampling=GREEDY, emit=emit, fail=lambda message: pytest.fail(message))
        self.engine.submit(seq)
        return seq

    def wait(self, count: int) -> None:
        for _ in range(count):
            assert self.finished.acquire(timeout=120)


def test_prompts_arriving_together_on_a_cpu_get_steps_of_their_own_two_decode_steps_apart(monkeypatch):
    recorded = RecordedEngine(monkeypatch)
    prompts = ["The capital of France is", "Water boils at a temperature of", "The largest planet is"]
    try:
        for index, prompt in enumerate(prompts):  # queued before the loop runs: all three arrive together
            recorded.submit(index, prompt, num_predict=8)
        recorded.engine.start()
        recorded.wait(len(prompts))
    finally:
        recorded.engine.close()

    assert all("".join(text).strip() for text in recorded.texts.values())
    # Each prompt is decoded alone (its first token waits for nothing else), and two decode steps of
    # every sequence already generating come between two prompts: the streams never wait for two.
    shapes = [sorted(step.values(), reverse=True) for step in recorded.steps[:8]]
    assert [len(shape) for shape in shapes] == [1, 1, 1, 1, 2, 2, 1, 3]
    assert [shape[0] > 1 for shape in shapes] == [True, False, False, True, False, False, True, False]
    assert all(sum(step.values()) == len(step) for step in recorded.steps[8:])  # then decoding only


def test_a_long_prompt_rides_with_the_decode_steps_until_its_last_chunk(monkeypatch):
    recorded = RecordedEngine(monkeypatch, n_batch=32)
    generating = threading.Event()
    long_prompt = "Here is a list of fruit: " + ", ".join(["apple", "pear", "plum", "cherry", "fig"] * 12) + "."
    try:
        recorded.engine.start()
        running = recorded.submit(0, "Count from one to fifty:", num_predict=60, on_text=generating.set)
        assert generating.wait(120)
        newcomer = recorded.submit(1, long_prompt, num_predict=4)
        recorded.wait(2)
    finally:
        recorded.engine.close()

    newcomer_steps = [step for step in recorded.steps if newcomer.slot in step and step[newcomer.slot] > 1]
    assert sum(step[newcomer.slot] for step in newcomer_steps) == len(newcomer.prompt_tokens) > 64
    assert all(sum(step.values()) <= 32 for step in recorded.steps)
    # The chunks before the last carry the running sequence's next token too; the last runs alone.
    assert all(step[running.slot] == 1 for step in newcomer_steps[:-1]) and len(newcomer_steps) >= 3
    assert newcomer_steps[-1] == {newcomer.slot: newcomer_steps[-1][newcomer.slot]}
    assert "".join(recorded.texts[1]).strip()
