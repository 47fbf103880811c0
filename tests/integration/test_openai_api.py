"""The OpenAI-compatible /v1 API against the real server and the bundled models.

Driven by the clients people point at Ollama's /v1: the openai SDK and LangChain (ChatOpenAI),
plus LangChain's Ollama integration on the native API.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct

import httpx
import ollama
import openai
import pytest

from tests.conftest import BASE_MODEL, CHAT_MODEL, start_server, stop_server

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def oai(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="anything", timeout=300, max_retries=0)


def test_chat_completion(oai):
    reply = oai.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=24, seed=1)
    assert re.fullmatch(r"chatcmpl-\d{1,3}", reply.id)
    assert (reply.object, reply.model, reply.system_fingerprint) == ("chat.completion", CHAT_MODEL, "fp_ollama")
    (choice,) = reply.choices
    assert choice.message.role == "assistant"
    assert "Paris" in choice.message.content and "<|im_end|>" not in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_max_tokens_cuts_with_length(oai):
    reply = oai.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Write a long story about a dragon."}], temperature=0,
        max_tokens=5,
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5


def test_chat_completion_stream(oai):
    stream = oai.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=24, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in with_choices[1:])
    assert "Paris" in "".join(c.choices[0].delta.content or "" for c in with_choices)
    finish = with_choices[-1].choices[0]
    assert finish.finish_reason in ("stop", "length") and finish.delta.content is None
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.completion_tokens > 0 and usage.usage.prompt_tokens > 0


def test_chat_log_probabilities(oai):
    reply = oai.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=6, logprobs=True, top_logprobs=2
    )
    entries = reply.choices[0].logprobs.content
    assert len(entries) == reply.usage.completion_tokens
    assert "".join(entry.token for entry in entries) == reply.choices[0].message.content
    assert all(entry.logprob <= 0 and len(entry.top_logprobs) == 2 for entry in entries)
    assert all(entry.token == entry.top_logprobs[0].token for entry in entries)

    chunks = list(
        oai.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=6, logprobs=True,
                                    stream=True)
    )
    streamed = [entry for c in chunks if c.choices and c.choices[0].logprobs for entry in c.choices[0].logprobs.content]
    assert [entry.token for entry in streamed] == [entry.token for entry in entries]


def test_chat_stream_on_the_wire(server):
    body = {"model": CHAT_MODEL, "messages": QUESTION, "stream": True, "max_tokens": 4, "temperature": 0}
    response = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.endswith("data: [DONE]\n\n")
    events = response.text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") for event in events)
    finish = json.loads(events[-2][len("data: "):])
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert "usage" not in finish


def test_completion(oai):
    reply = oai.completions.create(model=BASE_MODEL, prompt="The quick brown fox", max_tokens=8, temperature=0)
    assert re.fullmatch(r"cmpl-\d{1,3}", reply.id)
    assert (reply.object, reply.model) == ("text_completion", BASE_MODEL)
    (choice,) = reply.choices
    assert choice.text.strip() and choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 8 and reply.usage.prompt_tokens > 0


def test_completion_stream(oai):
    chunks = list(
        oai.completions.create(
            model=BASE_MODEL, prompt="The quick brown fox", max_tokens=8, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.completion_tokens == 8
    texts = [c for c in chunks if c.choices]
    assert texts[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in texts[:-1])
    # Ollama's quirk: with include_usage every chunk carries a zeroed usage.
    assert all(c.usage.total_tokens == 0 for c in texts)
    whole = oai.completions.create(model=BASE_MODEL, prompt="The quick brown fox", max_tokens=8, temperature=0)
    assert "".join(c.choices[0].text for c in texts) == whole.choices[0].text


def test_embeddings_float_and_base64(oai, server):
    texts = ["the cat sat on the mat", "quantum chromodynamics"]
    floats = oai.embeddings.create(model=CHAT_MODEL, input=texts, encoding_format="float")
    assert floats.object == "list" and floats.model == CHAT_MODEL
    assert [d.index for d in floats.data] == [0, 1]
    assert all(len(d.embedding) == 576 for d in floats.data)
    assert abs(math.sqrt(sum(v * v for v in floats.data[0].embedding)) - 1) < 1e-4
    assert floats.usage.prompt_tokens > 0 and floats.usage.total_tokens == floats.usage.prompt_tokens

    # The SDK asks for base64 by default and decodes it itself.
    default = oai.embeddings.create(model=CHAT_MODEL, input=texts)
    assert default.data[1].embedding == pytest.approx(floats.data[1].embedding, abs=1e-6)

    raw = httpx.post(
        server.base_url + "/v1/embeddings",
        json={"model": CHAT_MODEL, "input": texts[0], "encoding_format": "base64"},
        timeout=300,
    ).json()
    encoded = raw["data"][0]["embedding"]
    decoded = struct.unpack(f"<{576}f", base64.b64decode(encoded))
    assert list(decoded) == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_embeddings_dimensions(oai):
    reply = oai.embeddings.create(model=CHAT_MODEL, input="hello", dimensions=64, encoding_format="float")
    assert len(reply.data[0].embedding) == 64


def test_models_list_and_retrieve(oai):
    models = {m.id: m for m in oai.models.list()}
    assert {CHAT_MODEL, BASE_MODEL} <= set(models)
    assert models[CHAT_MODEL].object == "model" and models[CHAT_MODEL].owned_by == "library"
    assert models[CHAT_MODEL].created > 1_600_000_000
    one = oai.models.retrieve(CHAT_MODEL)
    assert (one.id, one.owned_by, one.created) == (CHAT_MODEL, "library", models[CHAT_MODEL].created)
    with pytest.raises(openai.NotFoundError) as err:
        oai.models.retrieve("no-such-model")
    assert err.value.body["type"] == "not_found_error"


def test_errors_have_openais_shape(oai, server):
    with pytest.raises(openai.NotFoundError) as missing:
        oai.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert missing.value.status_code == 404
    assert missing.value.body == {
        "message": "model 'no-such-model' not found", "type": "not_found_error", "param": None, "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=QUESTION, stream=True)
    with pytest.raises(openai.NotFoundError) as embed:
        oai.embeddings.create(model="no-such-model", input="hi")
    assert embed.value.body["message"] == 'model "no-such-model" not found, try pulling it first'

    with pytest.raises(openai.BadRequestError) as empty:
        oai.chat.completions.create(model=CHAT_MODEL, messages=[])
    assert empty.value.body == {
        "message": "[] is too short - 'messages'", "type": "invalid_request_error", "param": None, "code": None,
    }
    with pytest.raises(openai.BadRequestError) as url:
        oai.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}],
        )
    assert url.value.body["message"] == "image URLs are not currently supported, please use base64 encoded data instead"

    with pytest.raises(openai.BadRequestError) as thinking:
        oai.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, reasoning_effort="high")
    assert thinking.value.body["message"] == '"smollm2:135m" does not support thinking'
    no_thinking = oai.chat.completions.create(model=CHAT_MODEL, messages=QUESTION, reasoning_effort="none", max_tokens=2)
    assert no_thinking.choices[0].finish_reason == "length"

    bad_json = httpx.post(server.base_url + "/v1/chat/completions", content=b"{oops", timeout=30)
    assert bad_json.status_code == 400
    assert bad_json.json() == {
        "error": {"message": "invalid character 'o' looking for beginning of object key string",
                  "type": "invalid_request_error", "param": None, "code": None}
    }


def test_langchain_chat_openai(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=server.base_url + "/v1", api_key="x", model=CHAT_MODEL, temperature=0, max_tokens=16)
    assert "Paris" in llm.invoke("What is the capital of France?").content
    assert "Paris" in "".join(chunk.content for chunk in llm.stream("What is the capital of France?"))


def test_langchain_chat_ollama_and_embeddings(server):
    from langchain_ollama import ChatOllama, OllamaEmbeddings

    llm = ChatOllama(base_url=server.base_url, model=CHAT_MODEL, temperature=0, num_predict=16)
    assert "Paris" in llm.invoke("What is the capital of France?").content
    vectors = OllamaEmbeddings(base_url=server.base_url, model=CHAT_MODEL).embed_documents(["hello", "world"])
    assert len(vectors) == 2 and all(len(v) == 576 for v in vectors)


def test_api_key(tmp_path):
    server = start_server(tmp_path, HERD_API_KEY="s3cret", HERD_NO_BUNDLED="1")
    try:
        assert httpx.get(server.base_url + "/").status_code == 200
        assert httpx.get(server.base_url + "/api/version").status_code == 200

        wrong = openai.OpenAI(base_url=server.base_url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            wrong.models.list()
        assert refused.value.status_code == 401
        assert refused.value.body == {"message": "unauthorized", "type": "api_error", "param": None, "code": None}

        right = openai.OpenAI(base_url=server.base_url + "/v1", api_key="s3cret", max_retries=0)
        assert list(right.models.list()) == []

        with pytest.raises(ollama.ResponseError) as native:
            ollama.Client(host=server.base_url).list()
        assert (native.value.status_code, native.value.error) == (401, "unauthorized")
        keyed = ollama.Client(host=server.base_url, headers={"Authorization": "Bearer s3cret"})
        assert keyed.list().models == []
    finally:
        stop_server(server)
