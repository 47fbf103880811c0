"""/openapi.json: every route the app serves, and nothing else, in a valid OpenAPI 3.1 document
whose request schemas accept what the routes accept."""

from __future__ import annotations

import re

import jsonschema
import pytest
from openapi_spec_validator import validate
from sanic import Sanic

from herd.rest.app import create_app
from herd.rest.openapi import openapi_document
from herd.rest.settings import GatewaySettings
from tests.fake_core import FakeCore, gateway, run


@pytest.fixture(scope="module")
def served_routes() -> set[tuple[str, str]]:
    app = create_app(GatewaySettings())
    app.router.finalize()
    try:
        return {
            # Sanic's <name> (or <name:type>) is OpenAPI's {name}.
            (re.sub(r"<(\w+)(?::[^>]*)?>", r"{\1}", "/" + route.raw_path), method.lower())
            for route in app.router.routes
            for method in route.methods
        }
    finally:
        Sanic.unregister_app(app)


def documented(document: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, operations in document["paths"].items() for method in operations}


def test_every_route_the_app_serves_is_documented_and_nothing_else(served_routes):
    assert documented(openapi_document("1.2.3")) == served_routes
    assert ("/api/blobs/{digest}", "head") in served_routes  # the parameter form is compared too


def test_the_document_is_valid_openapi_3_1():
    document = openapi_document("1.2.3")
    assert document["openapi"].startswith("3.1")
    validate(document)


def request_schema(document: dict, path: str, method: str = "post") -> dict:
    """The request body's schema, with the document's components to resolve its references."""
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


@pytest.mark.parametrize(
    ("path", "body", "accepted"),
    [
        ("/api/generate", {"model": "m", "prompt": "hi", "options": {"temperature": 0.5, "stop": ["\n"]},
                           "keep_alive": "5m", "think": "high", "images": ["aGk="]}, True),
        ("/api/generate", {"model": 5}, False),
        ("/api/generate", {"model": "m", "think": "sometimes"}, False),
        ("/api/generate", {"model": "m", "options": {"num_ctx": "big"}}, False),
        ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi", "tool_calls": [
            {"function": {"name": "f", "arguments": {"x": 1}}}]}], "keep_alive": -1}, True),
        ("/api/chat", {"model": "m", "messages": "hi"}, False),
        ("/api/create", {"model": "m", "from": "base", "files": {"a.gguf": "sha256:00"}, "parameters": {"top_k": 3}},
         True),
        ("/api/create", {"model": "m", "files": {"a.gguf": 1}}, False),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                                  "stream_options": {"include_usage": True}, "temperature": 0.2}, True),
        ("/v1/chat/completions", {"model": "m", "temperature": "hot"}, False),
        ("/v1/responses", {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f"}]}, True),
        ("/v1/responses", {"model": "m", "input": 3}, False),
    ],
)
def test_request_schemas_follow_what_the_routes_decode(path, body, accepted):
    schema = request_schema(openapi_document("1.2.3"), path)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(body))
    assert (not errors) == accepted, errors


def test_streams_errors_and_the_api_key_are_described():
    document = openapi_document("1.2.3")
    generate = document["paths"]["/api/generate"]["post"]["responses"]
    assert set(generate["200"]["content"]) == {"application/x-ndjson", "application/json"}
    assert generate["4XX"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert set(chat["200"]["content"]) == {"text/event-stream", "application/json"}
    assert chat["4XX"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OpenAIError"}
    assert document["paths"]["/api/version"]["get"]["security"] == [{}]
    assert "security" not in document["paths"]["/metrics"]["get"]  # the document-wide bearer key applies


def test_the_gateway_serves_the_document():
    async def scenario():
        async with gateway(FakeCore()) as client:
            response = await client.get("/openapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.json() == openapi_document("1.2.3")

    run(scenario)
