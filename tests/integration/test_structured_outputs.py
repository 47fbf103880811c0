"""Structured outputs and tool calls with the real bundled model, through both HTTP dialects.

Every structured reply must parse and validate against its schema (checked with ``jsonschema``),
whatever the model would rather have said: the runner decodes under a grammar compiled from it.
"""

from __future__ import annotations

import json
from typing import Literal

import httpx
import jsonschema
import ollama
import openai
import pytest
from pydantic import BaseModel, Field

from herd.core.templates.library import SMOLLM2_TEMPLATE
from tests.conftest import BASE_MODEL, CHAT_MODEL

pytestmark = pytest.mark.integration

COUNTRY = {
    "type": "object",
    "properties": {
        "country": {"type": "string", "maxLength": 30},
        "capital": {"type": "string", "maxLength": 30},
        "population_millions": {"type": "integer", "minimum": 0, "maximum": 2000},
        "continent": {"enum": ["Europe", "Asia", "Africa", "America", "Oceania"]},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 1, "maxItems": 3},
        "island": {"type": ["boolean", "null"]},
    },
    "required": ["country", "capital", "population_millions", "continent", "languages"],
}
ASK = [{"role": "user", "content": "Describe France as JSON."}]


class City(BaseModel):
    name: str = Field(max_length=30)
    country: str = Field(max_length=30)


class Trip(BaseModel):
    cities: list[City] = Field(min_length=1, max_length=3)
    season: Literal["spring", "summer", "autumn", "winter"]
    nights: int = Field(ge=1, le=30)


@pytest.fixture
def oai(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="anything", timeout=300, max_retries=0)


@pytest.mark.parametrize("options", [{"temperature": 0}, {"temperature": 1.0, "seed": 7}, {"temperature": 1.5, "seed": 3}])
def test_chat_with_a_schema_always_validates(client, options):
    reply = client.chat(CHAT_MODEL, messages=ASK, format=COUNTRY, options={**options, "num_predict": 400})
    jsonschema.validate(json.loads(reply.message.content), COUNTRY)
    assert reply.done_reason == "stop"


def test_generate_with_a_schema_on_the_base_model_validates(client):
    reply = client.generate(BASE_MODEL, "Facts about France:", format=COUNTRY, options={"seed": 1, "num_predict": 400})
    jsonschema.validate(json.loads(reply.response), COUNTRY)


def test_format_json_gives_a_json_object(client):
    # Free-form JSON has no end the grammar can force: this question is one the model finishes.
    question = [{"role": "user", "content": "Give the name and capital of France as a JSON object."}]
    reply = client.chat(CHAT_MODEL, messages=question, format="json", options={"temperature": 0, "num_predict": 300})
    assert reply.done_reason == "stop"
    assert isinstance(json.loads(reply.message.content), dict)


def test_a_pydantic_schema_with_refs_round_trips(client):
    reply = client.chat(CHAT_MODEL, messages=[{"role": "user", "content": "Plan a trip to Italy."}],
                        format=Trip.model_json_schema(), options={"temperature": 0.7, "seed": 2, "num_predict": 400})
    Trip.model_validate_json(reply.message.content)  # raises unless every field and bound holds
    assert reply.done_reason == "stop"  # the grammar closed the object; num_predict did not cut it


def test_an_unsupported_schema_is_a_400_not_an_unconstrained_answer(server):
    reply = httpx.post(server.base_url + "/api/chat", json={
        "model": CHAT_MODEL, "messages": ASK, "stream": False,
        "format": {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}},
    }, timeout=60)
    assert reply.status_code == 400
    assert reply.json() == {"error": 'unsupported JSON schema keyword "pattern" in format'}


