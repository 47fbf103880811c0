"""Ollama /api bodies ⇄ herd.v1 messages: what a client sends, what it gets back, what it is told."""

from __future__ import annotations

import json

import pytest

from herd.rest.errors import ApiError
from herd.rest.ollama import translate
from herd.rest.ollama.parsing import (
    CHAT_REQUEST,
    GENERATE_REQUEST,
    decode_request,
    keep_alive_ns,
    options_from_map,
    parse_json_body,
)
from herd.v1 import common_pb2, inference_pb2, models_pb2


def refused(call, *args) -> tuple[int, str]:
    with pytest.raises(ApiError) as caught:
        call(*args)
    return caught.value.status, caught.value.message


# --- JSON bodies and Go's messages -------------------------------------------------------------


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "missing request body"),
        (b" \n\t ", "missing request body"),
        (b"x", "invalid character 'x' looking for beginning of value"),
        (b'{"model":', "unexpected EOF"),
        (b'{"model":"m"', "unexpected EOF"),
        (b'{"model" "m"}', "invalid character '\"' after object key"),
        (b'{"model":"m" "prompt":"p"}', "invalid character '\"' after object key:value pair"),
        (b'{"context":[1 2]}', "invalid character '2' after array element"),
        (b'{,}', "invalid character ',' looking for beginning of object key string"),
        (b'{"model":"m",}', "invalid character '}' looking for beginning of object key string"),
        (b'{"raw":tru}', "invalid character '}' in literal true (expecting 'e')"),
        (b'{"raw":nul}', "invalid character '}' in literal null (expecting 'l')"),
        (b'{"top_logprobs":-}', "invalid character '}' in numeric literal"),
        (b'{"top_logprobs":1.}', "invalid character '}' after decimal point in numeric literal"),
        (b'{"top_logprobs":1e}', "invalid character '}' in exponent of numeric literal"),
        (b'{"prompt":"a\x01"}', "invalid character '\\x01' in string literal"),
        (b'{"prompt":"\\q"}', "invalid character 'q' in string escape code"),
        (b'{"prompt":"\\u12x4"}', "invalid character 'x' in \\u hexadecimal character escape"),
        (b"NaN", "invalid character 'N' looking for beginning of value"),
        (b'{"temperature":-Infinity}', "invalid character 'I' in numeric literal"),
        (b"'model'", "invalid character '\\'' looking for beginning of value"),
        ("é".encode(), "invalid character 'Ã' looking for beginning of value"),
    ],
)
def test_bad_bodies_get_gos_messages(body, message):
    assert refused(parse_json_body, body) == (400, message)


def test_a_huge_bad_body_still_gets_a_go_style_message():
    body = b'{"prompt":"' + b"a" * 200_000 + b'" "model":"m"}'
    assert refused(parse_json_body, body) == (400, "invalid character '\"' after object key:value pair")
    assert refused(parse_json_body, b'{"prompt":"' + b"a" * 200_000) == (400, "unexpected EOF")


def test_bytes_after_the_first_value_are_ignored_as_by_gos_decoder():
    assert parse_json_body(b'{"model":"m"} trailing') == {"model": "m"}


def test_lone_surrogate_escapes_become_the_replacement_character():
    assert parse_json_body(b'{"prompt":"a\\ud800b"}') == {"prompt": "a\ufffdb"}


