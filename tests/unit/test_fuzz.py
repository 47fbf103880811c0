"""Property tests on the parsers that take hostile input: whatever the bytes, only the parser's own error.

Hypothesis runs derandomized (the same examples on every run, so CI is deterministic) and with
modest example counts, so each property takes a few seconds.
"""

from __future__ import annotations

import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herd.core.store.gguf import GGUFError, read_gguf
from herd.core.templates.gotemplate import GoTemplate, TemplateError
from herd.modelfile import ModelfileError, parse_modelfile
from herd.rest.errors import ApiError
from herd.rest.ollama import translate as ollama
from herd.rest.openai import responses as openai_responses
from herd.rest.openai import translate as openai
from tests.unit.test_gguf import valid_file

# No example database either: every run, here and in CI, tests exactly the same inputs.
FUZZ = settings(derandomize=True, database=None, max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# --- GGUF header reader ------------------------------------------------------------------------

VALID = valid_file()
# Values that hit the reader's edges when written over a count, a length, a type or an offset.
EDGE_INTEGERS = [0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 31, 32, 63, 64, 255, 256, 512, 513, 2**16, 2**31 - 1, 2**31,
                 2**32 - 1, 2**40, 2**63 - 1, 2**63, 2**64 - 1]


@st.composite
def mutated_gguf(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["byte", "u32", "u64", "cut", "insert"]))
        if kind == "byte":
            data[position] = draw(st.integers(0, 255))
        elif kind in ("u32", "u64"):
            bits = 32 if kind == "u32" else 64
            value = draw(st.sampled_from([v for v in EDGE_INTEGERS if v < 2**bits]))
            data[position : position + bits // 8] = value.to_bytes(bits // 8, "little")
        elif kind == "cut":
            del data[position:]
            if not data:
                break
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@FUZZ
@given(data=mutated_gguf())
def test_mutated_gguf_headers_raise_only_gguf_error_fast_and_small(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(data)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        read_gguf(path)
    except GGUFError:
        pass
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 8 << 20  # a tiny file never makes the reader allocate what its header claims


def test_the_mutation_strategy_reaches_both_outcomes(tmp_path: Path) -> None:
    """Guards the property above against a strategy that only ever produces one kind of file."""
    outcomes: set[str] = set()

    @settings(derandomize=True, database=None, max_examples=200, deadline=None)
    @given(data=mutated_gguf())
    def collect(data: bytes) -> None:
        path = tmp_path / "collect.gguf"
        path.write_bytes(data)
        try:
            read_gguf(path)
            outcomes.add("read")
        except GGUFError:
            outcomes.add("refused")

    collect()
    assert outcomes == {"read", "refused"}


# --- Modelfile parser --------------------------------------------------------------------------

MODELFILE_PIECES = ["FROM ", "PARAMETER ", "TEMPLATE ", "SYSTEM ", "ADAPTER ", "LICENSE ", "MESSAGE ", "REQUIRES ",
                    "from ", "parameter ", "temperature ", "num_ctx ", "stop ", "user ", "assistant ", "bogus ",
                    '"', '"""', "#", "\n", "\r\n", " ", "\t", "\\", "1", "-1", "0.5", "1e99", "nan", "true",
                    "model", "./x.gguf", "{{ .Prompt }}", "\ufeff", "é", "\0"]
modelfile_text = st.one_of(
    st.lists(st.sampled_from(MODELFILE_PIECES), max_size=40).map("".join),
    st.text(max_size=200),
)


@FUZZ
@given(text=modelfile_text)
def test_any_modelfile_text_parses_or_raises_modelfile_error(text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parse_modelfile(text)
        except ModelfileError:
            pass


# --- Go templates ------------------------------------------------------------------------------

TEMPLATE_PIECES = ["{{", "}}", "{{-", "-}}", " ", ".", ".Prompt", ".Messages", ".System", ".Tools", "$", "$x", ":=",
                   "=", "|", "(", ")", "range", "if", "else", "end", "with", "define", "template", "block", "break",
                   "continue", "len", "index", "slice", "eq", "ne", "lt", "and", "or", "not", "print", "printf",
                   "json", "\"%s\"", "\"a\"", "`raw`", "'c'", "1", "-1", "1e9", "nil", "true", ",", "/*", "*/",
                   "\n", "text", "$.Prompt", ".Role", ".Content", "call", "html", "urlquery", "toJson"]
template_source = st.one_of(
    st.lists(st.sampled_from(TEMPLATE_PIECES), max_size=30).map("".join),
    st.text(max_size=100),
)
TEMPLATE_DATA = {
    "Prompt": "hi",
    "System": "sys",
    "Messages": [{"Role": "user", "Content": "hi"}, {"Role": "assistant", "Content": "yo"}],
    "Tools": [],
    "Response": "",
}


@FUZZ
@given(source=template_source)
def test_any_go_template_parses_and_runs_or_raises_template_error(source: str) -> None:
    started = time.perf_counter()
    try:
        GoTemplate(source).execute(TEMPLATE_DATA)
    except TemplateError:
        pass
    assert time.perf_counter() - started < 1.0


# --- request translators -----------------------------------------------------------------------

REQUEST_KEYS = ["model", "prompt", "suffix", "system", "template", "context", "stream", "raw", "format", "images",
                "options", "keep_alive", "think", "messages", "tools", "logprobs", "top_logprobs", "input",
                "truncate", "dimensions", "role", "content", "tool_calls", "function", "name", "arguments", "type",
                "parameters", "files", "adapters", "from", "quantize", "license", "insecure", "source",
                "destination", "num_predict", "temperature", "seed", "stop", "num_ctx", "top_k", "max_tokens",
                "max_completion_tokens", "response_format", "json_schema", "schema", "stream_options",
                "include_usage", "n", "tool_choice", "image_url", "url", "reasoning_effort", "reasoning", "effort",
                "encoding_format", "frequency_penalty", "presence_penalty", "top_p", "user", "instructions",
                "previous_response_id", "text", "tool_call_id", "verbose"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["m", "user", "assistant", "tool", "system", "json", "high", "function",
                                           "text", "image_url", "data:image/png;base64,AAAA", "5m", "-1"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(REQUEST_KEYS) | st.text(max_size=5), children, max_size=6),
    ),
    max_leaves=25,
)
request_bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(REQUEST_KEYS), json_values, max_size=8).map(lambda body: {"model": "m", **body}),
)

