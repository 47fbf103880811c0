"""OpenAI /v1/responses bodies ⇄ herd.v1 messages, and the route over HTTP against a fake core.

The translator is pure: each test writes what a client sends (or what core answers) as a literal
and checks the ChatRequest (or the JSON and the events a client gets), with Ollama's error words.
Over HTTP the openai SDK itself reads the answers, streamed ones included.
"""

from __future__ import annotations

import base64
import json
import re

import grpc
import openai
import pytest

from herd.rest.errors import ApiError
from herd.rest.openai import responses
from herd.v1 import common_pb2, inference_pb2
from tests.fake_core import Abort, FakeCore, gateway, run
from tests.unit.test_openai_translate import piece

PNG = b"\x89PNG\r\n\x1a\n"
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def refused(document) -> tuple[int, str]:
    with pytest.raises(ApiError) as caught:
        responses.responses_request(document)
    return caught.value.status, caught.value.message


def call(**fields) -> responses.ResponsesCall:
    return responses.responses_request({"model": "m", **fields})


def chat(**fields) -> inference_pb2.ChatRequest:
    return call(**fields).request


def messages(**fields) -> list[dict]:
    """The native messages a body becomes, each as its set fields."""
    out = []
    for message in chat(**fields).messages:
        fields_set = {}
        for field, value in message.ListFields():
            if field.name == "tool_calls":
                value = [(c.id, c.name, json.loads(c.arguments_json)) for c in value]
            elif field.name == "images":
                value = list(value)
            fields_set[field.name] = value
        out.append(fields_set)
    return out


def options(**fields) -> dict:
    return {field.name: value for field, value in chat(**fields).options.ListFields()}


# --- requests --------------------------------------------------------------------------------------


def test_a_string_input_is_one_user_message_after_the_instructions():
    assert messages(input="Hi") == [{"role": "user", "content": "Hi"}]
    assert messages(input="Hi", instructions="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert messages(input="") == [] and messages() == []


def test_defaults_temperature_one_top_p_the_models_stream_false():
    sent = call(input="Hi")
    assert sent.stream is False
    assert options(input="Hi") == {"temperature": 1.0}
    assert options(input="Hi", temperature=0.25, top_p=0.5, max_output_tokens=24) == {
        "num_predict": 24, "temperature": 0.25, "top_p": 0.5,
    }
    assert call(input="Hi", stream=True).stream is True
    assert chat(input="Hi").format == "" and not chat(input="Hi").HasField("think")


def test_message_items_with_string_content_or_parts():
    items = [
        {"type": "message", "role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [
            {"type": "input_text", "text": "What is "}, {"type": "input_text", "text": "this?"},
            {"type": "input_image", "detail": "auto", "image_url": PNG_URI},
            {"type": "input_image", "detail": "auto", "file_id": "file_1"},
        ]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Une image."}]},
    ]
    assert messages(input=items) == [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "What is this?", "images": [PNG]},
        {"role": "assistant", "content": "Une image."},
    ]


@pytest.mark.parametrize(
    "part, message",
    [
        ({"type": "input_image", "image_url": "https://example.com/a.png"},
         "image URLs are not currently supported, please use base64 encoded data instead"),
        ({"type": "input_image", "image_url": "data:image/gif;base64,R0lG"}, "invalid image input"),
        ({"type": "input_image", "image_url": "data:image/png;base64,!!"}, "invalid image input"),
        ({"type": "input_file", "file_data": "x"}, "file inputs are not currently supported"),
        ({"type": "input_audio"}, "input[0]: content[0]: unknown content type: input_audio"),
    ],
)
def test_bad_content_parts(part, message):
    assert refused({"model": "m", "input": [{"role": "user", "content": [part]}]}) == (400, message)


def test_a_function_call_and_its_output_become_a_call_and_a_tool_message():
    items = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "id": "fc_1", "call_id": "call_abc", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_abc", "output": "22C and sunny"},
    ]
    assert messages(input=items) == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [("call_abc", "get_weather", {"city": "Paris"})]},
        {"role": "tool", "content": "22C and sunny", "tool_name": "get_weather", "tool_call_id": "call_abc"},
    ]