@pytest.mark.parametrize(
    "document, struct, message",
    [
        ({"model": "m", "stream": "yes"}, GENERATE_REQUEST,
         "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"),
        ({"model": 7}, GENERATE_REQUEST,
         "json: cannot unmarshal number into Go struct field GenerateRequest.model of type string"),
        ({"prompt": ["a"]}, GENERATE_REQUEST,
         "json: cannot unmarshal array into Go struct field GenerateRequest.prompt of type string"),
        ({"raw": "true"}, GENERATE_REQUEST,
         "json: cannot unmarshal string into Go struct field GenerateRequest.raw of type bool"),
        ({"options": []}, GENERATE_REQUEST,
         "json: cannot unmarshal array into Go struct field GenerateRequest.options of type map[string]interface {}"),
        ({"context": "1,2"}, GENERATE_REQUEST,
         "json: cannot unmarshal string into Go struct field GenerateRequest.context of type []int"),
        ([1, 2], GENERATE_REQUEST, "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
        ({"messages": "hi"}, CHAT_REQUEST,
         "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message"),
        ({"messages": ["hi"]}, CHAT_REQUEST,
         "json: cannot unmarshal string into Go struct field ChatRequest.messages of type api.Alias"),
        ({"messages": [{"role": 1}]}, CHAT_REQUEST,
         "json: cannot unmarshal number into Go struct field ChatRequest.messages.role of type string"),
        ({"messages": [{"tool_calls": [{"function": {"name": 5}}]}]}, CHAT_REQUEST,
         "json: cannot unmarshal number into Go struct field ChatRequest.messages.tool_calls.function.name of type string"),
        ({"tools": [{"type": 5}]}, CHAT_REQUEST,
         "json: cannot unmarshal number into Go struct field Tool.tools.type of type string"),
        ({"model": "m", "think": "maybe"}, CHAT_REQUEST,
         'invalid think value: "maybe" (must be "high", "medium", "low", "max", true, or false)'),
        ({"messages": [{"images": ["not base64!"]}]}, CHAT_REQUEST, "illegal base64 data at input byte 3"),
    ],
)
def test_wrong_types_get_gos_unmarshal_messages(document, struct, message):
    assert refused(decode_request, document, struct) == (400, message)


def test_integer_fields_name_the_number_go_could_not_fit():
    body = parse_json_body(b'{"model":"m","top_logprobs":1.5}')
    assert refused(decode_request, body, GENERATE_REQUEST) == (
        400,
        "json: cannot unmarshal number 1.5 into Go struct field GenerateRequest.top_logprobs of type int",
    )


def test_an_unmarshaler_error_wins_over_an_earlier_type_mismatch():
    # Go keeps reading after a type mismatch but stops at once when keep_alive's UnmarshalJSON fails.
    document = {"stream": "yes", "keep_alive": "10"}
    assert refused(decode_request, document, GENERATE_REQUEST) == (400, 'time: missing unit in duration "10"')


def test_field_names_match_case_insensitively_and_unknown_fields_are_ignored():
    assert decode_request({"MODEL": "m", "Prompt": "p", "unknown": {"x": 1}}, GENERATE_REQUEST) == {
        "model": "m",
        "prompt": "p",
    }


def test_null_fields_are_unset():
    assert decode_request({"model": "m", "stream": None, "keep_alive": None}, GENERATE_REQUEST) == {"model": "m"}


# --- keep_alive ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, nanoseconds",
    [
        (300, 300_000_000_000),
        (1.5, 1_500_000_000),
        (0, 0),
        (-1, -1),
        (-0.5, -1),
        ("5m", 300_000_000_000),
        ("1h30m", 5_400_000_000_000),
        ("1.5h", 5_400_000_000_000),
        (".5s", 500_000_000),
        ("300ms", 300_000_000),
        ("1µs", 1_000),
        ("7ns", 7),
        ("+5s", 5_000_000_000),
        ("0", 0),
        ("-1m", -1),
        ("-0", 0),
    ],
)
def test_keep_alive_values(value, nanoseconds):
    assert keep_alive_ns(value) == nanoseconds


