"""``/openapi.json``: an OpenAPI 3.1 description of every route the gateway serves.

Request bodies come from the same Go struct descriptions the routes decode with
(:mod:`herd.rest.ollama.parsing`, :mod:`herd.rest.openai.parsing`), so a field the gateway reads
cannot be missing from the document; the table below adds what each route answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from herd.rest.errors import json_response
from herd.rest.ollama import parsing as ollama
from herd.rest.openai import parsing as openai
from herd.rest.openai.responses import RESPONSES_REQUEST
from herd.rest.streaming import NDJSON_CONTENT_TYPE, SSE_CONTENT_TYPE

JSON = "application/json"
_OLLAMA_ERROR = {"$ref": "#/components/schemas/Error"}
_OPENAI_ERROR = {"$ref": "#/components/schemas/OpenAIError"}
_OBJECT = {"type": "object"}
_TEXT = {"type": "string"}


def _content(*media: tuple[str, dict]) -> dict:
    return {media_type: {"schema": schema} for media_type, schema in media}


def _json_reply(description: str) -> dict:
    return {"description": description, "content": _content((JSON, _OBJECT))}


def _ndjson_or_json(description: str) -> dict:
    return {
        "description": f"{description}: one JSON object a line (application/x-ndjson) while streaming, the default; "
        "one object for \"stream\": false. An error after the first line is one {\"error\": ...} line.",
        "content": _content((NDJSON_CONTENT_TYPE, _TEXT), (JSON, _OBJECT)),
    }


def _sse_or_json(description: str) -> dict:
    return {
        "description": f"{description}: server-sent events ending with data: [DONE] for \"stream\": true; "
        "one object otherwise.",
        "content": _content((SSE_CONTENT_TYPE, _TEXT), (JSON, _OBJECT)),
    }


_EMPTY = {"description": "Done; no body."}


@dataclass(frozen=True)
class Operation:
    path: str  # OpenAPI's form: /api/blobs/{digest}
    method: str
    summary: str
    responses: dict[str, dict]
    body: ollama.GoType | dict | None = None  # a dict: a schema of its own
    body_media: str = JSON
    tag: str = "ollama"
    fails: bool = True  # whether it may answer an error body
    open: bool = False  # answered without the API key

_RUNNING = {"200": {"description": "Running"}}

OPERATIONS = (
    Operation("/", "get", "Health check: \"Ollama is running\"",
              {"200": {"description": "Running", "content": _content(("text/plain", _TEXT))}},
              tag="server", fails=False, open=True),
    Operation("/", "head", "Health check", _RUNNING, tag="server", fails=False, open=True),
    Operation("/api/version", "get", "The server's version", {"200": _json_reply("{\"version\": ...}")},
              tag="server", open=True),
    Operation("/api/version", "head", "The server's version", _RUNNING, tag="server", open=True),
    Operation("/api/generate", "post", "Generate a completion", {"200": _ndjson_or_json("Completion chunks")},
              ollama.GENERATE_REQUEST),
    Operation("/api/chat", "post", "Continue a conversation", {"200": _ndjson_or_json("Reply chunks")},
              ollama.CHAT_REQUEST),
    Operation("/api/embed", "post", "Embed one or more inputs", {"200": _json_reply("Embeddings")},
              ollama.EMBED_REQUEST),
    Operation("/api/embeddings", "post", "Embed one prompt (legacy)", {"200": _json_reply("An embedding")},
              ollama.EMBEDDING_REQUEST),
    Operation("/api/tags", "get", "List local models", {"200": _json_reply("Models")}),
    Operation("/api/tags", "head", "List local models", {"200": {"description": "Models"}}),
    Operation("/api/show", "post", "Show a model", {"200": _json_reply("Template, parameters, metadata")},
              ollama.SHOW_REQUEST),
    Operation("/api/ps", "get", "List loaded models", {"200": _json_reply("Loaded models")}),
    Operation("/api/copy", "post", "Copy a model", {"200": _EMPTY}, ollama.COPY_REQUEST),
    Operation("/api/delete", "delete", "Delete a model", {"200": _EMPTY}, ollama.DELETE_REQUEST),
    Operation("/api/create", "post", "Create a model", {"200": _ndjson_or_json("Progress")}, ollama.CREATE_REQUEST),
    Operation("/api/pull", "post", "Pull a model from a registry", {"200": _ndjson_or_json("Progress")},
              ollama.PULL_REQUEST),
    Operation("/api/push", "post", "Push a model to a registry", {"200": _ndjson_or_json("Progress")},
              ollama.PULL_REQUEST),
    Operation("/api/blobs/{digest}", "head", "Whether the server has a blob",
              {"200": {"description": "Present"}, "404": {"description": "Absent"}}),
    Operation("/api/blobs/{digest}", "post", "Upload a blob; kept only if its bytes hash to the digest",
              {"201": {"description": "Stored"}, "200": {"description": "Already present"}},
              {"type": "string", "contentMediaType": "application/octet-stream"}, "application/octet-stream"),
    Operation("/v1/chat/completions", "post", "Chat completion", {"200": _sse_or_json("A chat completion")},
              openai.CHAT_COMPLETION_REQUEST, tag="openai"),
    Operation("/v1/completions", "post", "Text completion", {"200": _sse_or_json("A completion")},
              openai.COMPLETION_REQUEST, tag="openai"),
    Operation("/v1/responses", "post", "Responses API", {"200": _sse_or_json("A response")},
              RESPONSES_REQUEST, tag="openai"),
    Operation("/v1/embeddings", "post", "Embeddings", {"200": _json_reply("An embedding list")},
              openai.EMBED_REQUEST, tag="openai"),
    Operation("/v1/models", "get", "List models", {"200": _json_reply("A model list")}, tag="openai"),
    Operation("/v1/models/{model}", "get", "Retrieve a model", {"200": _json_reply("A model object")},
              tag="openai"),
    Operation("/v1/messages", "post", "Anthropic's Messages API, passed to the cloud for cloud model names only",
              {"200": _sse_or_json("A message")}, _OBJECT, tag="cloud"),
    Operation("/api/status", "get", "Whether cloud models are enabled, and where they go",
              {"200": _json_reply("{\"cloud\": {\"disabled\": ..., \"source\": ...}}")}, tag="cloud"),
    Operation("/api/me", "post", "The cloud account the server's key belongs to, asked of the upstream",
              {"200": _json_reply("The account")}, tag="cloud"),
    Operation("/api/signout", "post", "Unlink the server's key from its cloud account",
              {"200": _json_reply("null")}, tag="cloud"),
    Operation("/api/user/keys/{encoded_key}", "delete", "Unlink the server's key (Ollama's older route)",
              {"200": _json_reply("null")}, tag="cloud"),
    Operation("/api/experimental/web_search", "post", "Web search, passed to the cloud's /api/web_search",
              {"200": _json_reply("Results")}, _OBJECT, tag="cloud"),
    Operation("/api/experimental/web_fetch", "post", "Web fetch, passed to the cloud's /api/web_fetch",
              {"200": _json_reply("The page")}, _OBJECT, tag="cloud"),
    Operation("/metrics", "get", "Prometheus metrics of the gateway and core",
              {"200": {"description": "Prometheus text format 0.0.4", "content": _content(("text/plain", _TEXT))}},
              tag="server"),
    Operation("/openapi.json", "get", "This document", {"200": _json_reply("OpenAPI 3.1")}, tag="server"),
)

_PATH_PARAMETERS = {
    "digest": "sha256-<64 hex digits> (or sha256:<hex>)",
    "model": "a model name; percent-encoded \":\" is accepted",
    "encoded_key": "ignored: the server's own key is the one unlinked",
}


def _operation(op: Operation, components: dict[str, dict]) -> dict:
    responses = dict(op.responses)
    if op.fails:
        # As the API key check answers: OpenAI's error object on /v1, Ollama's everywhere else.
        error = {"content": _content((JSON, _OPENAI_ERROR if op.path.startswith("/v1/") else _OLLAMA_ERROR))}
        responses["4XX"] = {"description": "A bad request, an unknown model, or a missing API key (401)", **error}
        responses["5XX"] = {"description": "A failure in the server, or core unavailable (503)", **error}
    spec: dict = {"summary": op.summary, "tags": [op.tag], "responses": responses}
    parameters = [name for name in _PATH_PARAMETERS if "{" + name + "}" in op.path]
    if parameters:
        spec["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": _TEXT, "description": _PATH_PARAMETERS[name]}
            for name in parameters
        ]
    if op.body is not None:
        schema = op.body if isinstance(op.body, dict) else op.body.schema(components)
        spec["requestBody"] = {"required": True, "content": _content((op.body_media, schema))}
    if op.open:
        spec["security"] = [{}]
    return spec


def openapi_document(version: str) -> dict:
    """The OpenAPI 3.1 document of the gateway."""
    components: dict[str, dict] = {
        "Error": {"type": "object", "properties": {"error": _TEXT}, "required": ["error"]},
        "OpenAIError": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "message": _TEXT,
                        "type": _TEXT,
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
    }
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "herd",
            "version": version,
            "description": "Ollama's REST API (/api, NDJSON streams) and its OpenAI-compatible /v1 (SSE streams).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required when the server has HERD_API_KEY set; any or none is accepted otherwise.",
                }
            },
        },
        "security": [{"apiKey": []}, {}],
    }


def create_blueprint(version: str) -> Blueprint:
    blueprint = Blueprint("openapi")
    document = openapi_document(version)

    async def openapi_json(request: Request) -> HTTPResponse:
        return json_response(document)

    blueprint.add_route(openapi_json, "/openapi.json", methods=["GET"])
    return blueprint
