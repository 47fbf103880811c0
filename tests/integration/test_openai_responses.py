"""/v1/responses against the real server and the bundled model, driven by the openai SDK."""

from __future__ import annotations

import json
import re

import jsonschema
import ollama
import openai
import pytest

from tests.conftest import CHAT_MODEL
from tests.integration.test_structured_outputs import CALL_SCHEMA, COUNTRY, JSON_CALLS_TEMPLATE

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"
# The Responses API's tool shape: name and schema at the top level.
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALL_FORMAT = {"format": {"type": "json_schema", "name": "call", "schema": CALL_SCHEMA}}


@pytest.fixture
def oai(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", timeout=300, max_retries=0)


def test_a_response(oai):
    reply = oai.responses.create(model=CHAT_MODEL, input=QUESTION, temperature=0, max_output_tokens=24)
    assert "Paris" in reply.output_text and "<|im_end|>" not in reply.output_text
    assert re.fullmatch(r"resp_\d{1,6}", reply.id) and reply.object == "response"
    assert (reply.status, reply.model, reply.error) == ("completed", CHAT_MODEL, None)
    (message,) = reply.output
    assert (message.type, message.role, message.status) == ("message", "assistant", "completed")
    assert re.fullmatch(r"msg_\d{1,6}", message.id)
    assert reply.usage.input_tokens > 0 and 0 < reply.usage.output_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    assert (reply.temperature, reply.max_output_tokens, reply.store) == (0, 24, False)


def test_instructions_are_the_system_message(oai):
    plain = oai.responses.create(model=CHAT_MODEL, input=QUESTION, temperature=0, max_output_tokens=24)
    instructed = oai.responses.create(
        model=CHAT_MODEL, input=QUESTION, instructions="You are a pirate. Answer like a pirate.", temperature=0,
        max_output_tokens=24,
    )
    assert instructed.instructions == "You are a pirate. Answer like a pirate."
    assert instructed.output_text and instructed.usage.input_tokens > plain.usage.input_tokens
    # The message-list form says the same thing.
    items = oai.responses.create(
        model=CHAT_MODEL, temperature=0, max_output_tokens=24,
        input=[{"role": "system", "content": "You are a pirate. Answer like a pirate."},
               {"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}],
    )
    assert items.output_text == instructed.output_text


def test_a_streamed_response_in_order(oai):
    stream = oai.responses.create(model=CHAT_MODEL, input=QUESTION, temperature=0, max_output_tokens=24, stream=True)
    events = list(stream)
    kinds = [event.type for event in events]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert set(kinds[4 : 4 + len(deltas)]) == {"response.output_text.delta"}
    assert kinds[4 + len(deltas) :] == ["response.output_text.done", "response.content_part.done",
                                        "response.output_item.done", "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert len({event.response.id for event in events if hasattr(event, "response")}) == 1
    final = events[-1].response
    assert "".join(deltas) == final.output_text == events[-4].text
    assert "Paris" in final.output_text and final.usage.output_tokens > 0

    with oai.responses.stream(model=CHAT_MODEL, input=QUESTION, temperature=0, max_output_tokens=24) as managed:
        texts = [event.delta for event in managed if event.type == "response.output_text.delta"]
        response = managed.get_final_response()
    assert response.status == "completed" and response.output_text == "".join(texts) == final.output_text


def test_a_json_schema_text_format_validates(oai):
    reply = oai.responses.create(
        model=CHAT_MODEL, input="Describe France as JSON.", max_output_tokens=400, temperature=0,
        text={"format": {"type": "json_schema", "name": "c", "schema": COUNTRY}},
    )
    jsonschema.validate(json.loads(reply.output_text), COUNTRY)
    assert reply.text.format.type == "json_schema" and reply.text.format.name == "c"


def test_an_unknown_model_is_not_found(oai):
    with pytest.raises(openai.NotFoundError) as raised:
        oai.responses.create(model="no-such-model", input=QUESTION)
    assert raised.value.body["message"] == "model 'no-such-model' not found"
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no-such-model", input=QUESTION, stream=True)


def test_reasoning_on_a_model_that_cannot_think_is_a_bad_request(oai):
    with pytest.raises(openai.BadRequestError) as raised:
        oai.responses.create(model=CHAT_MODEL, input=QUESTION, reasoning={"effort": "low"})
    assert "does not support thinking" in raised.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model=CHAT_MODEL, input=QUESTION, reasoning={"effort": "enormous"})


# --- tools ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def caller(server) -> str:
    """SmolLM2 writing calls as bare JSON: with a schema for the call, its reply is a call every time."""
    client = ollama.Client(host=server.base_url, timeout=300)
    client.create("smol-json-calls-responses", from_=CHAT_MODEL, template=JSON_CALLS_TEMPLATE, stream=False)
    yield "smol-json-calls-responses"
    client.delete("smol-json-calls-responses")


def test_a_function_call_round_trips(oai, caller):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = oai.responses.create(model=caller, input=ask, tools=[WEATHER_TOOL], text=CALL_FORMAT, temperature=0,
                                 max_output_tokens=60)
    (call,) = reply.output
    assert (call.type, call.name, call.status) == ("function_call", "get_weather", "completed")
    assert call.call_id.startswith("call_") and call.id.startswith(f"fc_{reply.id}_")
    assert isinstance(json.loads(call.arguments)["city"], str)
    assert reply.output_text == "" and reply.tools[0].name == "get_weather"

    history = [*ask, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "It is 22 degrees and sunny."}]
    answer = oai.responses.create(model=caller, input=history, tools=[WEATHER_TOOL], temperature=0,
                                  max_output_tokens=40)
    # The result is in the prompt now; what the 135M model makes of it is its own business.
    assert answer.status == "completed" and (answer.output_text or answer.output[0].type == "function_call")

    with oai.responses.stream(model=caller, input=ask, tools=[WEATHER_TOOL], text=CALL_FORMAT, temperature=0,
                              max_output_tokens=60) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_response()
    assert "response.function_call_arguments.done" in kinds and "response.output_text.delta" not in kinds
    (streamed_call,) = streamed.output
    assert json.loads(streamed_call.arguments) == json.loads(call.arguments)
