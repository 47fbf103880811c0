"""Reading /v1 request bodies as Ollama's OpenAI middleware reads them.

Ollama binds a /v1 body with gin's ``ShouldBindJSON`` into the structs of ``openai/openai.go``, so
a wrong body is answered with Go's words, as on the native routes (one difference: an empty body is
gin's bare ``EOF``, since the middleware, not the handler, reads it). The structs are described
here with the native dialect's decoder (:mod:`herd.rest.ollama.parsing`).
"""

from __future__ import annotations

import sys
from typing import Any

from herd.rest.errors import ApiError
from herd.rest.ollama.parsing import (
    ANY,
    BOOL,
    INT,
    MISSING_BODY,
    STRING,
    TOOLS,
    GoStruct,
    GoType,
    _NumberLiteral,
    _Slice,
    _TypeMismatch,
    parse_json_body,
)

# What gin answers for a body with no JSON value in it.
EMPTY_BODY = "EOF"

_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT64_MAX = sys.float_info.max


class _Float(GoType):
    """``float64`` or ``float32``: a JSON number that fits; ``true``, ``"1"`` or ``1e400`` is a mismatch."""

    zero = 0.0

    def __init__(self, go_type: str, limit: float):
        self.go_type, self.limit = go_type, limit

    def decode(self, value, state, struct, path):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            state.mismatch(value, self.go_type, struct, path)
            return None
        if abs(value) > self.limit:
            text = value.text if isinstance(value, _NumberLiteral) else repr(value)
            state.save(_TypeMismatch(f"number {text}", self.go_type, struct, ".".join(path)))
            return None
        return float(value)

    def schema(self, components):
        return {"type": "number"}


FLOAT64 = _Float("float64", _FLOAT64_MAX)
FLOAT32 = _Float("float32", _FLOAT32_MAX)

_STREAM_OPTIONS = GoStruct("StreamOptions", "openai.StreamOptions", {"include_usage": BOOL})

# An anonymous struct: Go names no struct type in its errors.
_TOOL_CALL_FUNCTION = GoStruct(
    "",
    r'struct { Name string "json:\"name\""; Arguments string "json:\"arguments\"" }',
    {"name": STRING, "arguments": STRING},
)

_TOOL_CALL = GoStruct(
    "ToolCall",
    "openai.ToolCall",
    {"id": STRING, "index": INT, "type": STRING, "function": _TOOL_CALL_FUNCTION},
)

MESSAGE = GoStruct(
    "Message",
    "openai.Message",
    {
        "role": STRING,
        "content": ANY,
        "reasoning": STRING,
        "tool_calls": _Slice(_TOOL_CALL, "[]openai.ToolCall"),
        "name": STRING,
        "tool_call_id": STRING,
    },
)

CHAT_COMPLETION_REQUEST = GoStruct(
    "ChatCompletionRequest",
    "openai.ChatCompletionRequest",
    {
        "model": STRING,
        "messages": _Slice(MESSAGE, "[]openai.Message"),
        "stream": BOOL,
        "stream_options": _STREAM_OPTIONS,
        "max_tokens": INT,
        # Not in Ollama's struct: herd reads it where max_tokens is absent (README, "differs").
        "max_completion_tokens": INT,
        "seed": INT,
        "stop": ANY,
        "temperature": FLOAT64,
        "frequency_penalty": FLOAT64,
        "presence_penalty": FLOAT64,
        "top_p": FLOAT64,
        "response_format": GoStruct(
            "ResponseFormat",
            "openai.ResponseFormat",
            {"type": STRING, "json_schema": GoStruct("JsonSchema", "openai.JsonSchema", {"schema": ANY})},
        ),
        "tools": _Slice(TOOLS.element, "[]api.Tool"),
        "reasoning": GoStruct("Reasoning", "openai.Reasoning", {"effort": STRING}),
        "reasoning_effort": STRING,
        "logprobs": BOOL,
        "top_logprobs": INT,
    },
)

COMPLETION_REQUEST = GoStruct(
    "CompletionRequest",
    "openai.CompletionRequest",
    {
        "model": STRING,
        "prompt": STRING,
        "frequency_penalty": FLOAT32,
        "max_tokens": INT,
        "presence_penalty": FLOAT32,
        "seed": INT,
        "stop": ANY,
        "stream": BOOL,
        "stream_options": _STREAM_OPTIONS,
        "temperature": FLOAT32,
        "top_p": FLOAT32,
        "suffix": STRING,
        "logprobs": INT,
    },
)

EMBED_REQUEST = GoStruct(
    "EmbedRequest",
    "openai.EmbedRequest",
    {"input": ANY, "model": STRING, "dimensions": INT, "encoding_format": STRING},
)

def parse_body(body: bytes) -> Any:
    """The body's first JSON value; :class:`ApiError` 400 with Go's message (``EOF`` when empty)."""
    try:
        return parse_json_body(body)
    except ApiError as error:
        if error.message == MISSING_BODY:
            raise ApiError(400, EMPTY_BODY) from None
        raise


def go_type_name(value: Any) -> str:
    """``%T`` of a value ``encoding/json`` put into an ``any``."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"
