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


def test_prompts_arriving_together_on_a_cpu_are_prefilled_one_per_step_while_the_others_decode(monkeypatch):
    engine = Engine(EngineConfig(model_path=str(locate_smollm2()), n_ctx=512, n_parallel=4, n_threads=2,
                                 n_gpu_layers=0))
    steps: list[Counter] = []  # tokens per sequence id in each decode
    decode = llama_cpp.llama_decode

    def recording_decode(ctx, batch):
        steps.append(Counter(batch.seq_id[i][0] for i in range(batch.n_tokens)))
        return decode(ctx, batch)

    monkeypatch.setattr(llama_cpp, "llama_decode", recording_decode)
    finished = threading.Semaphore(0)
    texts: dict[int, list[str]] = {}

    def sequence(index: int, prompt: str) -> Sequence:
        texts[index] = []

        def emit(text, result, _logprobs):
            texts[index].append(text)
            if result is not None:
                finished.release()

        return Sequence(prompt_tokens=engine.tokenize(prompt, True), num_predict=8, stop=[], sampling=GREEDY,
                        emit=emit, fail=lambda message: pytest.fail(message))

    prompts = ["The capital of France is", "Water boils at a temperature of", "The largest planet is"]
    try:
        for index, prompt in enumerate(prompts):  # queued before the loop runs: all three arrive together
            engine.submit(sequence(index, prompt))
        engine.start()
        for _ in prompts:
            assert finished.acquire(timeout=120)
    finally:
        engine.close()

    assert all("".join(text).strip() for text in texts.values())
    prompt_steps = [step for step in steps if any(count > 1 for count in step.values())]
    assert len(prompt_steps) == len(prompts)  # one prompt per step ...
    assert all(sum(count > 1 for count in step.values()) == 1 for step in prompt_steps)
    # ... and the second and third ride along with the decode tokens of those already generating.
    assert [sum(count == 1 for count in step.values()) for step in prompt_steps] == [0, 1, 2]