@pytest.mark.parametrize(
    "value, message",
    [
        ("10", 'time: missing unit in duration "10"'),
        ("x", 'time: invalid duration "x"'),
        ("", 'time: invalid duration ""'),
        (".s", 'time: invalid duration ".s"'),
        ("5x", 'time: unknown unit "x" in duration "5x"'),
        ("1..5s", 'time: missing unit in duration "1..5s"'),
        ("5µx", 'time: unknown unit "\\xc2\\xb5x" in duration "5\\xc2\\xb5x"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        (True, "Unsupported type: 'bool'"),
        (["5m"], "Unsupported type: '[]interface {}'"),
        ({"s": 5}, "Unsupported type: 'map[string]interface {}'"),
    ],
)
def test_bad_keep_alive_is_a_400_with_gos_words(value, message):
    assert refused(decode_request, {"model": "m", "keep_alive": value}, GENERATE_REQUEST) == (400, message)


def test_a_keep_alive_too_long_for_int64_is_the_longest_there_is():
    assert keep_alive_ns(1e300) == (1 << 63) - 1


# --- options ---------------------------------------------------------------------------------


def test_options_become_proto_options_with_integers_truncated():
    pb = options_from_map(
        {
            "num_predict": 3.9,
            "top_k": -2.5,
            "temperature": 1,
            "top_p": 0.5,
            "seed": 12345678901,
            "stop": ["\n", "User:"],
            "use_mmap": False,
            "main_gpu": 0,
            "num_ctx": 1e12,
        }
    )
    assert pb.num_predict == 3
    assert pb.top_k == -2
    assert pb.temperature == 1.0
    assert pb.top_p == 0.5
    assert pb.seed == 12345678901
    assert list(pb.stop.values) == ["\n", "User:"]
    assert pb.HasField("use_mmap") and pb.use_mmap is False
    assert pb.HasField("main_gpu") and pb.main_gpu == 0
    assert pb.num_ctx == (1 << 31) - 1
    assert not pb.HasField("min_p")


def test_an_empty_stop_list_is_still_set():
    assert options_from_map({"stop": []}).HasField("stop")


def test_unknown_and_null_options_are_ignored():
    assert options_from_map({"mirostat": 2, "numa": True, "temperature": None}) == common_pb2.Options()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_ctx": "4096"}, 'option "num_ctx" must be of type integer'),
        ({"num_predict": True}, 'option "num_predict" must be of type integer'),
        ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
        ({"use_mmap": 1}, 'option "use_mmap" must be of type boolean'),
        ({"stop": "\n"}, 'option "stop" must be of type array'),
        ({"stop": ["a", 1]}, 'option "stop" must be of an array of strings'),
        ({"draft_num_predict": "4"}, 'option "draft_num_predict" must be of type integer'),
    ],
)
def test_options_of_the_wrong_type_are_a_500(options, message):
    assert refused(options_from_map, options) == (500, message)


# --- /api/generate ---------------------------------------------------------------------------


def test_generate_request_translation():
    call = translate.generate_request(
        {
            "model": "smollm2:135m",
            "prompt": "Why is the sky blue?",
            "suffix": "",
            "system": "Be brief.",
            "images": ["aGk="],
            "format": {"type": "object"},
            "keep_alive": "5m",
            "options": {"temperature": 0, "num_predict": 8},
            "stream": False,
        }
    )
    assert call.stream is False
    assert not call.request.HasField("think")
    pb = call.request
    assert pb.model == "smollm2:135m"
    assert pb.prompt == "Why is the sky blue?"
    assert pb.system == "Be brief."
    assert not pb.HasField("template")
    assert list(pb.images) == [b"hi"]
    assert json.loads(pb.format) == {"type": "object"}
    assert pb.keep_alive_ns == 300_000_000_000
    assert pb.options.temperature == 0 and pb.options.HasField("temperature")
    assert pb.options.num_predict == 8


def test_generate_defaults():
    call = translate.generate_request({"model": "m"})
    assert call.stream is True
    assert not call.request.HasField("keep_alive_ns")
    assert not call.request.HasField("system")
    assert call.request.format == ""
    assert call.request.options == common_pb2.Options()


def test_an_empty_system_does_not_override_the_models():
    assert not translate.generate_request({"model": "m", "system": ""}).request.HasField("system")


