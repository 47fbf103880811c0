"""Repetition penalties: herd's own pass over the window against llama.cpp's penalties sampler."""

from __future__ import annotations

import ctypes
import threading
from dataclasses import replace

import llama_cpp
import numpy as np
import pytest

from herd.core.runner.engine import Engine, EngineConfig, RepetitionPenalties, SamplingParams, Sequence
from herd.core.store.bundled import locate_smollm2

pytestmark = pytest.mark.integration

STRONG = SamplingParams(temperature=0.8, top_k=40, top_p=0.9, min_p=0.0, typical_p=1.0, repeat_last_n=8,
                        repeat_penalty=1.4, presence_penalty=0.6, frequency_penalty=0.3, seed=11)


def llama_cpp_penalties(last_n: int, p: SamplingParams):
    return llama_cpp.llama_sampler_init_penalties(0, last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty)


def test_the_window_is_penalised_bit_for_bit_as_llama_cpp_does_over_the_whole_vocabulary():
    rng = np.random.default_rng(5)
    n_vocab = 262_144  # Gemma 3's
    logits = rng.normal(0, 4, n_vocab).astype(np.float32)  # both signs: the repeat penalty treats them apart
    ours = RepetitionPenalties(STRONG.repeat_last_n, STRONG.repeat_penalty, STRONG.frequency_penalty,
                               STRONG.presence_penalty)
    theirs = llama_cpp_penalties(STRONG.repeat_last_n, STRONG)
    try:
        # Repeats within the window, and more tokens than it holds: the oldest leave it.
        for token in [3, 9, 3, 262_143, 0, 9, 9, 41, 5, 3, 77, 9, 1000, 41]:
            ours.accept(token)
            llama_cpp.llama_sampler_accept(theirs, token)
            expected = (llama_cpp.llama_token_data * n_vocab)()
            view = np.ctypeslib.as_array(expected)
            view["id"], view["logit"] = np.arange(n_vocab), logits
            candidates = llama_cpp.llama_token_data_array(data=expected, size=n_vocab, selected=-1, sorted=False)
            llama_cpp.llama_sampler_apply(theirs, ctypes.byref(candidates))

            penalised = logits.copy()
            ids, before = ours.apply(penalised)
            assert np.array_equal(penalised, view["logit"])
            penalised[ids] = before
            assert np.array_equal(penalised, logits)  # what apply hands back restores the logits
    finally:
        llama_cpp.llama_sampler_free(theirs)


class LlamaCppPenaltiesEngine(Engine):
    """llama.cpp's penalties sampler first in every sequence's chain, fed the prompt as llama-server feeds it."""

    def _make_penalties(self, p: SamplingParams, prompt: list[int]):
        return None

    def submit(self, seq: Sequence) -> None:  # before the engine starts: nothing samples yet
        super().submit(seq)
        for token in seq.prompt_tokens:
            llama_cpp.llama_sampler_accept(seq.sampler, token)

    def _make_sampler(self, p: SamplingParams):
        rest = super()._make_sampler(p)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp_penalties(p.repeat_last_n, p))
        while llama_cpp.llama_sampler_chain_n(rest):
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_chain_remove(rest, 0))
        llama_cpp.llama_sampler_free(rest)
        return chain


def generate(engine_class: type[Engine], prompt: str, grammar: str,
             sampling: SamplingParams = STRONG) -> tuple[str, list[tuple[str, float]]]:
    engine = engine_class(EngineConfig(model_path=str(locate_smollm2()), n_ctx=512, n_parallel=2, n_threads=2,
                                       n_gpu_layers=0))
    texts, logprobs, done = [], [], threading.Event()

    def emit(text, result, entries):
        texts.append(text)
        logprobs.extend((entry.token, entry.logprob) for entry in entries)
        if result is not None:
            done.set()

    try:
        engine.submit(Sequence(prompt_tokens=engine.tokenize(prompt, True), num_predict=48, stop=[], sampling=sampling,
                               emit=emit, fail=pytest.fail, grammar=grammar, top_logprobs=2))
        engine.start()
        assert done.wait(120)
    finally:
        engine.close()
    return "".join(texts), logprobs


@pytest.mark.parametrize("grammar", ["", 'root ::= ("la" | "lo" | " ")+'], ids=["free", "grammar"])
def test_the_engine_samples_the_same_tokens_with_the_same_log_probabilities_as_llama_cpps_penalties(grammar):
    prompt = "Sing a song that repeats one word: la la la la la"
    text, logprobs = generate(Engine, prompt, grammar)
    expected_text, expected_logprobs = generate(LlamaCppPenaltiesEngine, prompt, grammar)

    assert text.strip() and text == expected_text
    # Log probabilities are of the model's own distribution, before any penalty.
    assert logprobs == expected_logprobs
    unpenalised, _ = generate(Engine, prompt, grammar, replace(STRONG, repeat_penalty=1.0, presence_penalty=0.0,
                                                               frequency_penalty=0.0))
    assert unpenalised != text  # the penalties took part in the picks compared


def test_the_window_starts_with_the_prompts_last_tokens_as_in_ollama():
    greedy = replace(STRONG, temperature=0.0, repeat_last_n=16, repeat_penalty=2.0, presence_penalty=2.0)
    prompt = "1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2,"
    plain, _ = generate(Engine, prompt, "", replace(greedy, repeat_penalty=1.0, presence_penalty=0.0,
                                                     frequency_penalty=0.0))
    penalised, _ = generate(Engine, prompt, "", greedy)

    assert plain.startswith(" 3, 1, 2")  # what the model says next unpenalised
    assert not penalised.startswith(" 3")  # the prompt's "3" is in the window before the first pick