def test_a_function_call_output_given_as_parts_joins_its_text_and_keeps_images():
    items = [{"type": "function_call_output", "call_id": "c", "output": [
        {"type": "input_text", "text": "Look: "}, {"type": "input_image", "image_url": PNG_URI},
        {"type": "output_text", "text": "done"},
    ]}]
    assert messages(input=items) == [{"role": "tool", "content": "Look: done", "images": [PNG], "tool_call_id": "c"}]


def test_calls_after_an_assistant_message_join_it_and_reasoning_goes_to_the_next_assistant_turn():
    items = [
        {"role": "user", "content": "Two cities?"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "ignored"}],
         "encrypted_content": "Need two calls."},
        {"type": "message", "role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "b", "name": "get_weather", "arguments": ""},
        {"type": "function_call_output", "call_id": "a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "b", "output": "rain"},
        {"type": "reasoning", "encrypted_content": "Now answer."},
    ]
    assert messages(input=items) == [
        {"role": "user", "content": "Two cities?"},
        {"role": "assistant", "content": "Checking.", "thinking": "Need two calls.",
         "tool_calls": [("a", "get_weather", {"city": "Paris"}), ("b", "get_weather", {})]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "a"},
        {"role": "tool", "content": "rain", "tool_name": "get_weather", "tool_call_id": "b"},
        {"role": "assistant", "thinking": "Now answer."},
    ]


def test_reasoning_before_a_lone_call_and_an_assistant_message_replayed_between_call_and_output():
    items = [
        {"type": "reasoning", "encrypted_content": "Call it."},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "message", "role": "assistant", "content": "Calling f."},
        {"type": "function_call_output", "call_id": "a", "output": "ok"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    ]
    assert messages(input=items) == [
        {"role": "assistant", "content": "Calling f.", "thinking": "Call it.", "tool_calls": [("a", "f", {})]},
        {"role": "tool", "content": "ok", "tool_name": "f", "tool_call_id": "a"},
    ]


@pytest.mark.parametrize(
    "document, message",
    [
        ({"input": 5}, "input must be a string or array: json: cannot unmarshal number into Go value of type "
                       "[]json.RawMessage"),
        ({"input": {"role": "user"}}, "input must be a string or array: json: cannot unmarshal object into Go "
                                      "value of type []json.RawMessage"),
        ({"input": [{"content": "x"}]}, "input[0]: input item missing required 'type' field"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, 'input[0]: unknown input item type: "item_reference"'),
        ({"input": [{"role": "user", "content": 3}]},
         "input[0]: content must be a string or array: json: cannot unmarshal number into Go value of type "
         "[]json.RawMessage"),
        ({"input": [{"role": 1}]}, "input[0]: json: cannot unmarshal number into Go struct field .role of type string"),
        ({"input": [{"type": "function_call", "call_id": "a", "name": "f", "arguments": "{x"}]},
         "failed to parse function call arguments: invalid character 'x' looking for beginning of object key string"),
        ({"input": [{"type": "function_call", "call_id": "a", "name": "f", "arguments": '{"a": 1} }'}]},
         "failed to parse function call arguments: invalid character '}' after top-level value"),
        ({"input": [{"type": "function_call", "call_id": "a", "name": "f", "arguments": "[1]"}]},
         "failed to parse function call arguments: json: cannot unmarshal array into Go value of type "
         "map[string]interface {}"),
        ({"input": [{"type": "function_call", "arguments": {"city": "Paris"}}]},
         "input[0]: json: cannot unmarshal object into Go struct field ResponsesFunctionCall.arguments of type "
         "string"),
        ({"input": "x", "stream": "yes"},
         "json: cannot unmarshal string into Go struct field ResponsesRequest.stream of type bool"),
        ({"input": "x", "temperature": "hot"},
         "json: cannot unmarshal string into Go struct field ResponsesRequest.temperature of type float64"),
        ({"input": "x", "max_output_tokens": 1.5},
         "json: cannot unmarshal number 1.5 into Go struct field ResponsesRequest.max_output_tokens of type int"),
        ({"input": "x", "tools": [{"type": "function", "name": "f", "parameters": "none"}]},
         "json: cannot unmarshal string into Go struct field ResponsesTool.tools.parameters of type "
         "map[string]interface {}"),
        ({"input": "x", "reasoning": {"effort": "extreme"}},
         'invalid reasoning value: "extreme" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", '
         'or "none")'),
        ({"input": "x", "tools": [{"type": "web_search"}]}, responses.WEB_SEARCH_UNSUPPORTED),
    ],
)
def test_refusals_in_ollamas_words(document, message):
    assert refused({"model": "m", **document}) == (400, message)


def test_no_model_is_the_native_refusal():
    assert refused({"input": "Hi"}) == (400, "model is required")
    assert refused([]) == (400, "json: cannot unmarshal array into Go value of type openai.ResponsesRequest")


@pytest.mark.parametrize(
    "effort, think",
    [("none", "false"), ("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"), ("max", "max"),
     ("xhigh", "max"), ("ultra", "max")],
)
def test_reasoning_effort_becomes_think_as_for_chat_completions(effort, think):
    assert chat(input="x", reasoning={"effort": effort}).think == think
    assert not chat(input="x", reasoning={"summary": "auto"}).HasField("think")


@pytest.mark.parametrize(
    "text, sent",
    [
        ({"format": {"type": "json_schema", "name": "c", "schema": {"type": "object"}, "strict": True}},
         '{"type":"object"}'),
        ({"format": {"type": "json_object"}}, "json"),
        ({"format": {"type": "text"}}, ""),
        ({}, ""),
    ],
)
def test_text_format(text, sent):
    assert chat(input="x", text=text).format == sent


def test_tools_have_their_name_and_schema_at_the_top_and_namespaces_are_flattened():
    tools = [
        WEATHER,
        {"type": "namespace", "name": "fs", "tools": [
            {"type": "function", "name": "read", "description": None, "parameters": None},
            {"type": "function", "name": "fs.write"},
        ]},
    ]
    sent = chat(input="x", tools=tools).tools
    assert [(t.type, t.function.name, t.function.description) for t in sent] == [
        ("function", "get_weather", "The weather in a city"), ("function", "fs.read", ""), ("function", "fs.write", ""),
    ]
    assert json.loads(sent[0].function.parameters_json) == WEATHER["parameters"]
    assert sent[1].function.parameters_json == ""


def test_stateful_and_unknown_fields_are_ignored_as_ollama_ignores_them():
    sent = chat(input="Hi", previous_response_id="resp_1", conversation={"id": "conv_1"}, store=True,
                truncation="auto", include=["reasoning.encrypted_content"], tool_choice="required",
                metadata={"a": "b"}, parallel_tool_calls=False, user="u", background=False)
    assert [m.content for m in sent.messages] == ["Hi"]


def test_zstd_bodies_are_refused_in_words():
    with pytest.raises(ApiError) as caught:
        responses.check_content_encoding("zstd")
    assert (caught.value.status, caught.value.message) == (400, responses.ZSTD_UNSUPPORTED)
    responses.check_content_encoding(None)
    responses.check_content_encoding("identity")


# --- responses -------------------------------------------------------------------------------------

METRICS = common_pb2.Metrics(prompt_eval_count=11, eval_count=4)
CALL = common_pb2.ToolCall(id="call_core0001", index=0, name="get_weather", arguments_json='{"city": "Paris"}')


def final(**fields):
    return piece(done=True, reason=common_pb2.DONE_REASON_STOP, metrics=METRICS, **fields)


def now() -> float:
    return 1_700_000_009.5


def whole(pieces, **fields) -> dict:
    echo = call(input="x", **fields).echo
    return responses.response(pieces, echo, "resp_42", "msg_7", now=now)


def test_a_text_reply_is_one_message_item_with_ollamas_echo_fields():
    body = whole([piece("The capital"), piece(" is Paris."), final()], instructions="Be brief.", temperature=0.0,
                 max_output_tokens=24)
    assert body == {
        "id": "resp_42",
        "object": "response",
        "created_at": 1_700_000_000,
        "completed_at": 1_700_000_009,
        "status": "completed",
        "incomplete_details": None,
        "model": "m",
        "previous_response_id": None,
        "instructions": "Be brief.",
        "output": [{"id": "msg_7", "type": "message", "status": "completed", "role": "assistant", "content": [
            {"type": "output_text", "text": "The capital is Paris.", "annotations": [], "logprobs": []}]}],
        "error": None,
        "tools": [],
        "tool_choice": "auto",
        "truncation": "disabled",
        "parallel_tool_calls": True,
        "text": {"format": {"type": "text"}},
        "top_p": 1.0,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "top_logprobs": 0,
        "temperature": 0.0,
        "reasoning": None,
        "usage": {"input_tokens": 11, "output_tokens": 4, "total_tokens": 15,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        "max_output_tokens": 24,
        "max_tool_calls": None,
        "store": False,
        "background": False,
        "service_tier": "default",
        "metadata": {},
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


def test_a_reply_cut_by_max_output_tokens_is_completed_as_in_ollama():
    body = whole([piece("Once upon"), piece(done=True, reason=common_pb2.DONE_REASON_LENGTH, metrics=METRICS)])
    assert (body["status"], body["incomplete_details"]) == ("completed", None)


def test_thinking_is_a_reasoning_item_first_and_tool_calls_replace_the_message():
    body = whole([piece(thinking="Let me"), piece(thinking=" check."), piece("ignored", tool_calls=[CALL]), final()],
                 tools=[WEATHER], reasoning={"effort": "high"},
                 text={"format": {"type": "json_schema", "name": "c", "schema": {"type": "object"}}})
    assert body["output"] == [
        {"id": "rs_resp_42", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Let me check."}],
         "encrypted_content": "Let me check."},
        {"id": "fc_resp_42_0", "type": "function_call", "status": "completed", "call_id": "call_core0001",
         "name": "get_weather", "arguments": '{"city":"Paris"}'},
    ]
    assert body["tools"] == [{**WEATHER, "strict": None}] and body["reasoning"] == {"effort": "high", "summary": None}
    assert body["text"] == {"format": {"type": "json_schema", "name": "c", "schema": {"type": "object"}}}


def test_a_call_without_an_id_gets_one():
    nameless = common_pb2.ToolCall(name="f", arguments_json="")
    body = responses.response([final(tool_calls=[nameless])], call(input="x").echo, "resp_1", "msg_1",
                              new_call_id=lambda: "call_fixed00")
    assert body["output"][0]["call_id"] == "call_fixed00" and body["output"][0]["arguments"] == "{}"


def test_ids_look_like_ollamas():
    assert re.fullmatch(r"resp_\d{1,6}", responses.response_id())
    assert re.fullmatch(r"msg_\d{1,6}", responses.message_id())


# --- streamed events ---------------------------------------------------------------------------------


def parse_events(text: str) -> list[tuple[str, dict]]:
    """(event name, data) of each server-sent event; every data names its own type."""
    assert text.endswith("\n\n")
    out = []
    for block in text.split("\n\n")[:-1]:
        event_line, data_line = block.split("\n")
        name, data = event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        out.append((name, data))
    return out


class Counter:
    def __init__(self):
        self.n = 100

    def __call__(self, bound):
        self.n += 1
        return self.n


def stream(pieces, **fields) -> list[tuple[str, dict]]:
    converter = responses.ResponseStream(call(input="x", **fields).echo, "resp_42", "msg_7", randbelow=Counter(),
                                         now=now)
    events = parse_events("".join(converter.events(p) for p in pieces))
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    return events


def test_a_text_stream_in_ollamas_order():
    events = stream([piece("Hel"), piece("lo"), final()])
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed",
    ]
    created = events[0][1]["response"]
    assert (created["id"], created["status"], created["output"], created["usage"]) == ("resp_42", "in_progress", [],
                                                                                         None)
    assert events[2][1]["item"] == {"id": "msg_7", "type": "message", "status": "in_progress", "role": "assistant",
                                    "content": []}
    assert [data["delta"] for name, data in events if name.endswith("text.delta")] == ["Hel", "lo"]
    assert events[6][1] == {"type": "response.output_text.done", "sequence_number": 6, "item_id": "msg_7",
                            "output_index": 0, "content_index": 0, "text": "Hello", "logprobs": []}
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed" and completed["completed_at"] == 1_700_000_009
    assert completed["output"] == [events[8][1]["item"]]
    assert completed["output"][0]["content"][0]["text"] == "Hello"
    assert completed["usage"]["total_tokens"] == 15


def test_thinking_streams_as_a_reasoning_item_before_the_message():
    events = stream([piece(thinking="Hmm"), piece(thinking=".", content="Paris"), final()])
    assert [(name, data.get("output_index")) for name, data in events[2:]] == [
        ("response.output_item.added", 0), ("response.reasoning_summary_text.delta", 0),
        ("response.reasoning_summary_text.delta", 0), ("response.reasoning_summary_text.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1), ("response.content_part.added", 1), ("response.output_text.delta", 1),
        ("response.output_text.done", 1), ("response.content_part.done", 1), ("response.output_item.done", 1),
        ("response.completed", None),
    ]
    assert events[2][1]["item"] == {"id": "rs_101", "type": "reasoning", "summary": []}
    reasoning = {"id": "rs_101", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Hmm."}],
                 "encrypted_content": "Hmm."}
    assert events[6][1]["item"] == reasoning
    assert [item["type"] for item in events[-1][1]["response"]["output"]] == ["reasoning", "message"]


def test_tool_calls_stream_whole_and_text_after_them_is_dropped():
    events = stream([piece(tool_calls=[CALL]), piece("ignored"), final()])
    assert [name for name, _ in events[2:]] == [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    ]
    added, done = events[2][1]["item"], events[5][1]["item"]
    assert added == {"id": "fc_101_0", "type": "function_call", "status": "in_progress", "call_id": "call_core0001",
                     "name": "get_weather", "arguments": ""}
    assert done == {**added, "status": "completed", "arguments": '{"city":"Paris"}'}
    assert events[3][1]["delta"] == events[4][1]["arguments"] == '{"city":"Paris"}'
    assert events[-1][1]["response"]["output"] == [done]


def test_text_before_a_tool_call_is_closed_before_the_call_takes_the_next_index():
    events = stream([piece("Let me check."), piece(tool_calls=[CALL, CALL]), final()])
    indexed = [(name, data["output_index"]) for name, data in events if name.startswith("response.output_item")]
    assert indexed == [
        ("response.output_item.added", 0), ("response.output_item.done", 0),
        ("response.output_item.added", 1), ("response.output_item.done", 1),
        ("response.output_item.added", 2), ("response.output_item.done", 2),
    ]
    output = events[-1][1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call", "function_call"]
    assert len({item["id"] for item in output}) == 3


def test_a_failure_mid_stream_is_response_failed_with_what_was_made():
    converter = responses.ResponseStream(call(input="x").echo, "resp_42", "msg_7", now=now)
    text = converter.events(piece("Hel")) + converter.error_event(ApiError(500, "llama runner process has terminated"))
    name, data = parse_events(text)[-1]
    assert name == "response.failed"
    failed = data["response"]
    assert (failed["id"], failed["status"]) == ("resp_42", "failed")
    assert failed["error"] == {"code": "api_error", "message": "llama runner process has terminated"}
    assert failed["output"] == [{"id": "msg_7", "type": "message", "status": "incomplete", "role": "assistant",
                                 "content": [{"type": "output_text", "text": "Hel", "annotations": [],
                                              "logprobs": []}]}]


# --- over HTTP, read by the openai SDK ---------------------------------------------------------------


def sdk(client) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(client.base_url).rstrip("/") + "/v1", api_key="x", max_retries=0)


def test_the_sdk_reads_a_response_and_a_stream():
    async def scenario():
        core = FakeCore()
        core.stream_script = [piece(thinking="Paris, surely."), piece("Paris"), piece("."), final()]
        async with gateway(core) as client:
            oai = sdk(client)
            reply = await oai.responses.create(model="smollm2", input="Capital of France?", instructions="Be brief.")
            assert reply.output_text == "Paris." and reply.status == "completed"
            assert re.fullmatch(r"resp_\d+", reply.id) and re.fullmatch(r"msg_\d+", reply.output[1].id)
            assert reply.output[0].summary[0].text == "Paris, surely."
            assert reply.usage.total_tokens == 15

            names, deltas = [], []
            async for event in await oai.responses.create(model="smollm2", input="Capital?", stream=True):
                names.append(event.type)
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            assert names[:2] == ["response.created", "response.in_progress"] and names[-1] == "response.completed"
            assert "".join(deltas) == "Paris."

            async with oai.responses.stream(model="smollm2", input="Capital?") as events:
                async for _ in events:
                    pass
                streamed = await events.get_final_response()
            assert streamed.output_text == "Paris." and [i.type for i in streamed.output] == ["reasoning", "message"]
        sent = core.calls[0][1]
        assert [(m.role, m.content) for m in sent.messages] == [("system", "Be brief."), ("user", "Capital of France?")]

    run(scenario)


def test_the_sdk_follows_a_streamed_call_after_text():
    async def scenario():
        core = FakeCore()
        core.stream_script = [piece("Checking. "), piece(tool_calls=[CALL]), final()]
        async with gateway(core) as client:
            oai = sdk(client)
            async with oai.responses.stream(model="smollm2", input="Weather?", tools=[WEATHER]) as events:
                streamed = await events.get_final_response()
            assert [item.type for item in streamed.output] == ["message", "function_call"]
            assert json.loads(streamed.output[1].arguments) == {"city": "Paris"}
            reply = await oai.responses.create(model="smollm2", input="Weather?", tools=[WEATHER])
            assert [(item.type, item.call_id) for item in reply.output] == [("function_call", "call_core0001")]

    run(scenario)


def test_errors_have_openais_shape_before_the_first_byte_and_are_response_failed_after():
    async def scenario():
        core = FakeCore()
        core.stream_script = [Abort(grpc.StatusCode.NOT_FOUND, "model 'ghost:latest' not found")]
        async with gateway(core) as client:
            for stream_flag in (False, True):
                missing = await client.post("/v1/responses", json={"model": "ghost", "input": "x",
                                                                   "stream": stream_flag})
                assert missing.status_code == 404
                assert missing.json() == {"error": {"message": "model 'ghost' not found", "type": "not_found_error",
                                                    "param": None, "code": None}}
            bad = await client.post("/v1/responses", json={"model": "m", "input": [{"type": "nope"}]})
            assert (bad.status_code, bad.json()["error"]["message"]) == (400, 'input[0]: unknown input item type: "nope"')
            zstd = await client.post("/v1/responses", content=b"(\xb5/\xfd", headers={"content-encoding": "zstd"})
            assert (zstd.status_code, zstd.json()["error"]["type"]) == (400, "invalid_request_error")
            assert (await client.post("/v1/responses")).json()["error"]["message"] == "EOF"

            core.stream_script = [piece("Hel"), Abort(grpc.StatusCode.INTERNAL, "llama runner process has terminated")]
            broken = await client.post("/v1/responses", json={"model": "m", "input": "x", "stream": True})
            assert broken.status_code == 200 and broken.headers["content-type"] == "text/event-stream"
            name, data = parse_events(broken.text)[-1]
            assert name == "response.failed" and data["response"]["error"]["message"] == (
                "llama runner process has terminated")

            oai = sdk(client)
            with pytest.raises(openai.NotFoundError):
                core.stream_script = [Abort(grpc.StatusCode.NOT_FOUND, "model 'ghost:latest' not found")]
                await oai.responses.create(model="ghost", input="x")

    run(scenario)