@pytest.mark.parametrize("think, sent", [(True, "true"), ("high", "high"), (False, "false")])
def test_think_is_sent_as_text(think, sent):
    assert translate.generate_request({"model": "m", "think": think}).request.think == sent


@pytest.mark.parametrize(
    "document, status, message",
    [
        ({"model": "m", "top_logprobs": 21}, 400, "top_logprobs must be between 0 and 20"),
        ({"model": "", "top_logprobs": -1}, 400, "top_logprobs must be between 0 and 20"),
        ({"prompt": "hi"}, 404, "model '' not found"),
        ({"model": "m", "raw": True, "system": "s"}, 400, "raw mode does not support template, system, or context"),
        ({"model": "m", "raw": True, "context": [1]}, 400, "raw mode does not support template, system, or context"),
        ({"model": "m", "format": "xml"}, 500,
         'invalid format: "\\"xml\\""; expected "json" or a valid JSON Schema object'),
        ({"model": "m", "images": ["@@@"]}, 400, "illegal base64 data at input byte 0"),
        ({"model": "m", "options": {"top_k": "many"}}, 500, 'option "top_k" must be of type integer'),
    ],
)
def test_generate_refusals(document, status, message):
    assert refused(translate.generate_request, document) == (status, message)


def test_raw_mode_without_template_system_or_context_is_fine():
    assert translate.generate_request({"model": "m", "raw": True, "prompt": "x"}).request.raw is True


def _stamped(message, seconds=1691176965, nanos=499127000):
    message.created_at.seconds = seconds
    message.created_at.nanos = nanos
    return message


def test_generate_chunks_and_the_final_one():
    piece = _stamped(inference_pb2.GenerateResponse(model="m", response="The"))
    assert translate.generate_chunk(piece) == {
        "model": "m",
        "created_at": "2023-08-04T19:22:45.499127Z",
        "response": "The",
        "done": False,
    }
    final = _stamped(
        inference_pb2.GenerateResponse(
            model="m",
            done=True,
            done_reason=common_pb2.DONE_REASON_STOP,
            context=[1, 2, 3],
            metrics=common_pb2.Metrics(
                total_duration_ns=10, load_duration_ns=0, prompt_eval_count=3, prompt_eval_duration_ns=4,
                eval_count=2, eval_duration_ns=5,
            ),
        )
    )
    body = translate.generate_chunk(final)
    assert body == {
        "model": "m",
        "created_at": "2023-08-04T19:22:45.499127Z",
        "response": "",
        "done": True,
        "done_reason": "stop",
        "context": [1, 2, 3],
        "total_duration": 10,
        "prompt_eval_count": 3,
        "prompt_eval_duration": 4,
        "eval_count": 2,
        "eval_duration": 5,
    }
    # Ollama's struct order: done_reason and context before the metrics.
    assert list(body)[:6] == ["model", "created_at", "response", "done", "done_reason", "context"]


def test_a_load_only_answer_has_done_reason_load_and_no_context():
    load = _stamped(inference_pb2.GenerateResponse(model="m", done=True, done_reason=common_pb2.DONE_REASON_LOAD))
    assert translate.generate_chunk(load) == {
        "model": "m",
        "created_at": "2023-08-04T19:22:45.499127Z",
        "response": "",
        "done": True,
        "done_reason": "load",
    }


def test_non_streaming_generate_concatenates_the_text():
    messages = [
        _stamped(inference_pb2.GenerateResponse(model="m", response="Hel")),
        _stamped(inference_pb2.GenerateResponse(model="m", response="lo")),
        _stamped(
            inference_pb2.GenerateResponse(
                model="m", done=True, done_reason=common_pb2.DONE_REASON_LENGTH,
                metrics=common_pb2.Metrics(eval_count=2),
            ),
            nanos=0,
        ),
    ]
    assert translate.generate_response(messages) == {
        "model": "m",
        "created_at": "2023-08-04T19:22:45Z",
        "response": "Hello",
        "done": True,
        "done_reason": "length",
        "eval_count": 2,
    }


