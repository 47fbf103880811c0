"""OpenAI /v1 bodies ⇄ herd.v1 messages, and the /v1 routes over HTTP against a fake core.

The translators are pure: each test writes what a client sends (or what core answers) as a literal
and checks the proto (or the JSON and SSE a client gets), including Ollama's error words.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from herd.rest.errors import ApiError
from herd.rest.openai import translate
from herd.rest.openai.parsing import parse_body
from herd.v1 import common_pb2, inference_pb2, models_pb2
from tests.fake_core import Abort, FakeCore, Hold, gateway, run

USER = {"role": "user", "content": "hi"}
PNG = b"\x89PNG\r\n\x1a\n"
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


def refused(call, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    return caught.value.status, caught.value.message


def chat(**fields) -> inference_pb2.ChatRequest:
    return translate.chat_request({"model": "m", "messages": [USER], **fields}).request


def options(**fields) -> dict:
    """The options a chat body sets, by name (unset fields absent)."""
    pb = chat(**fields).options
    return {field.name: value for field, value in pb.ListFields()}


# --- bodies and Go's words ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "EOF"),
        (b"  \n", "EOF"),
        (b"{", "unexpected EOF"),
        (b"hello", "invalid character 'h' looking for beginning of value"),
    ],
)
def test_bad_bodies_get_gins_messages(body, message):
    assert refused(parse_body, body) == (400, message)


@pytest.mark.parametrize(
    "document, message",
    [
        ([], "json: cannot unmarshal array into Go value of type openai.ChatCompletionRequest"),
        ({"messages": [USER], "stream": "yes"},
         "json: cannot unmarshal string into Go struct field ChatCompletionRequest.stream of type bool"),
        ({"messages": [USER], "temperature": "hot"},
         "json: cannot unmarshal string into Go struct field ChatCompletionRequest.temperature of type float64"),
        ({"messages": [USER], "temperature": True},
         "json: cannot unmarshal bool into Go struct field ChatCompletionRequest.temperature of type float64"),
        ({"messages": [USER], "max_tokens": 1.5},
         "json: cannot unmarshal number 1.5 into Go struct field ChatCompletionRequest.max_tokens of type int"),
        ({"messages": "hi"},
         "json: cannot unmarshal string into Go struct field ChatCompletionRequest.messages of type []openai.Message"),
        ({"messages": [{"role": 1, "content": "x"}]},
         "json: cannot unmarshal number into Go struct field Message.messages.role of type string"),
        ({"messages": [USER], "stream_options": True},
         "json: cannot unmarshal bool into Go struct field ChatCompletionRequest.stream_options"
         " of type openai.StreamOptions"),
        ({"messages": [USER], "response_format": "json"},
         "json: cannot unmarshal string into Go struct field ChatCompletionRequest.response_format"
         " of type openai.ResponseFormat"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}]},
         "json: cannot unmarshal object into Go struct field .messages.tool_calls.function.arguments of type string"),
    ],
)
def test_wrong_types_get_gos_decoder_messages(document, message):
    assert refused(translate.chat_request, document) == (400, message)


def test_completion_and_embedding_bodies_name_their_own_structs():
    assert refused(translate.completion_request, {"model": "m", "prompt": ["a", "b"]}) == (
        400,
        "json: cannot unmarshal array into Go struct field CompletionRequest.prompt of type string",
    )
    assert refused(translate.embeddings_request, {"model": "m", "input": "x", "dimensions": "8"}) == (
        400,
        "json: cannot unmarshal string into Go struct field EmbedRequest.dimensions of type int",
    )


def test_a_float_out_of_range_keeps_the_number_as_written():
    document = parse_body(b'{"model": "m", "top_p": 1e39}')
    assert refused(translate.completion_request, document) == (
        400,
        "json: cannot unmarshal number 1e39 into Go struct field CompletionRequest.top_p of type float32",
    )
    document = parse_body(b'{"model": "m", "messages": [], "temperature": -1E400}')
    assert refused(translate.chat_request, document) == (
        400,
        "json: cannot unmarshal number -1E400 into Go struct field ChatCompletionRequest.temperature of type float64",
    )


# --- /v1/chat/completions requests ----------------------------------------------------------------


@pytest.mark.parametrize("document", [{"model": "m"}, {"model": "m", "messages": []}, {"model": "m", "messages": None}, None])
def test_no_messages_is_refused_with_openais_words(document):
    assert refused(translate.chat_request, document) == (400, "[] is too short - 'messages'")


def test_defaults_temperature_and_top_p_one_stream_false():
    call = translate.chat_request({"model": "smollm2:135m", "messages": [USER]})
    assert call.stream is False and call.include_usage is False
    pb = call.request
    assert pb.model == "smollm2:135m"
    assert [(m.role, m.content) for m in pb.messages] == [("user", "hi")]
    assert options() == {"temperature": 1.0, "top_p": 1.0}
    assert pb.format == "" and not pb.HasField("think") and not pb.tools and not pb.HasField("keep_alive_ns")


def test_sampling_fields_map_to_options():
    assert options(max_tokens=16, temperature=0, top_p=0.5, seed=42, frequency_penalty=0.25, presence_penalty=-0.5) == {
        "seed": 42,
        "num_predict": 16,
        "top_p": 0.5,
        "temperature": 0.0,
        "presence_penalty": -0.5,
        "frequency_penalty": 0.25,
    }


def test_max_completion_tokens_counts_where_max_tokens_is_absent():
    assert options(max_completion_tokens=7)["num_predict"] == 7
    assert options(max_completion_tokens=7, max_tokens=3)["num_predict"] == 3


@pytest.mark.parametrize(
    "stop, values",
    [("END", ["END"]), (["a", "b"], ["a", "b"]), (["a", 1, None, "b"], ["a", "b"]), ("", [""])],
)
def test_stop_is_a_string_or_a_list_of_strings(stop, values):
    assert list(chat(stop=stop).options.stop.values) == values


@pytest.mark.parametrize("stop", [[], 5, {"x": 1}])
def test_a_stop_that_holds_no_string_keeps_the_models_stops(stop):
    assert not chat(stop=stop).options.HasField("stop")


def test_stream_and_include_usage():
    call = translate.chat_request({"model": "m", "messages": [USER], "stream": True, "stream_options": {"include_usage": True}})
    assert (call.stream, call.include_usage) == (True, True)
    assert translate.chat_request({"model": "m", "messages": [USER], "stream_options": {}}).include_usage is False


@pytest.mark.parametrize(
    "response_format, sent",
    [
        ({"type": "json_object"}, "json"),
        ({"type": " JSON_Object "}, "json"),
        ({"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object", "required": ["a"]}}},
         '{"type":"object","required":["a"]}'),
        ({"type": "json_schema"}, ""),
        ({"type": "text"}, ""),
        ({"type": "something"}, ""),
    ],
)
def test_response_format(response_format, sent):
    assert chat(response_format=response_format).format == sent


def test_tools_reach_core_with_their_schema_as_json_text():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": True,
            },
        }
    ]
    (tool,) = chat(tools=tools, tool_choice="auto").tools
    assert (tool.type, tool.function.name, tool.function.description) == ("function", "get_weather", "Weather in a city")
    assert json.loads(tool.function.parameters_json) == tools[0]["function"]["parameters"]


@pytest.mark.parametrize(
    "effort, think",
    [("none", "false"), ("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"), ("max", "max"),
     ("xhigh", "max"), ("ultra", "max")],
)
def test_reasoning_effort_becomes_think(effort, think):
    assert chat(reasoning_effort=effort).think == think
    assert chat(reasoning={"effort": effort}).think == think


def test_a_reasoning_object_wins_even_without_an_effort():
    assert chat(reasoning={"effort": "high"}, reasoning_effort="low").think == "high"
    assert not chat(reasoning={}, reasoning_effort="low").HasField("think")
    assert chat(reasoning=None, reasoning_effort="low").think == "low"
    assert not chat(reasoning_effort="").HasField("think")


def test_an_unknown_reasoning_effort_is_refused():
    assert refused(chat, reasoning_effort="extreme") == (
        400,
        'invalid reasoning value: "extreme" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max",'
        ' or "none")',
    )


def test_logprobs_are_asked_of_core_and_top_logprobs_checked():
    pb = chat(logprobs=True, top_logprobs=20)
    assert (pb.logprobs, pb.top_logprobs) == (True, 20)
    assert (chat().logprobs, chat().top_logprobs) == (False, 0)
    assert refused(chat, logprobs=True, top_logprobs=21) == (400, "top_logprobs must be between 0 and 20")
    assert refused(chat, top_logprobs=-1) == (400, "top_logprobs must be between 0 and 20")


def test_ignored_fields_are_ignored():
    plain = chat()
    assert chat(n=3, logit_bias={"1": 5}, user="u", tool_choice="none", parallel_tool_calls=False) == plain


def test_no_model_is_the_native_refusal():
    assert refused(translate.chat_request, {"messages": [USER]}) == (400, "model is required")


# --- message content ----------------------------------------------------------------------------


def test_content_parts_become_one_native_message_each():
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG_URI}},
                {"type": "image_url", "image_url": "data:;base64," + base64.b64encode(b"raw").decode()},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
            ],
        },
    ]
    pb = translate.chat_request({"model": "m", "messages": messages}).request
    assert [(m.role, m.content, list(m.images)) for m in pb.messages] == [
        ("system", "be brief", []),
        ("user", "What is this?", []),
        ("user", "", [PNG]),
        ("user", "", [b"raw"]),
        ("user", "", [b"\xff\xd8\xff"]),
    ]


def test_input_audio_rides_in_images():
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF").decode(), "format": "wav"}}
    (message,) = translate.chat_request({"model": "m", "messages": [{"role": "user", "content": [part]}]}).request.messages
    assert list(message.images) == [b"RIFF"]


@pytest.mark.parametrize(
    "part, message",
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
         "image URLs are not currently supported, please use base64 encoded data instead"),
        ({"type": "image_url", "image_url": "http://example.com/cat.png"},
         "image URLs are not currently supported, please use base64 encoded data instead"),
        ({"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lG"}}, "invalid image input"),
        ({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}, "invalid image input"),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,not base64!"}}, "invalid image input"),
        ({"type": "image_url", "image_url": {"url": 5}}, "invalid message format"),
        ({"type": "image_url"}, "invalid message format"),
        ({"type": "text", "text": 5}, "invalid message format"),
        ({"type": "text"}, "invalid message format"),
        ({"type": "video"}, "invalid message format"),
        ("just text", "invalid message format"),
        ({"type": "input_audio", "input_audio": "x"}, "invalid input_audio format"),
        ({"type": "input_audio", "input_audio": {}}, "invalid input_audio format: missing data"),
        ({"type": "input_audio", "input_audio": {"data": "a$"}},
         "invalid input_audio base64 data: illegal base64 data at input byte 1"),
    ],
)
def test_bad_content_parts(part, message):
    document = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    assert refused(translate.chat_request, document) == (400, message)


@pytest.mark.parametrize("content, kind", [(None, "<nil>"), (5, "float64"), ({"a": 1}, "map[string]interface {}"), (True, "bool")])
def test_content_that_is_neither_text_nor_parts_is_refused_without_tool_calls(content, kind):
    document = {"model": "m", "messages": [{"role": "user", "content": content}]}
    if content is None:
        document["messages"][0].pop("content")
    assert refused(translate.chat_request, document) == (400, f"invalid message content type: {kind}")


# --- tool calls and tool results -----------------------------------------------------------------


def test_a_tool_conversation_round_trips():
    messages = [
        USER,
        {
            "role": "assistant",
            "content": None,
            "reasoning": "I should look it up.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris","days":2}'}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "name": "clock", "content": "noon"},
        {"role": "tool", "tool_call_id": "call_unknown", "content": "?"},
    ]
    pb = translate.chat_request({"model": "m", "messages": messages}).request
    assistant = pb.messages[1]
    assert (assistant.role, assistant.content, assistant.thinking) == ("assistant", "", "I should look it up.")
    assert [(c.id, c.name, c.arguments_json) for c in assistant.tool_calls] == [
        ("call_1", "get_weather", '{"city":"Paris","days":2}'),
        ("call_2", "get_time", "{}"),
    ]
    assert [(m.role, m.tool_name, m.tool_call_id, m.content) for m in pb.messages[2:]] == [
        ("tool", "get_weather", "call_1", "sunny"),
        ("tool", "clock", "call_2", "noon"),
        ("tool", "", "call_unknown", "?"),
    ]


def test_tool_calls_on_a_message_with_content_parts_go_on_its_last_part():
    message = {
        "role": "assistant",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
    }
    pb = translate.chat_request({"model": "m", "messages": [USER, message]}).request
    assert [(m.content, len(m.tool_calls)) for m in pb.messages[1:]] == [("a", 0), ("b", 1)]


@pytest.mark.parametrize("arguments", ["", "{", "[1, 2]", "5", '"text"', "NaN", '{"a": 1} x'])
def test_tool_call_arguments_must_be_a_json_object_in_a_string(arguments):
    message = {"role": "assistant", "content": "", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": arguments}}]}
    assert refused(translate.chat_request, {"model": "m", "messages": [USER, message]}) == (
        400,
        "invalid tool call arguments",
    )


# --- /v1/completions and /v1/embeddings requests --------------------------------------------------


def test_completion_request_mapping():
    call = translate.completion_request(
        {"model": "gemma3:270m-pt", "prompt": "def add(a, b):", "suffix": "return c", "max_tokens": 8, "seed": 3,
         "stop": ["\n\n"], "stream": True, "stream_options": {"include_usage": True}, "temperature": 0, "top_p": 0}
    )
    assert (call.stream, call.include_usage) == (True, True)
    pb = call.request
    assert (pb.model, pb.prompt, pb.suffix, pb.raw) == ("gemma3:270m-pt", "def add(a, b):", "return c", False)
    assert {f.name: v for f, v in pb.options.ListFields()} == {
        "seed": 3,
        "num_predict": 8,
        "top_p": 1.0,
        "temperature": 0.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stop": common_pb2.StringList(values=["\n\n"]),
    }


def test_completion_defaults():
    call = translate.completion_request({"model": "m", "prompt": "x"})
    assert call.stream is False
    assert {f.name: v for f, v in call.request.options.ListFields()} == {
        "top_p": 1.0,
        "temperature": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }


@pytest.mark.parametrize(
    "document, status, message",
    [
        ({"model": "m", "stop": ["a", 1]}, 400, "invalid type for 'stop' field: float64"),
        ({"model": "m", "stop": [None]}, 400, "invalid type for 'stop' field: <nil>"),
        ({"model": "m", "logprobs": 21}, 400, "top_logprobs must be between 0 and 20"),
        ({"model": "", "prompt": "x"}, 404, "model '' not found"),
    ],
)
def test_completion_refusals(document, status, message):
    assert refused(translate.completion_request, document) == (status, message)


def test_completion_logprobs_is_the_number_of_top_logprobs():
    pb = translate.completion_request({"model": "m", "prompt": "x", "logprobs": 5}).request
    assert (pb.logprobs, pb.top_logprobs) == (True, 5)
    pb = translate.completion_request({"model": "m", "prompt": "x", "logprobs": -3}).request
    assert (pb.logprobs, pb.top_logprobs) == (False, 0)


def test_embeddings_request():
    call = translate.embeddings_request({"model": "emb", "input": ["a", "b"], "dimensions": 64})
    assert (list(call.request.input), call.request.dimensions, call.model, call.base64) == (["a", "b"], 64, "emb", False)
    assert not call.request.HasField("normalize")
    assert translate.embeddings_request({"model": "emb", "input": "one", "encoding_format": "Base64"}).base64
    assert list(translate.embeddings_request({"model": "emb", "input": ""}).request.input) == [""]


@pytest.mark.parametrize(
    "document, status, message",
    [
        ({"model": "e", "input": "x", "encoding_format": "int8"}, 400,
         "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64']."),
        ({"model": "e"}, 400, "invalid input"),
        ({"model": "e", "input": None}, 400, "invalid input"),
        ({"model": "e", "input": []}, 400, "invalid input"),
        ({"model": "e", "input": [[1, 2, 3]]}, 400, "invalid input type"),
        ({"model": "e", "input": 5}, 400, "invalid input type"),
        ({"model": "", "input": "x"}, 404, "model '' not found"),
    ],
)
def test_embeddings_refusals(document, status, message):
    assert refused(translate.embeddings_request, document) == (status, message)


# --- responses ----------------------------------------------------------------------------------

CREATED = Timestamp(seconds=1_700_000_000, nanos=5)


def piece(content: str = "", thinking: str = "", tool_calls=(), done=False, reason=0, metrics=None):
    message = inference_pb2.ChatResponse(
        model="smollm2:135m",
        created_at=CREATED,
        message=inference_pb2.Message(role="assistant", content=content, thinking=thinking, tool_calls=list(tool_calls)),
        done=done,
        done_reason=reason,
    )
    if metrics is not None:
        message.metrics.CopyFrom(metrics)
    return message


METRICS = common_pb2.Metrics(prompt_eval_count=11, eval_count=4)
CALL = common_pb2.ToolCall(id="", index=0, name="get_weather", arguments_json='{"city": "Paris"}')


def fixed_id() -> str:
    return "call_fixed00"


def test_chat_completion_is_one_object_in_openais_field_order():
    body = translate.chat_completion(
        [piece("The capital"), piece(" is Paris."), piece(done=True, reason=common_pb2.DONE_REASON_STOP, metrics=METRICS)],
        "chatcmpl-7",
    )
    assert body == {
        "id": "chatcmpl-7",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "smollm2:135m",
        "system_fingerprint": "fp_ollama",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "The capital is Paris."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
    }
    assert list(body) == ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]


def test_chat_completion_with_reasoning_tool_calls_and_length():
    body = translate.chat_completion(
        [piece(thinking="Hmm."), piece(tool_calls=[CALL]), piece(done=True, reason=common_pb2.DONE_REASON_STOP)],
        "chatcmpl-1",
        new_call_id=fixed_id,
    )
    assert body["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "",
            "reasoning": "Hmm.",
            "tool_calls": [
                {"id": "call_fixed00", "index": 0, "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
            ],
        },
        "finish_reason": "tool_calls",
    }
    cut = translate.chat_completion([piece("a", done=True, reason=common_pb2.DONE_REASON_LENGTH)], "chatcmpl-1")
    assert cut["choices"][0]["finish_reason"] == "length"
    unknown = translate.chat_completion([piece("a", done=True)], "chatcmpl-1")
    assert unknown["choices"][0]["finish_reason"] is None


def logprob(token: str, value: float, *top) -> common_pb2.TokenLogprob:
    return common_pb2.TokenLogprob(token=token, logprob=value, bytes=token.encode(), top_logprobs=list(top))


def with_logprobs(message, *entries):
    message.logprobs.extend(entries)
    return message


def test_chat_completion_log_probabilities_of_every_piece():
    body = translate.chat_completion(
        [
            with_logprobs(piece("Hi"), logprob("Hi", -0.5, logprob("Hi", -0.5), logprob("Hey", -1.5))),
            with_logprobs(piece("!", done=True, reason=1), logprob("!", -0.25)),
        ],
        "chatcmpl-1",
    )
    assert body["choices"][0]["logprobs"] == {
        "content": [
            {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": [
                {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}, {"token": "Hey", "logprob": -1.5, "bytes": [72, 101, 121]}
            ]},
            {"token": "!", "logprob": -0.25, "bytes": [33]},
        ]
    }
    assert list(body["choices"][0]) == ["index", "message", "finish_reason", "logprobs"]
    assert "logprobs" not in translate.chat_completion([piece("a", done=True)], "chatcmpl-1")["choices"][0]


def test_a_tool_call_keeps_the_id_core_gave_it():
    named = common_pb2.ToolCall(id="call_abc", index=1, name="f", arguments_json="")
    body = translate.chat_completion([piece(tool_calls=[named], done=True, reason=1)], "chatcmpl-1")
    assert body["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_abc", "index": 1, "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]


def test_generated_tool_call_ids_look_like_ollamas():
    assert re.fullmatch(r"call_[a-z0-9]{8}", translate.tool_call_id())
    assert re.fullmatch(r"chatcmpl-\d{1,3}", translate.chat_completion_id())
    assert re.fullmatch(r"cmpl-\d{1,3}", translate.completion_id())


def events(text: str) -> list:
    """The data of each SSE event: parsed JSON, or the literal ``[DONE]``."""
    assert text.endswith("\n\n")
    out = []
    for event in text.split("\n\n")[:-1]:
        assert event.startswith("data: ")
        data = event[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def stream_chat(pieces, include_usage=False) -> list:
    stream = translate.ChatStream("chatcmpl-9", include_usage, new_call_id=fixed_id)
    return events("".join(stream.events(p) for p in pieces))


def test_chat_stream_role_first_one_id_a_finish_chunk_then_done():
    later = inference_pb2.ChatResponse()
    later.CopyFrom(piece("!"))
    later.created_at.seconds += 5
    chunks = stream_chat([piece("Hi"), later, piece(done=True, reason=common_pb2.DONE_REASON_STOP, metrics=METRICS)])
    assert chunks[-1] == "[DONE]"
    chunks = chunks[:-1]
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": "Hi"}, {"content": "!"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert {c["id"] for c in chunks} == {"chatcmpl-9"}
    assert {c["created"] for c in chunks} == {1_700_000_000}
    assert chunks[0] == {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "smollm2:135m",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}],
    }


def test_chat_stream_usage_chunk_comes_before_done():
    chunks = stream_chat([piece("Hi"), piece(done=True, reason=common_pb2.DONE_REASON_LENGTH, metrics=METRICS)], True)
    assert chunks[-3]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert chunks[-2] == {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "smollm2:135m",
        "system_fingerprint": "fp_ollama",
        "choices": [],
        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
    }
    assert chunks[-1] == "[DONE]"


def test_chat_stream_splits_reasoning_from_content_reasoning_first():
    chunks = stream_chat([piece("Paris", thinking="The capital..."), piece(thinking="more"), piece(done=True, reason=1)])
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "reasoning": "The capital..."},
        {"content": "Paris"},
        {"content": "", "reasoning": "more"},
        {},
    ]


def test_chat_stream_tool_call_arrives_whole_and_finishes_as_tool_calls():
    chunks = stream_chat([piece(thinking="call it", tool_calls=[CALL]), piece(done=True, reason=common_pb2.DONE_REASON_STOP)])
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "reasoning": "call it"},
        {"content": "", "tool_calls": [{"id": "call_fixed00", "index": 0, "type": "function",
                                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_stream_a_final_message_with_text_is_a_content_chunk_and_an_empty_reply_still_has_a_role():
    chunks = stream_chat([piece("Hi"), piece("!", done=True, reason=1)])
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [{"role": "assistant", "content": "Hi"}, {"content": "!"}, {}]
    empty = stream_chat([piece(done=True, reason=common_pb2.DONE_REASON_LENGTH)])
    assert [c["choices"][0] for c in empty[:-1]] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "length"},
    ]
    unknown = stream_chat([piece("a"), piece(done=True)])
    assert unknown[-2]["choices"][0]["finish_reason"] == "stop"


def test_chat_stream_log_probabilities_ride_on_their_chunk():
    chunks = stream_chat(
        [
            with_logprobs(piece("Hi"), logprob("Hi", -0.5)),
            with_logprobs(piece("A", thinking="t"), logprob("t", -1.0), logprob("A", -2.0)),
            with_logprobs(piece(done=True, reason=1), logprob("!", -0.25)),
        ]
    )
    choices = [c["choices"][0] for c in chunks[:-1]]
    assert choices[0] == {
        "index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None,
        "logprobs": {"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]},
    }
    assert [c["logprobs"]["content"] for c in choices[1:2]] == [
        [{"token": "t", "logprob": -1.0, "bytes": [116]}, {"token": "A", "logprob": -2.0, "bytes": [65]}]
    ]
    assert "logprobs" not in choices[2]
    # A final message with log probabilities only is not a trailer to drop.
    assert choices[3] == {
        "index": 0, "delta": {"content": ""}, "finish_reason": None,
        "logprobs": {"content": [{"token": "!", "logprob": -0.25, "bytes": [33]}]},
    }
    assert choices[4] == {"index": 0, "delta": {}, "finish_reason": "stop"}


def gen(text: str = "", done=False, reason=0, metrics=None) -> inference_pb2.GenerateResponse:
    message = inference_pb2.GenerateResponse(model="gemma3:270m-pt", created_at=CREATED, response=text, done=done, done_reason=reason)
    if metrics is not None:
        message.metrics.CopyFrom(metrics)
    return message


def test_completion_is_one_text_completion():
    body = translate.completion([gen("The quick"), gen(" fox", done=True, reason=2, metrics=METRICS)], "cmpl-3")
    assert body == {
        "id": "cmpl-3",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "gemma3:270m-pt",
        "system_fingerprint": "fp_ollama",
        "choices": [{"text": "The quick fox", "index": 0, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
    }


def test_completion_stream_finish_reason_rides_on_the_last_chunk():
    stream = translate.CompletionStream("cmpl-3", include_usage=False)
    chunks = events("".join(stream.events(m) for m in [gen("a"), gen("b"), gen(done=True, reason=1, metrics=METRICS)]))
    assert chunks[-1] == "[DONE]"
    assert [c["choices"] for c in chunks[:-1]] == [
        [{"text": "a", "index": 0, "finish_reason": None}],
        [{"text": "b", "index": 0, "finish_reason": None}],
        [{"text": "", "index": 0, "finish_reason": "stop"}],
    ]
    assert list(chunks[0]) == ["id", "object", "created", "choices", "model", "system_fingerprint"]


def test_completion_stream_with_usage_zeroes_it_on_every_chunk_then_sends_it():
    stream = translate.CompletionStream("cmpl-3", include_usage=True)
    chunks = events("".join(stream.events(m) for m in [gen("a"), gen(done=True, reason=1, metrics=METRICS)]))
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert [c["usage"] for c in chunks[:2]] == [zero, zero]
    assert chunks[2]["choices"] == [] and chunks[2]["usage"] == {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
    assert chunks[3] == "[DONE]"


def test_embedding_list_float_and_base64():
    reply = inference_pb2.EmbedResponse(
        model="emb",
        embeddings=[inference_pb2.Embedding(values=[0.6, 0.8]), inference_pb2.Embedding(values=[1.0, 0.0])],
        metrics=common_pb2.Metrics(prompt_eval_count=6),
    )
    floats = translate.embedding_list(reply, "emb", as_base64=False)
    assert floats == {
        "object": "list",
        "data": [
            {"object": "embedding", "embedding": [0.6000000238418579, 0.800000011920929], "index": 0},
            {"object": "embedding", "embedding": [1.0, 0.0], "index": 1},
        ],
        "model": "emb",
        "usage": {"prompt_tokens": 6, "total_tokens": 6},
    }
    encoded = translate.embedding_list(reply, "emb", as_base64=True)["data"][0]["embedding"]
    assert base64.b64decode(encoded) == struct.pack("<2f", 0.6, 0.8)
    assert translate.embedding_list(inference_pb2.EmbedResponse(), "emb", False)["data"] is None


@pytest.mark.parametrize(
    "name, owner",
    [
        ("smollm2:135m", "library"),
        ("llama3.2", "library"),
        ("me/assistant:latest", "me"),
        ("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M", "bartowski"),
        ("registry.example:5000/team/model:v1", "team"),
        ("http://registry.example:5000/team/model", "team"),
    ],
)
def test_models_are_owned_by_their_namespace(name, owner):
    assert translate.namespace(name) == owner


def test_model_list_and_model_object():
    listed = models_pb2.ListModelsResponse(
        models=[
            models_pb2.ModelSummary(name="smollm2:135m", modified_at=CREATED),
            models_pb2.ModelSummary(name="me/pirate:latest", modified_at=Timestamp(seconds=5)),
        ]
    )
    assert translate.model_list(listed) == {
        "object": "list",
        "data": [
            {"id": "smollm2:135m", "object": "model", "created": 1_700_000_000, "owned_by": "library"},
            {"id": "me/pirate:latest", "object": "model", "created": 5, "owned_by": "me"},
        ],
    }
    assert translate.model_list(models_pb2.ListModelsResponse()) == {"object": "list", "data": None}
    shown = models_pb2.ShowModelResponse(modified_at=CREATED)
    assert translate.model_object(shown, "smollm2:135m") == {
        "id": "smollm2:135m", "object": "model", "created": 1_700_000_000, "owned_by": "library",
    }


@pytest.mark.parametrize(
    "status, kind", [(400, "invalid_request_error"), (404, "not_found_error"), (401, "api_error"), (500, "api_error"),
                     (503, "api_error")]
)
def test_error_bodies(status, kind):
    assert translate.error_body(status, "boom") == {"error": {"message": "boom", "type": kind, "param": None, "code": None}}


def test_a_mid_stream_error_is_an_event_with_error_in_it():
    assert events(translate.error_event(ApiError(500, "runner died"))) == [
        {"error": {"message": "runner died", "type": "api_error", "param": None, "code": None}}
    ]


# --- the routes over HTTP, against a fake core ------------------------------------------------------


def chat_body(**fields) -> dict:
    return {"model": "smollm2", "messages": [USER], **fields}


def sse_events(response: httpx.Response) -> list:
    return events(response.text)


def test_chat_over_http_json_and_sse():
    async def scenario():
        core = FakeCore()
        core.stream_script = [piece("Hi"), piece("!"), piece(done=True, reason=1, metrics=METRICS)]
        async with gateway(core) as client:
            whole = await client.post("/v1/chat/completions", json=chat_body())
            assert whole.status_code == 200
            assert whole.headers["content-type"] == "application/json; charset=utf-8"
            assert whole.json()["choices"][0]["message"] == {"role": "assistant", "content": "Hi!"}
            assert re.fullmatch(r"chatcmpl-\d+", whole.json()["id"])

            streamed = await client.post("/v1/chat/completions", json=chat_body(stream=True))
            assert streamed.headers["content-type"] == "text/event-stream"
            chunks = sse_events(streamed)
            assert chunks[-1] == "[DONE]"
            assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
                {"role": "assistant", "content": "Hi"}, {"content": "!"}, {}
            ]
        sent = core.calls[0][1]
        assert (sent.model, sent.options.temperature, sent.options.top_p) == ("smollm2", 1.0, 1.0)

    run(scenario)


def test_an_error_after_the_first_chunk_is_an_error_event_without_done():
    async def scenario():
        core = FakeCore()
        core.stream_script = [piece("Hel"), Abort(grpc.StatusCode.INTERNAL, "llama runner process has terminated")]
        async with gateway(core) as client:
            response = await client.post("/v1/chat/completions", json=chat_body(stream=True))
            assert response.status_code == 200
            chunks = sse_events(response)
            assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
            assert chunks[1:] == [
                {"error": {"message": "llama runner process has terminated", "type": "api_error", "param": None,
                           "code": None}}
            ]

    run(scenario)


def test_errors_before_the_first_byte_have_openais_shape_and_a_real_status():
    async def scenario():
        core = FakeCore()
        core.stream_script = [Abort(grpc.StatusCode.NOT_FOUND, "model 'ghost:latest' not found")]
        async with gateway(core) as client:
            for stream in (False, True):
                missing = await client.post("/v1/chat/completions", json=chat_body(model="ghost", stream=stream))
                assert missing.status_code == 404
                assert missing.json() == {
                    "error": {"message": "model 'ghost' not found", "type": "not_found_error", "param": None, "code": None}
                }
            completion = await client.post("/v1/completions", json={"model": "ghost", "prompt": "x"})
            assert (completion.status_code, completion.json()["error"]["message"]) == (404, "model 'ghost' not found")

            empty = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
            assert (empty.status_code, empty.json()["error"]) == (
                400, {"message": "[] is too short - 'messages'", "type": "invalid_request_error", "param": None, "code": None}
            )
            bad_json = await client.post("/v1/chat/completions", content=b"{nope")
            assert (bad_json.status_code, bad_json.json()["error"]["message"]) == (
                400, "invalid character 'n' looking for beginning of object key string"
            )
            no_body = await client.post("/v1/embeddings")
            assert (no_body.status_code, no_body.json()["error"]["message"]) == (400, "EOF")

            core.unary_answers["Embed"] = Abort(grpc.StatusCode.NOT_FOUND, "model 'x:latest' not found")
            embed = await client.post("/v1/embeddings", json={"model": "x", "input": "hi"})
            assert (embed.status_code, embed.json()["error"]["message"]) == (
                404, 'model "x" not found, try pulling it first'
            )
            core.unary_answers["Show"] = Abort(grpc.StatusCode.NOT_FOUND, "model 'x:latest' not found")
            model = await client.get("/v1/models/x")
            assert (model.status_code, model.json()["error"]["type"]) == (404, "not_found_error")
            assert model.json()["error"]["message"] == "model 'x:latest' not found"

            core.unary_answers["List"] = RuntimeError("bug")
            broken = await client.get("/v1/models")
            assert broken.status_code == 500 and broken.json()["error"]["type"] == "api_error"

            wrong_method = await client.get("/v1/chat/completions")
            assert (wrong_method.status_code, wrong_method.text) == (405, "405 method not allowed")
        assert [method for method, _ in core.calls].count("Chat") == 2

    run(scenario)


def test_models_over_http():
    async def scenario():
        core = FakeCore()
        core.unary_answers["List"] = models_pb2.ListModelsResponse(models=[models_pb2.ModelSummary(name="smollm2:135m", modified_at=CREATED)])
        core.unary_answers["Show"] = models_pb2.ShowModelResponse(modified_at=CREATED)
        async with gateway(core) as client:
            listed = (await client.get("/v1/models")).json()
            assert listed["data"][0]["id"] == "smollm2:135m"
            one = await client.get("/v1/models/smollm2:135m")
            assert one.json() == {"id": "smollm2:135m", "object": "model", "created": 1_700_000_000, "owned_by": "library"}
            assert core.calls[-1][1].model == "smollm2:135m"
            encoded = await client.get("/v1/models/smollm2%3A135m")
            assert encoded.json()["id"] == "smollm2:135m"
            assert core.calls[-1][1].model == "smollm2:135m"
            assert (await client.get("/v1/models/me/pirate")).status_code == 404

    run(scenario)


def test_a_client_that_leaves_a_stream_cancels_the_generation():
    async def scenario():
        core = FakeCore()
        core.stream_script = [piece("first"), Hold()]
        async with gateway(core) as client:
            async with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response:
                async for line in response.aiter_lines():
                    assert json.loads(line[len("data: "):])["choices"][0]["delta"]["content"] == "first"
                    break
            await asyncio.wait_for(core.cancelled.wait(), timeout=5)

    run(scenario)


def test_api_key():
    async def scenario():
        core = FakeCore()
        core.unary_answers["List"] = models_pb2.ListModelsResponse()
        async with gateway(core, api_key="s3cret") as client:
            assert (await client.get("/")).status_code == 200
            assert (await client.head("/")).status_code == 200
            assert (await client.get("/api/version")).status_code == 200
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": "Basic s3cret"}):
                native = await client.get("/api/tags", headers=headers)
                assert (native.status_code, native.json()) == (401, {"error": "unauthorized"})
                openai = await client.get("/v1/models", headers=headers)
                assert (openai.status_code, openai.json()) == (
                    401, {"error": {"message": "unauthorized", "type": "api_error", "param": None, "code": None}}
                )
                assert openai.headers["www-authenticate"] == "Bearer"
            assert core.calls == []
            for scheme in ("Bearer", "bearer"):
                ok = await client.get("/v1/models", headers={"Authorization": f"{scheme} s3cret"})
                assert (ok.status_code, ok.json()) == (200, {"object": "list", "data": None})
            assert (await client.get("/api/tags", headers={"Authorization": "Bearer s3cret"})).status_code == 200
        async with gateway(core) as client:
            assert (await client.get("/v1/models", headers={"Authorization": "Bearer anything"})).status_code == 200

    run(scenario)
