"""The gateway app over HTTP against a fake core (a grpc.aio server speaking herd.v1).

Each test starts the fake core and the app on free ports in one event loop and calls the app
with httpx, as a client would.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from importlib.metadata import version

import grpc
import httpx
import pytest

from herd.rest.errors import error_from_rpc, http_status_for
from herd.rest.request_id import request_id_for
from herd.rest.settings import GatewaySettings, listen_address
from herd.v1 import common_pb2, inference_pb2, models_pb2
from tests.fake_core import Abort, FakeCore, Hold, gateway, run


def generate_piece(text: str, model: str = "smollm2") -> inference_pb2.GenerateResponse:
    return inference_pb2.GenerateResponse(model=model, response=text)


def generate_done(model: str = "smollm2") -> inference_pb2.GenerateResponse:
    return inference_pb2.GenerateResponse(
        model=model,
        done=True,
        done_reason=common_pb2.DONE_REASON_STOP,
        context=[1, 2],
        metrics=common_pb2.Metrics(total_duration_ns=100, eval_count=2, eval_duration_ns=50),
    )


def lines(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines()]


# --- router conventions ----------------------------------------------------------------------------


def test_root_version_and_gins_404_and_405():
    async def scenario():
        async with gateway(FakeCore()) as client:
            root = await client.get("/")
            assert (root.status_code, root.text) == (200, "Ollama is running")
            assert (await client.head("/")).status_code == 200
            got = await client.get("/api/version")
            assert got.json() == {"version": "1.2.3"}
            assert got.headers["content-type"] == "application/json; charset=utf-8"
            assert (await client.head("/api/version")).status_code == 200

            missing = await client.get("/api/nothing")
            assert (missing.status_code, missing.text) == (404, "404 page not found")
            assert missing.headers["content-type"] == "text/plain"
            wrong = await client.get("/api/generate")
            assert (wrong.status_code, wrong.text) == (405, "405 method not allowed")
            assert wrong.headers["content-type"] == "text/plain"
            assert (await client.post("/api/ps")).status_code == 405
            assert (await client.delete("/")).status_code == 405

    run(scenario)


def test_request_ids_are_kept_when_sane_made_up_otherwise_and_sent_to_core():
    async def scenario():
        core = FakeCore()
        core.unary_answers["List"] = models_pb2.ListModelsResponse()
        async with gateway(core) as client:
            kept = await client.get("/api/tags", headers={"X-Request-Id": "trace-42.a_b"})
            assert kept.headers["x-request-id"] == "trace-42.a_b"
            replaced = await client.get("/api/tags", headers={"X-Request-Id": "two words; <script>"})
            assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])
            assert core.request_ids == ["trace-42.a_b", replaced.headers["x-request-id"]]
            assert re.fullmatch(r"[0-9a-f]{32}", (await client.get("/nowhere")).headers["x-request-id"])

    run(scenario)


# --- generate ------------------------------------------------------------------------------------


def test_generate_streams_ndjson_and_sends_the_translated_request():
    async def scenario():
        core = FakeCore()
        core.stream_script = [generate_piece("Hel"), generate_piece("lo"), generate_done()]
        async with gateway(core) as client:
            response = await client.post(
                "/api/generate",
                json={"model": "smollm2", "prompt": "hi", "keep_alive": "1m", "options": {"temperature": 0}},
            )
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/x-ndjson"
            chunks = lines(response)
            assert [c["response"] for c in chunks] == ["Hel", "lo", ""]
            assert [c["done"] for c in chunks] == [False, False, True]
            assert set(chunks[0]) == {"model", "created_at", "response", "done"}
            assert chunks[-1]["done_reason"] == "stop"
            assert chunks[-1]["context"] == [1, 2]
            assert (chunks[-1]["total_duration"], chunks[-1]["eval_count"]) == (100, 2)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", chunks[0]["created_at"])
            assert response.text.endswith("\n")
        method, request = core.calls[0]
        assert method == "Generate"
        assert (request.model, request.prompt, request.keep_alive_ns) == ("smollm2", "hi", 60_000_000_000)
        assert request.options.HasField("temperature")

    run(scenario)


def test_generate_stream_false_returns_one_object():
    async def scenario():
        core = FakeCore()
        core.stream_script = [generate_piece("Hel"), generate_piece("lo"), generate_done()]
        async with gateway(core, inject_channel=True) as client:
            response = await client.post("/api/generate", json={"model": "smollm2", "prompt": "hi", "stream": False})
            assert response.headers["content-type"] == "application/json; charset=utf-8"
            body = response.json()
            assert (body["response"], body["done"], body["done_reason"]) == ("Hello", True, "stop")
            assert body["eval_duration"] == 50

    run(scenario)


def test_an_error_after_the_first_chunk_is_one_error_line_and_the_status_stays_200():
    async def scenario():
        core = FakeCore()
        core.stream_script = [generate_piece("Hel"), Abort(grpc.StatusCode.INTERNAL, "llama runner process has terminated")]
        async with gateway(core) as client:
            response = await client.post("/api/generate", json={"model": "smollm2", "prompt": "hi"})
            assert response.status_code == 200
            assert lines(response) == [
                {"model": "smollm2", "created_at": lines(response)[0]["created_at"], "response": "Hel", "done": False},
                {"error": "llama runner process has terminated"},
            ]

    run(scenario)


def test_an_error_before_the_first_chunk_is_a_real_status():
    async def scenario():
        core = FakeCore()
        core.stream_script = [Abort(grpc.StatusCode.NOT_FOUND, "model 'nope:latest' not found")]
        async with gateway(core) as client:
            for stream in (True, False):
                response = await client.post("/api/generate", json={"model": "nope", "prompt": "x", "stream": stream})
                assert response.status_code == 404
                assert response.json() == {"error": "model 'nope' not found"}
                assert response.headers["content-type"] == "application/json; charset=utf-8"
            core.stream_script = [Abort(grpc.StatusCode.FAILED_PRECONDITION, '"gemma3:270m-pt" does not support chat')]
            chat = await client.post("/api/chat", json={"model": "gemma3:270m-pt", "messages": []})
            assert (chat.status_code, chat.json()) == (400, {"error": '"gemma3:270m-pt" does not support chat'})

    run(scenario)


def test_a_client_that_leaves_cancels_the_generation_in_core():
    async def scenario():
        core = FakeCore()
        core.stream_script = [generate_piece("first"), Hold()]
        async with gateway(core) as client:
            async with client.stream("POST", "/api/generate", json={"model": "smollm2", "prompt": "hi"}) as response:
                async for line in response.aiter_lines():
                    assert json.loads(line)["response"] == "first"
                    break
            await asyncio.wait_for(core.cancelled.wait(), timeout=5)

    run(scenario)


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"", 400, "missing request body"),
        (b"{", 400, "unexpected EOF"),
        (b"hello", 400, "invalid character 'h' looking for beginning of value"),
        (b'{"model":"m","stream":"no"}', 400,
         "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"),
        (b'{"model":"","prompt":"x"}', 404, "model '' not found"),
        (b'{"model":"m","keep_alive":"10"}', 400, 'time: missing unit in duration "10"'),
        (b'{"model":"m","options":{"num_ctx":"big"}}', 500, 'option "num_ctx" must be of type integer'),
        (b'{"model":"m","raw":true,"template":"t"}', 400, "raw mode does not support template, system, or context"),
    ],
)
def test_generate_refusals_never_reach_core(body, status, message):
    async def scenario():
        core = FakeCore()
        async with gateway(core) as client:
            response = await client.post("/api/generate", content=body)
            assert (response.status_code, response.json()) == (status, {"error": message})
        assert core.calls == []

    run(scenario)


@pytest.mark.parametrize("think, sent", [(True, "true"), (False, "false"), ("high", "high")])
def test_think_goes_to_core_which_decides_whether_the_model_can(think, sent):
    async def scenario():
        core = FakeCore()
        async with gateway(core) as client:
            await client.post("/api/chat", json={"model": "smollm2", "messages": [], "think": think})
        ((method, request),) = core.calls
        assert (method, request.think) == ("Chat", sent)

    run(scenario)


# --- chat ----------------------------------------------------------------------------------------


def test_chat_streams_and_drains():
    async def scenario():
        core = FakeCore()
        core.stream_script = [
            inference_pb2.ChatResponse(model="smollm2", message=inference_pb2.Message(role="assistant", content="Hi")),
            inference_pb2.ChatResponse(model="smollm2", message=inference_pb2.Message(role="assistant", content="!")),
            inference_pb2.ChatResponse(
                model="smollm2", message=inference_pb2.Message(role="assistant"), done=True,
                done_reason=common_pb2.DONE_REASON_STOP, metrics=common_pb2.Metrics(eval_count=2),
            ),
        ]
        messages = [{"role": "User", "content": "hello"}]
        async with gateway(core) as client:
            streamed = lines(await client.post("/api/chat", json={"model": "smollm2", "messages": messages}))
            assert [c["message"] for c in streamed] == [
                {"role": "assistant", "content": "Hi"},
                {"role": "assistant", "content": "!"},
                {"role": "assistant", "content": ""},
            ]
            assert streamed[-1]["done_reason"] == "stop"
            assert "context" not in streamed[-1]
            whole = (await client.post("/api/chat", json={"model": "smollm2", "messages": messages, "stream": False})).json()
            assert whole["message"] == {"role": "assistant", "content": "Hi!"}
            assert whole["eval_count"] == 2
        assert core.calls[0][1].messages[0].role == "user"

    run(scenario)


def test_chat_not_found_and_model_required():
    async def scenario():
        core = FakeCore()
        core.stream_script = [Abort(grpc.StatusCode.NOT_FOUND, "model 'ghost:latest' not found")]
        async with gateway(core) as client:
            missing = await client.post("/api/chat", json={"model": "ghost", "messages": []})
            assert (missing.status_code, missing.json()) == (404, {"error": "model 'ghost' not found"})
            nameless = await client.post("/api/chat", json={"messages": []})
            assert (nameless.status_code, nameless.json()) == (400, {"error": "model is required"})

    run(scenario)


# --- embeddings ----------------------------------------------------------------------------------


def test_embed_and_its_errors():
    async def scenario():
        core = FakeCore()
        core.unary_answers["Embed"] = inference_pb2.EmbedResponse(
            model="emb", embeddings=[inference_pb2.Embedding(values=[0.6, 0.8])],
            metrics=common_pb2.Metrics(total_duration_ns=9, prompt_eval_count=3),
        )
        async with gateway(core) as client:
            ok = await client.post("/api/embed", json={"model": "emb", "input": "hello", "truncate": False})
            assert ok.json() == {"model": "emb", "embeddings": [[0.6000000238418579, 0.800000011920929]],
                                 "total_duration": 9, "prompt_eval_count": 3}
            assert core.calls[0][1].truncate is False

            bad_input = await client.post("/api/embed", json={"model": "emb", "input": 3})
            assert (bad_input.status_code, bad_input.json()) == (400, {"error": "invalid input type"})

            core.unary_answers["Embed"] = Abort(grpc.StatusCode.NOT_FOUND, "model 'x:latest' not found")
            missing = await client.post("/api/embed", json={"model": "x", "input": "hello"})
            assert (missing.status_code, missing.json()) == (404, {"error": 'model "x" not found, try pulling it first'})

            core.unary_answers["Embed"] = Abort(grpc.StatusCode.INVALID_ARGUMENT, "the input length exceeds the context length")
            too_long = await client.post("/api/embed", json={"model": "emb", "input": "long", "truncate": False})
            assert (too_long.status_code, too_long.json()) == (400, {"error": "the input length exceeds the context length"})

            busy = "server busy, please try again.  maximum pending requests exceeded"
            core.unary_answers["Embed"] = Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, busy)
            queued = await client.post("/api/embed", json={"model": "emb", "input": "x"})
            assert (queued.status_code, queued.json()) == (503, {"error": busy})

    run(scenario)


def test_legacy_embeddings():
    async def scenario():
        core = FakeCore()
        core.unary_answers["Embed"] = inference_pb2.EmbedResponse(embeddings=[inference_pb2.Embedding(values=[2.0, 0.5])])
        async with gateway(core) as client:
            response = await client.post("/api/embeddings", json={"model": "emb", "prompt": "hello"})
            assert response.json() == {"embedding": [2.0, 0.5]}
            assert core.calls[0][1].normalize is False
            core.unary_answers["Embed"] = inference_pb2.EmbedResponse(model="emb")
            assert (await client.post("/api/embeddings", json={"model": "emb"})).json() == {"embedding": []}
            nameless = await client.post("/api/embeddings", json={"prompt": "x"})
            assert (nameless.status_code, nameless.json()) == (400, {"error": "model is required"})

    run(scenario)


# --- tags, show, ps ------------------------------------------------------------------------------


def test_tags_show_and_ps():
    async def scenario():
        core = FakeCore()
        summary = models_pb2.ModelSummary(name="smollm2:135m", size=10, digest="ab" * 32,
                                          details=common_pb2.ModelDetails(format="gguf", family="llama"))
        summary.modified_at.GetCurrentTime()
        core.unary_answers["List"] = models_pb2.ListModelsResponse(models=[summary])
        core.unary_answers["Show"] = models_pb2.ShowModelResponse(template="{{ .Prompt }}", model_info_json="{}")
        core.unary_answers["ListRunning"] = models_pb2.ListRunningResponse(
            models=[models_pb2.RunningModel(name="smollm2:135m", size=10, context_length=4096)]
        )
        async with gateway(core) as client:
            tags = (await client.get("/api/tags")).json()
            assert tags["models"][0]["name"] == tags["models"][0]["model"] == "smollm2:135m"
            assert tags["models"][0]["details"]["families"] is None
            head = await client.head("/api/tags")
            assert (head.status_code, head.content) == (200, b"")

            shown = (await client.post("/api/show", json={"name": "smollm2:135m"})).json()
            assert shown["template"] == "{{ .Prompt }}"
            assert shown["model_info"] == {}
            assert "license" not in shown and "system" not in shown
            assert core.calls[-1][1].model == "smollm2:135m"

            ps = (await client.get("/api/ps")).json()
            assert ps["models"][0]["context_length"] == 4096
            assert ps["models"][0]["expires_at"] > "2300"  # kept forever

            core.unary_answers["Show"] = Abort(grpc.StatusCode.NOT_FOUND, "model 'ghost:latest' not found")
            missing = await client.post("/api/show", json={"model": "ghost"})
            assert (missing.status_code, missing.json()) == (404, {"error": "model 'ghost:latest' not found"})
            nameless = await client.post("/api/show", json={})
            assert (nameless.status_code, nameless.json()) == (400, {"error": "model is required"})

    run(scenario)


# --- core trouble ----------------------------------------------------------------------------------


def test_core_down_is_a_503_without_connection_details():
    async def scenario():
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            closed_port = unused.getsockname()[1]
        async with gateway(FakeCore(), core_address=f"127.0.0.1:{closed_port}") as client:
            response = await client.get("/api/tags")
            assert response.status_code == 503
            assert response.json() == {"error": "herd core is unavailable, please try again"}
            streamed = await client.post("/api/generate", json={"model": "m", "prompt": "x"})
            assert streamed.status_code == 503

    run(scenario)


def test_an_unexpected_core_failure_does_not_leak_its_text():
    async def scenario():
        core = FakeCore()
        core.unary_answers["List"] = RuntimeError("open /home/user/.ollama/models/blobs/sha256-x: permission denied")
        async with gateway(core) as client:
            response = await client.get("/api/tags")
            assert response.status_code == 500
            assert "/home/user" not in response.text
            assert response.json() == {"error": "unexpected error in herd core"}

    run(scenario)


# --- the status table, settings, request ids --------------------------------------------------------


@pytest.mark.parametrize(
    "code, status",
    [
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 503),
        (grpc.StatusCode.CANCELLED, 499),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 500),
        (grpc.StatusCode.UNIMPLEMENTED, 500),
    ],
)
def test_grpc_status_to_http_status(code, status):
    assert http_status_for(code) == status


def test_cancelled_reads_as_ollamas_request_canceled():
    error = grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "Locally cancelled")
    mapped = error_from_rpc(error)
    assert (mapped.status, mapped.message) == (499, "request canceled")


@pytest.mark.parametrize(
    "ollama_host, address",
    [
        ("", ("127.0.0.1", 11434)),
        ("0.0.0.0", ("0.0.0.0", 11434)),
        (":8080", ("0.0.0.0", 8080)),
        ("example.com", ("example.com", 11434)),
        ("http://example.com", ("example.com", 80)),
        ("https://example.com", ("example.com", 443)),
        ("http://10.0.0.1:9000/some/path", ("10.0.0.1", 9000)),
        ("[::1]:9000", ("::1", 9000)),
        ("::1", ("::1", 11434)),
        ("127.0.0.1:99999", ("127.0.0.1", 11434)),
        ("127.0.0.1:abc", ("127.0.0.1", 11434)),
        ("https://host:", ("host", 443)),
    ],
)
def test_ollama_host_rules(ollama_host, address):
    assert listen_address(ollama_host) == address


def test_settings_from_the_environment():
    settings = GatewaySettings.from_env({"OLLAMA_HOST": ' "0.0.0.0:1234" ', "HERD_GRPC_HOST": "'core:7'"})
    assert (settings.host, settings.port, settings.core_address) == ("0.0.0.0", 1234, "core:7")
    assert settings.version == version("herd")
    defaults = GatewaySettings.from_env({})
    assert (defaults.host, defaults.port, defaults.core_address) == ("127.0.0.1", 11434, "127.0.0.1:50051")


@pytest.mark.parametrize(
    "sent, kept",
    [("abc-123_x.y", True), ("a" * 64, True), ("a" * 65, False), ("has space", False), ("", False), (None, False),
     ("new\nline", False)],
)
def test_request_id_sanity(sent, kept):
    made = request_id_for(sent)
    assert (made == sent) is kept
    if not kept:
        assert re.fullmatch(r"[0-9a-f]{32}", made)