# --- /api/chat -------------------------------------------------------------------------------


def test_chat_request_translation():
    call = translate.chat_request(
        {
            "model": "smollm2:135m",
            "messages": [
                {"role": "SYSTEM", "content": "Be brief."},
                {"role": "user", "content": "Weather?", "images": ["aGk="]},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": "call_ab12cd34", "function": {"index": 0, "name": "get_weather",
                                                             "arguments": {"city": "Paris", "unit": "c"}}}
                    ],
                },
                {"role": "tool", "content": "21", "tool_name": "get_weather", "tool_call_id": "call_ab12cd34"},
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
            ],
            "format": "json",
            "keep_alive": -1,
        }
    )
    pb = call.request
    assert [m.role for m in pb.messages] == ["system", "user", "assistant", "tool"]
    assert list(pb.messages[1].images) == [b"hi"]
    tool_call = pb.messages[2].tool_calls[0]
    assert (tool_call.id, tool_call.index, tool_call.name) == ("call_ab12cd34", 0, "get_weather")
    assert tool_call.arguments_json == '{"city":"Paris","unit":"c"}'  # key order kept
    assert (pb.messages[3].tool_name, pb.messages[3].tool_call_id) == ("get_weather", "call_ab12cd34")
    assert pb.tools[0].type == "function"
    assert pb.tools[0].function.name == "get_weather"
    assert json.loads(pb.tools[0].function.parameters_json)["properties"] == {"city": {"type": "string"}}
    assert pb.format == "json"
    assert pb.keep_alive_ns < 0
    assert call.stream is True


def test_chat_without_a_model_is_a_400():
    assert refused(translate.chat_request, {"messages": []}) == (400, "model is required")