def test_openai_json_schema_and_json_object(oai):
    reply = oai.chat.completions.create(
        model=CHAT_MODEL, messages=ASK, max_tokens=400, seed=5,
        response_format={"type": "json_schema", "json_schema": {"name": "country", "schema": COUNTRY}},
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content), COUNTRY)
    question = [{"role": "user", "content": "Give the name and capital of France as a JSON object."}]
    reply = oai.chat.completions.create(model=CHAT_MODEL, messages=question, max_tokens=300, temperature=0,
                                        response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_the_openai_sdks_parse_helper_gets_its_pydantic_object(oai):
    completion = oai.beta.chat.completions.parse(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Plan a trip to Spain."}], response_format=Trip,
        max_tokens=400, seed=11,
    )
    assert isinstance(completion.choices[0].message.parsed, Trip)
    assert completion.choices[0].finish_reason == "stop"


def test_openai_unsupported_schema_is_a_bad_request(oai):
    schema = {"type": "object", "properties": {"n": {"type": "number", "multipleOf": 3}}}
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(model=CHAT_MODEL, messages=ASK, response_format={
            "type": "json_schema", "json_schema": {"name": "n", "schema": schema}})
    assert raised.value.body["message"] == 'unsupported JSON schema keyword "multipleOf" in format'


# --- tools ------------------------------------------------------------------------------------

# SmolLM2's template with calls written as bare JSON objects (no <tool_call> tag): with a schema
# for the call, the 135M model's reply is a call every time, so the whole path can be checked.
JSON_CALLS_TEMPLATE = SMOLLM2_TEMPLATE.replace("<tool_call>[", "").replace("]</tool_call>", "")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"const": "get_weather"},
        "arguments": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                      "required": ["city"]},
    },
    "required": ["name", "arguments"],
}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def caller(server) -> str:
    client = ollama.Client(host=server.base_url, timeout=300)
    client.create("smol-json-calls", from_=CHAT_MODEL, template=JSON_CALLS_TEMPLATE, stream=False)
    yield "smol-json-calls"
    client.delete("smol-json-calls")


def test_a_tool_call_round_trips_through_the_native_api(client, caller):
    assert "tools" in client.show(caller).capabilities
    reply = client.chat(caller, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], format=CALL_SCHEMA,
                        options={"temperature": 0, "num_predict": 60})
    (call,) = reply.message.tool_calls
    assert call.function.name == "get_weather" and isinstance(call.function.arguments["city"], str)
    assert reply.message.content == ""

    streamed = list(client.chat(caller, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], format=CALL_SCHEMA,
                                options={"temperature": 0, "num_predict": 60}, stream=True))
    calls = [c for chunk in streamed for c in (chunk.message.tool_calls or [])]
    assert [c.function.model_dump() for c in calls] == [call.function.model_dump()]  # one whole call

    history = [*WEATHER_QUESTION, reply.message,
               {"role": "tool", "content": "It is 22 degrees and sunny.", "tool_name": "get_weather"}]
    answer = client.chat(caller, messages=history, tools=[WEATHER_TOOL], options={"temperature": 0, "num_predict": 40})
    # The tool's result is in the prompt now; what the 135M model makes of it is its own business.
    assert answer.done and (answer.message.content or answer.message.tool_calls)


def test_a_tool_call_round_trips_through_the_openai_api(oai, caller):
    reply = oai.chat.completions.create(
        model=caller, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], temperature=0, max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "call", "schema": CALL_SCHEMA}},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    history = [*WEATHER_QUESTION, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "It is 22 degrees and sunny."}]
    answer = oai.chat.completions.create(model=caller, messages=history, tools=[WEATHER_TOOL], temperature=0,
                                         max_tokens=40)
    assert answer.choices[0].message.content or answer.choices[0].message.tool_calls

    chunks = list(oai.chat.completions.create(
        model=caller, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], temperature=0, max_tokens=60, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "call", "schema": CALL_SCHEMA}},
    ))
    deltas = [call for chunk in chunks if chunk.choices for call in (chunk.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 1 and json.loads(deltas[0].function.arguments) == json.loads(call.function.arguments)
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "tool_calls"


def test_a_model_without_tools_capability_refuses_tools(oai):
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(model=BASE_MODEL, messages=WEATHER_QUESTION, tools=[WEATHER_TOOL])
    assert raised.value.body["message"] == "registry.ollama.ai/library/gemma3:270m-pt does not support tools"