TRANSLATORS: dict[str, Callable[[Any], Any]] = {
    "ollama generate": ollama.generate_request,
    "ollama chat": ollama.chat_request,
    "ollama embed": ollama.embed_request,
    "ollama embeddings": ollama.embeddings_request,
    "ollama show": ollama.show_request,
    "ollama copy": ollama.copy_request,
    "ollama delete": ollama.delete_request,
    "ollama create": ollama.create_request,
    "ollama pull/push": ollama.transfer_request,
    "openai chat": openai.chat_request,
    "openai completions": openai.completion_request,
    "openai embeddings": openai.embeddings_request,
    "openai responses": openai_responses.responses_request,
}


# Ollama answers these bad requests with a 500 (a `format` neither "json" nor an object; an option
# of the wrong type, found when the runner is scheduled); herd keeps Ollama's status.
OLLAMAS_500S = ("invalid format: ", "option ")


@pytest.mark.parametrize("translate", TRANSLATORS.values(), ids=TRANSLATORS.keys())
def test_any_json_body_translates_or_is_a_4xx_api_error(translate: Callable[[Any], Any]) -> None:
    @settings(derandomize=True, database=None, max_examples=150, deadline=None)
    @given(body=request_bodies)
    def check(body: Any) -> None:
        try:
            translate(body)
        except ApiError as exc:
            assert 400 <= exc.status < 500 or (exc.status == 500 and exc.message.startswith(OLLAMAS_500S)), (
                exc.status, exc.message)

    check()