def test_chat_chunks_and_non_streaming_chat():
    pieces = [
        _stamped(inference_pb2.ChatResponse(model="m", message=inference_pb2.Message(role="assistant", content="Hi"))),
        _stamped(
            inference_pb2.ChatResponse(
                model="m",
                message=inference_pb2.Message(
                    role="assistant",
                    tool_calls=[common_pb2.ToolCall(id="call_1", index=0, name="f", arguments_json='{"b":1,"a":2}')],
                ),
            )
        ),
        _stamped(
            inference_pb2.ChatResponse(
                model="m", message=inference_pb2.Message(role="assistant"), done=True,
                done_reason=common_pb2.DONE_REASON_STOP, metrics=common_pb2.Metrics(total_duration_ns=9),
            )
        ),
    ]
    assert translate.chat_chunk(pieces[0]) == {
        "model": "m",
        "created_at": "2023-08-04T19:22:45.499127Z",
        "message": {"role": "assistant", "content": "Hi"},
        "done": False,
    }
    assert translate.chat_chunk(pieces[1])["message"]["tool_calls"] == [
        {"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"b": 1, "a": 2}}}
    ]
    body = translate.chat_response(pieces)
    assert body == {
        "model": "m",
        "created_at": "2023-08-04T19:22:45.499127Z",
        "message": {
            "role": "assistant",
            "content": "Hi",
            "tool_calls": [{"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"b": 1, "a": 2}}}],
        },
        "done": True,
        "done_reason": "stop",
        "total_duration": 9,
    }
    assert list(body["message"]["tool_calls"][0]["function"]["arguments"]) == ["b", "a"]


# --- /api/embed and /api/embeddings ------------------------------------------------------------


@pytest.mark.parametrize("value, inputs", [("hello", ["hello"]), (["a", "b"], ["a", "b"]), ("", []), (None, [])])
def test_embed_input_forms(value, inputs):
    assert list(translate.embed_request({"model": "m", "input": value}).input) == inputs


@pytest.mark.parametrize("value", [5, ["a", 1], {"text": "a"}, True])
def test_embed_input_of_another_type_is_refused(value):
    assert refused(translate.embed_request, {"model": "m", "input": value}) == (400, "invalid input type")


def test_embed_request_fields():
    pb = translate.embed_request({"model": "m", "input": "x", "truncate": False, "dimensions": 64, "keep_alive": 0})
    assert pb.HasField("truncate") and pb.truncate is False
    assert pb.dimensions == 64
    assert pb.HasField("keep_alive_ns") and pb.keep_alive_ns == 0
    assert not pb.HasField("normalize")
    assert not translate.embed_request({"model": "m"}).HasField("truncate")


def test_embed_without_a_model_is_a_404_as_in_ollama():
    assert refused(translate.embed_request, {"input": "x"}) == (404, "model '' not found")


def test_embed_response():
    message = inference_pb2.EmbedResponse(
        model="m",
        embeddings=[inference_pb2.Embedding(values=[0.5, -0.25]), inference_pb2.Embedding(values=[1.0, 0.0])],
        metrics=common_pb2.Metrics(total_duration_ns=7, load_duration_ns=2, prompt_eval_count=4),
    )
    assert translate.embed_response(message) == {
        "model": "m",
        "embeddings": [[0.5, -0.25], [1.0, 0.0]],
        "total_duration": 7,
        "load_duration": 2,
        "prompt_eval_count": 4,
    }
    assert translate.embed_response(inference_pb2.EmbedResponse(model="m")) == {"model": "m", "embeddings": []}


def test_legacy_embeddings():
    pb = translate.embeddings_request({"model": "m", "prompt": "hello", "options": {"num_ctx": 512}})
    assert list(pb.input) == ["hello"]
    assert pb.HasField("normalize") and pb.normalize is False
    assert pb.options.num_ctx == 512
    assert list(translate.embeddings_request({"model": "m"}).input) == []
    assert refused(translate.embeddings_request, {"prompt": "x"}) == (400, "model is required")
    vector = inference_pb2.EmbedResponse(embeddings=[inference_pb2.Embedding(values=[0.5])])
    assert translate.embeddings_response(vector) == {"embedding": [0.5]}
    assert translate.embeddings_response(inference_pb2.EmbedResponse()) == {"embedding": []}


def test_embed_not_found_message_quotes_like_go():
    assert translate.embed_not_found('we"ird') == 'model "we\\"ird" not found, try pulling it first'


# --- timestamps, /api/tags, /api/show, /api/ps ----------------------------------------------------


@pytest.mark.parametrize(
    "seconds, nanos, text",
    [
        (1691176965, 499127000, "2023-08-04T19:22:45.499127Z"),
        (1691176965, 0, "2023-08-04T19:22:45Z"),
        (1691176965, 1, "2023-08-04T19:22:45.000000001Z"),
        (1691176965, 120000000, "2023-08-04T19:22:45.12Z"),
        (-62135596800, 0, "0001-01-01T00:00:00Z"),
    ],
)
def test_rfc3339_nano_like_go(seconds, nanos, text):
    assert translate.rfc3339_nano(seconds, nanos) == text


_DETAILS = common_pb2.ModelDetails(
    format="gguf", family="llama", families=["llama"], parameter_size="135M", quantization_level="Q8_0"
)
_DETAILS_JSON = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": ["llama"],
    "parameter_size": "135M",
    "quantization_level": "Q8_0",
}


def test_tags_response():
    message = models_pb2.ListModelsResponse(
        models=[
            models_pb2.ModelSummary(
                name="smollm2:135m", size=1234, digest="ab" * 32, details=_DETAILS, capabilities=["completion"]
            ),
            models_pb2.ModelSummary(name="bare:latest", details=common_pb2.ModelDetails(format="gguf")),
        ]
    )
    message.models[0].modified_at.seconds = 1691176965
    message.models[0].modified_at.nanos = 499127000
    body = translate.tags_response(message)
    assert body["models"][0] == {
        "name": "smollm2:135m",
        "model": "smollm2:135m",
        "modified_at": "2023-08-04T19:22:45.499127Z",
        "size": 1234,
        "digest": "ab" * 32,
        "details": _DETAILS_JSON,
        "capabilities": ["completion"],
    }
    assert body["models"][1]["details"]["families"] is None
    assert "capabilities" not in body["models"][1]
    assert translate.tags_response(models_pb2.ListModelsResponse()) == {"models": []}


def test_show_request():
    pb = translate.show_request({"name": "smollm2", "verbose": True, "system": "S", "options": {"num_ctx": 2048}})
    assert (pb.model, pb.verbose, pb.system, pb.options.num_ctx) == ("smollm2", True, "S", 2048)
    assert translate.show_request({"model": "a", "name": "b"}).model == "a"
    assert not translate.show_request({"model": "a"}).HasField("system")
    assert refused(translate.show_request, {}) == (400, "model is required")


def test_show_response():
    message = models_pb2.ShowModelResponse(
        modelfile="# Modelfile generated by \"ollama show\"\n",
        parameters='stop                           "<|im_end|>"',
        template="{{ .Prompt }}",
        details=_DETAILS,
        model_info_json='{"general.architecture":"llama","llama.context_length":8192}',
        capabilities=["completion", "tools"],
        messages=[models_pb2.ModelMessage(role="user", content="hi")],
    )
    message.modified_at.seconds = 1691176965
    body = translate.show_response(message)
    assert body == {
        "modelfile": "# Modelfile generated by \"ollama show\"\n",
        "parameters": 'stop                           "<|im_end|>"',
        "template": "{{ .Prompt }}",
        "details": _DETAILS_JSON,
        "messages": [{"role": "user", "content": "hi"}],
        "model_info": {"general.architecture": "llama", "llama.context_length": 8192},
        "capabilities": ["completion", "tools"],
        "modified_at": "2023-08-04T19:22:45Z",
    }
    assert translate.show_response(models_pb2.ShowModelResponse())["model_info"] == {}


def test_show_not_found_names_the_normalised_model_from_core():
    assert translate.show_not_found("model 'smollm2:latest' not found", "smollm2") == "model 'smollm2:latest' not found"
    assert translate.show_not_found("no such thing", "smollm2") == "model 'smollm2' not found"


def test_ps_response_and_a_model_kept_forever():
    now_ns = 1_700_000_000_000_000_000
    running = models_pb2.RunningModel(
        name="smollm2:135m", size=300, size_vram=0, digest="cd" * 32, details=_DETAILS, context_length=4096
    )
    timed = models_pb2.RunningModel()
    timed.CopyFrom(running)
    timed.expires_at.seconds = 1691176965
    body = translate.ps_response(models_pb2.ListRunningResponse(models=[timed, running]), now_ns)
    assert body["models"][0] == {
        "name": "smollm2:135m",
        "model": "smollm2:135m",
        "size": 300,
        "digest": "cd" * 32,
        "details": _DETAILS_JSON,
        "expires_at": "2023-08-04T19:22:45Z",
        "size_vram": 0,
        "context_length": 4096,
    }
    # Go's time.Now().Add(MaxInt64): 292 years on.
    assert body["models"][1]["expires_at"] == "2316-02-24T22:00:36.854775807Z"


def test_generate_thinking_follows_response_and_is_joined_when_not_streaming():
    pieces = [
        inference_pb2.GenerateResponse(model="m", thinking="Let me "),
        inference_pb2.GenerateResponse(model="m", thinking="see.", response="Paris"),
        inference_pb2.GenerateResponse(model="m", done=True, done_reason=common_pb2.DONE_REASON_STOP),
    ]
    assert list(translate.generate_chunk(pieces[0])) == ["model", "created_at", "response", "thinking", "done"]
    assert "thinking" not in translate.generate_chunk(pieces[2])
    whole = translate.generate_response(pieces)
    assert (whole["response"], whole["thinking"], whole["done"]) == ("Paris", "Let me see.", True)
