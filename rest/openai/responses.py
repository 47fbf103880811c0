"""OpenAI's /v1/responses ⇄ herd.v1, the stateless subset Ollama serves, as pure functions.

As Ollama's ``openai/responses.go`` does, a Responses body becomes an /api/chat body (the native
translator then makes it a ChatRequest, with the native checks), and the chat stream from core is
re-encoded: as one ``response`` object for ``stream: false``, or as Responses server-sent events
(``event: <type>`` and ``data: <json>``, each with a ``sequence_number``).

Where Ollama's stream would give two output items the same ``output_index`` (text and then a tool
call, or thinking after text), the open item is closed first and the next one takes the next
index, so the openai SDK's stream accumulator can follow every event.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from herd.gofmt import go_quote
from herd.rest.errors import ApiError, dumps
from herd.rest.ollama import translate as native
from herd.rest.ollama.parsing import (
    ANY,
    BOOL,
    INT,
    STRING,
    GoStruct,
    _Custom,
    _Object,
    _quote_byte,
    _Slice,
    decode_request,
    go_json_syntax_error,
    json_kind,
)
from herd.rest.openai.parsing import FLOAT64
from herd.rest.openai.translate import (
    _arguments_text,
    _base64_text,
    _created,
    _strict_json,
    decode_image_url,
    error_type,
    think_from_reasoning_effort,
    tool_call_id,
)
from herd.v1 import common_pb2, inference_pb2

FILE_INPUTS_UNSUPPORTED = "file inputs are not currently supported"
WEB_SEARCH_UNSUPPORTED = "web_search tools are not supported: herd runs no server-side tools"
ZSTD_UNSUPPORTED = "zstd-compressed request bodies are not supported"
MISSING_ITEM_TYPE = "input item missing required 'type' field"

# ---------------------------------------------------------------------------------------------
# The request body (``openai.ResponsesRequest``)


@dataclass(frozen=True)
class _Input:
    """``input``: a string, or a list of items (dicts with a ``type``), as the Go union holds it."""

    text: str = ""
    items: tuple[dict, ...] = ()


def _unmarshal(value: Any, struct: GoStruct) -> dict:
    """``json.Unmarshal`` of one value into ``struct``; Go's message as a ValueError."""
    try:
        return decode_request(value, struct)
    except ApiError as error:
        raise ValueError(error.message) from None


def _go_struct_type(fields: Sequence[str]) -> str:
    """How Go names an anonymous struct of string fields in an error."""
    return "struct { " + "; ".join(f'{name.capitalize()} string "json:\\"{name}\\""' for name in fields) + " }"


def _anonymous(*names: str) -> GoStruct:
    return GoStruct("", _go_struct_type(names), {name: STRING for name in names})


_TYPE_ONLY = _anonymous("type")
_TYPE_AND_ROLE = _anonymous("type", "role")
_RAW_ITEMS = "[]json.RawMessage"

_CONTENT_STRUCTS = {
    "input_text": GoStruct("ResponsesTextContent", "openai.ResponsesTextContent", {"type": STRING, "text": STRING}),
    "output_text": GoStruct(
        "ResponsesOutputTextContent", "openai.ResponsesOutputTextContent", {"type": STRING, "text": STRING}
    ),
    "input_image": GoStruct(
        "ResponsesImageContent",
        "openai.ResponsesImageContent",
        {"type": STRING, "detail": STRING, "file_id": STRING, "image_url": STRING},
    ),
    "input_file": GoStruct(
        "ResponsesFileContent",
        "openai.ResponsesFileContent",
        {"type": STRING, "file_data": STRING, "file_id": STRING, "file_url": STRING, "filename": STRING},
    ),
}
_MESSAGE = GoStruct("", "struct", {"type": STRING, "role": STRING, "content": ANY})
_FUNCTION_CALL = GoStruct(
    "ResponsesFunctionCall",
    "openai.ResponsesFunctionCall",
    {"id": STRING, "type": STRING, "call_id": STRING, "name": STRING, "arguments": STRING},
)
_FUNCTION_CALL_OUTPUT = GoStruct("", "struct", {"type": STRING, "call_id": STRING, "output": ANY})
_REASONING = GoStruct(
    "ResponsesReasoningInput",
    "openai.ResponsesReasoningInput",
    {
        "id": STRING,
        "type": STRING,
        "summary": _Slice(
            GoStruct("ResponsesReasoningSummary", "openai.ResponsesReasoningSummary", {"type": STRING, "text": STRING}),
            "[]openai.ResponsesReasoningSummary",
        ),
        "encrypted_content": STRING,
    },
)
_WEB_SEARCH_CALL = GoStruct(
    "ResponsesWebSearchCall", "openai.ResponsesWebSearchCall", {"id": STRING, "type": STRING, "status": STRING}
)


def _raw_items(value: Any, what: str) -> list:
    """A JSON array kept as raw items, or Go's ``<what> must be a string or array: ...``."""
    if not isinstance(value, list):
        raise ValueError(
            f"{what} must be a string or array: "
            f"json: cannot unmarshal {json_kind(value)} into Go value of type {_RAW_ITEMS}"
        )
    return value


def _content_part(value: Any) -> dict:
    """One content item (``unmarshalResponsesContent``)."""
    kind = _unmarshal(value, _TYPE_ONLY).get("type", "")
    struct = _CONTENT_STRUCTS.get(kind)
    if struct is None:
        raise ValueError(f"unknown content type: {kind}")
    return {"type": kind, **_unmarshal(value, struct)}


def _content_parts(value: Any, what: str) -> list[dict]:
    parts = []
    for index, raw in enumerate(_raw_items(value, what)):
        try:
            parts.append(_content_part(raw))
        except ValueError as exc:
            raise ValueError(f"{what}[{index}]: {exc}") from None
    return parts


def _input_item(value: Any) -> dict:
    """One input item (``unmarshalResponsesInputItem``): a role without a type is a message."""
    head = _unmarshal(value, _TYPE_AND_ROLE)
    kind = head.get("type", "")
    if not kind and head.get("role"):
        kind = "message"
    if kind == "message":
        fields = _unmarshal(value, _MESSAGE)
        content = fields.get("content", "")
        if isinstance(content, str):
            parts = [{"type": "input_text", "text": content}]
        else:
            parts = _content_parts(content, "content")
        return {"type": "message", "role": fields.get("role", ""), "content": parts}
    if kind == "function_call":
        return {**_unmarshal(value, _FUNCTION_CALL), "type": kind}
    if kind == "function_call_output":
        fields = _unmarshal(value, _FUNCTION_CALL_OUTPUT)
        item = {"type": kind, "call_id": fields.get("call_id", ""), "output": "", "output_items": []}
        output = fields.get("output", "")
        if isinstance(output, str):
            item["output"] = output
        else:
            parts = _content_parts(output, "output")
            item["output_items"] = parts
            item["output"] = "".join(p.get("text", "") for p in parts if p["type"] in ("input_text", "output_text"))
        return item
    if kind == "reasoning":
        return {**_unmarshal(value, _REASONING), "type": kind}
    if kind == "web_search_call":
        return {**_unmarshal(value, _WEB_SEARCH_CALL), "type": kind}
    if not kind:
        raise ValueError(MISSING_ITEM_TYPE)
    raise ValueError(f"unknown input item type: {go_quote(kind)}")


def _input(value: Any) -> _Input:
    """``ResponsesInput.UnmarshalJSON``: a string, or an array of input items."""
    if isinstance(value, str):
        return _Input(text=value)
    items = []
    for index, raw in enumerate(_raw_items(value, "input")):
        try:
            items.append(_input_item(raw))
        except ValueError as exc:
            raise ValueError(f"input[{index}]: {exc}") from None
    return _Input(items=tuple(items))


_TOOL = GoStruct(
    "ResponsesTool",
    "openai.ResponsesTool",
    {
        "type": STRING,
        "name": STRING,
        "description": STRING,
        "strict": BOOL,
        "parameters": _Object("map[string]interface {}"),
        "tools": ANY,  # replaced below: a namespace holds tools
    },
)
_TOOLS = _Slice(_TOOL, "[]openai.ResponsesTool")
_TOOL.fields["tools"] = _TOOLS

RESPONSES_REQUEST = GoStruct(
    "ResponsesRequest",
    "openai.ResponsesRequest",
    {
        "model": STRING,
        "background": BOOL,
        "conversation": ANY,
        "include": _Slice(STRING, "[]string"),
        "input": _Custom(_input, {"type": ["string", "array"], "description": "text, or an array of input items"}),
        "instructions": STRING,
        "max_output_tokens": INT,
        "reasoning": GoStruct(
            "ResponsesReasoning",
            "openai.ResponsesReasoning",
            {"effort": STRING, "generate_summary": STRING, "summary": STRING},
        ),
        "temperature": FLOAT64,
        "text": GoStruct(
            "ResponsesText",
            "openai.ResponsesText",
            {
                "format": GoStruct(
                    "ResponsesTextFormat",
                    "openai.ResponsesTextFormat",
                    {"type": STRING, "name": STRING, "schema": ANY, "strict": BOOL},
                )
            },
        ),
        "top_p": FLOAT64,
        "truncation": STRING,
        "tools": _TOOLS,
        "stream": BOOL,
    },
)


# ---------------------------------------------------------------------------------------------
# Request → native chat body (``FromResponsesRequest``)


@dataclass(frozen=True)
class Echo:
    """What a response repeats of its request (``ToResponse``, ``buildResponseObject``)."""

    model: str
    instructions: str | None
    tools: list
    truncation: str
    text_format: dict
    top_p: float
    temperature: float
    reasoning: dict | None
    max_output_tokens: int | None
    background: bool


@dataclass(frozen=True)
class ResponsesCall:
    """A /v1/responses request for core, how the client wants the answer, and what to echo."""

    request: inference_pb2.ChatRequest
    stream: bool
    echo: Echo


def check_content_encoding(encoding: str | None) -> None:
    """Ollama inflates zstd bodies; herd refuses them in words rather than as broken JSON."""
    if encoding and encoding.strip().lower() == "zstd":
        raise ApiError(400, ZSTD_UNSUPPORTED)


def _parse_arguments(text: str) -> dict:
    """A function_call's ``arguments`` JSON text as an object, with Go's words when it is not one."""
    if not text:
        return {}
    try:
        value = _strict_json(text)
    except (ValueError, RecursionError):
        data = text.encode("utf-8")
        message = go_json_syntax_error(data)
        if message is None:  # one good value, then more: json.Unmarshal refuses what follows
            end = json.JSONDecoder().raw_decode(text)[1]
            rest = text[end:].lstrip(" \t\r\n").encode("utf-8")
            message = f"invalid character {_quote_byte(rest[0])} after top-level value"
        elif message == "unexpected EOF":
            message = "unexpected end of JSON input"
        raise ApiError(400, f"failed to parse function call arguments: {message}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(
            400,
            "failed to parse function call arguments: "
            f"json: cannot unmarshal {json_kind(value)} into Go value of type map[string]interface {{}}",
        )
    return value


def _content(parts: Sequence[dict]) -> tuple[str, list[str]]:
    """Text and base64 images of content parts (``convertResponsesContent``)."""
    text = ""
    images = []
    for part in parts:
        kind = part["type"]
        if kind in ("input_text", "output_text"):
            text += part.get("text", "")
        elif kind == "input_image":
            url = part.get("image_url", "")
            if url:  # a file_id alone is not supported, and skipped
                images.append(_base64_text(decode_image_url(url)))
        elif kind == "input_file":
            raise ApiError(400, FILE_INPUTS_UNSUPPORTED)
    return text, images


def _native_messages(instructions: str, given: _Input) -> list[dict]:
    """The chat messages of a Responses request, in Ollama's order and with its merges."""
    messages: list[dict] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    if given.text:
        messages.append({"role": "user", "content": given.text})
    pending_thinking = ""
    call_names: dict[str, str] = {}
    items = given.items
    for index, item in enumerate(items):
        kind = item["type"]
        if kind == "reasoning":
            # Merged into the next assistant message; Ollama carries thinking in encrypted_content.
            pending_thinking = item.get("encrypted_content", "")
        elif kind == "message":
            content, images = _content(item["content"])
            message: dict[str, Any] = {"role": item.get("role", ""), "content": content, "images": images}
            if message["role"] == "assistant" and pending_thinking:
                message["thinking"], pending_thinking = pending_thinking, ""
            # A replayed assistant message between a function_call and its output stays in the
            # assistant message that made the call, so the tool result follows the call it answers.
            following = items[index + 1] if index + 1 < len(items) else None
            answered = following["call_id"] if following and following["type"] == "function_call_output" else ""
            last = messages[-1] if messages else None
            if (
                message["role"] == "assistant"
                and answered
                and last is not None
                and last["role"] == "assistant"
                and any(call["id"] == answered for call in last.get("tool_calls", []))
            ):
                if last.get("content") and content:
                    last["content"] += "\n"
                last["content"] = last.get("content", "") + content
                last.setdefault("images", []).extend(images)
                if message.get("thinking"):
                    last["thinking"] = message["thinking"]
                continue
            messages.append(message)
        elif kind == "function_call":
            call = {
                "id": item.get("call_id", ""),
                "function": {"name": item.get("name", ""), "arguments": _parse_arguments(item.get("arguments", ""))},
            }
            call_names[call["id"]] = call["function"]["name"]
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if pending_thinking:
                    last["thinking"], pending_thinking = pending_thinking, ""
            else:
                message = {"role": "assistant", "tool_calls": [call]}
                if pending_thinking:
                    message["thinking"], pending_thinking = pending_thinking, ""
                messages.append(message)
        elif kind == "function_call_output":
            content, images = item["output"], []
            if item["output_items"]:
                content, images = _content(item["output_items"])
            call_id = item.get("call_id", "")
            messages.append(
                {
                    "role": "tool",
                    "content": content,
                    "images": images,
                    "tool_call_id": call_id,
                    # Not in Ollama's mapping: the name, as /v1/chat/completions finds it, for templates.
                    "tool_name": call_names.get(call_id, ""),
                }
            )
        # web_search_call items are history metadata: the assistant message after one carries its result.
    if pending_thinking:
        messages.append({"role": "assistant", "thinking": pending_thinking})
    return messages


def _present(fields: dict | None) -> dict:
    """A decoded struct without its null fields (Go leaves those at their zero value)."""
    return {key: value for key, value in (fields or {}).items() if value is not None}


def _native_tools(tools: Sequence[dict]) -> list[dict]:
    """Responses tools (name and schema at the top level) as native tools; namespaces flattened."""
    native_tools = []
    for tool in tools:
        tool = _present(tool)
        kind = tool.get("type", "")
        if kind == "web_search":
            raise ApiError(400, WEB_SEARCH_UNSUPPORTED)
        if kind == "namespace":
            name = tool.get("name", "")
            for member in _native_tools(tool.get("tools") or []):
                function = member["function"]
                if name and not function["name"].startswith(name + "."):
                    function["name"] = f"{name}.{function['name']}"
                native_tools.append(member)
            continue
        function: dict[str, Any] = {"name": tool.get("name", ""), "description": tool.get("description", "")}
        if tool.get("parameters") is not None:
            function["parameters"] = tool["parameters"]
        native_tools.append({"type": kind, "function": function})
    return native_tools


def _native_format(text: dict | None) -> Any:
    """``text.format``: a schema, ``"json"`` for ``json_object`` (beyond Ollama), or none."""
    text_format = _present((text or {}).get("format"))
    kind = text_format.get("type", "")
    if kind == "json_schema":
        return text_format.get("schema")
    if kind == "json_object":
        return "json"
    return None


def _echo_tool(tool: dict) -> dict:
    tool = _present(tool)
    echoed = {
        "type": tool.get("type", ""),
        "name": tool.get("name", ""),
        "description": tool.get("description"),
        "strict": tool.get("strict"),
        "parameters": tool.get("parameters"),
    }
    if tool.get("tools"):
        echoed["tools"] = [_echo_tool(member) for member in tool["tools"]]
    return echoed


def _echo(fields: dict) -> Echo:
    text_format: dict[str, Any] = {"type": "text"}
    given_format = (fields.get("text") or {}).get("format")
    if given_format is not None:
        given_format = _present(given_format)
        text_format = {"type": given_format.get("type", "")}
        for key in ("name", "schema", "strict"):
            if given_format.get(key) not in (None, ""):
                text_format[key] = given_format[key]
    reasoning_fields = _present(fields.get("reasoning"))
    reasoning = None
    if reasoning_fields.get("effort") or reasoning_fields.get("summary"):
        reasoning = {"effort": reasoning_fields.get("effort") or None, "summary": reasoning_fields.get("summary") or None}
    return Echo(
        model=fields.get("model", ""),
        instructions=fields.get("instructions") or None,
        tools=[_echo_tool(tool) for tool in fields.get("tools") or []],
        truncation=fields.get("truncation", "disabled"),
        text_format=text_format,
        top_p=fields.get("top_p", 1.0),
        temperature=fields.get("temperature", 1.0),
        reasoning=reasoning,
        max_output_tokens=fields.get("max_output_tokens"),
        background=fields.get("background", False),
    )


def responses_request(document: Any) -> ResponsesCall:
    """A /v1/responses body as a ChatRequest (``FromResponsesRequest``), checks in Ollama's order.

    ``previous_response_id``, ``conversation``, ``include``, ``store``, ``tool_choice`` and the like
    are ignored, as Ollama ignores them: nothing is stored, every request stands alone.
    """
    fields = decode_request(document, RESPONSES_REQUEST)
    messages = _native_messages(fields.get("instructions", ""), fields.get("input") or _Input())

    options: dict[str, Any] = {"temperature": fields.get("temperature", 1.0)}
    if "top_p" in fields:  # absent: the model's own default, as in Ollama
        options["top_p"] = fields["top_p"]
    if "max_output_tokens" in fields:
        options["num_predict"] = fields["max_output_tokens"]
    think = think_from_reasoning_effort(_present(fields.get("reasoning")).get("effort", ""))
    tools = _native_tools(fields.get("tools") or [])

    stream = fields.get("stream", False)
    body: dict[str, Any] = {
        "model": fields.get("model", ""),
        "messages": messages,
        "stream": stream,
        "format": _native_format(fields.get("text")),
        "options": options,
        "tools": tools,
    }
    if think is not None:
        body["think"] = think
    return ResponsesCall(native.chat_request(body).request, stream, _echo(fields))


# ---------------------------------------------------------------------------------------------
# Ids


def response_id(randbelow: Callable[[int], int] = random.randrange) -> str:
    """``resp_<0..999998>``, as Ollama numbers responses."""
    return f"resp_{randbelow(999999)}"


def message_id(randbelow: Callable[[int], int] = random.randrange) -> str:
    return f"msg_{randbelow(999999)}"


# ---------------------------------------------------------------------------------------------
# Core's answer → a response object (``ToResponse``)


def _usage(metrics: common_pb2.Metrics) -> dict:
    return {
        "input_tokens": metrics.prompt_eval_count,
        "output_tokens": metrics.eval_count,
        "total_tokens": metrics.prompt_eval_count + metrics.eval_count,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _response_object(
    echo: Echo,
    response_id: str,
    created_at: int,
    status: str,
    output: list,
    usage: dict | None,
    completed_at: int | None = None,
    error: dict | None = None,
) -> dict:
    """The ``response`` object in the field order of Ollama's ``ResponsesResponse``."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": completed_at,
        "status": status,
        # Ollama reports a reply cut by max_output_tokens as completed, and so does herd.
        "incomplete_details": None,
        "model": echo.model,
        "previous_response_id": None,
        "instructions": echo.instructions,
        "output": output,
        "error": error,
        "tools": echo.tools,
        "tool_choice": "auto",
        "truncation": echo.truncation,
        "parallel_tool_calls": True,
        "text": {"format": echo.text_format},
        "top_p": echo.top_p,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "top_logprobs": 0,
        "temperature": echo.temperature,
        "reasoning": echo.reasoning,
        "usage": usage,
        "max_output_tokens": echo.max_output_tokens,
        "max_tool_calls": None,
        "store": False,
        "background": echo.background,
        "service_tier": "default",
        "metadata": {},
        "safety_identifier": None,
        "prompt_cache_key": None,
    }


def _output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": [_output_text(text)]}


def _reasoning_item(item_id: str, thinking: str) -> dict:
    # Ollama hands the thinking back as encrypted_content too, so a client replaying it restores it.
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": thinking}],
        "encrypted_content": thinking,
    }


def _function_call_item(item_id: str, call: common_pb2.ToolCall, new_call_id: Callable[[], str], status: str) -> dict:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call.id or new_call_id(),
        "name": call.name,
        "arguments": _arguments_text(call.arguments_json),
    }


def response(
    messages: Sequence[inference_pb2.ChatResponse],
    echo: Echo,
    response_id: str,
    item_id: str,
    new_call_id: Callable[[], str] = tool_call_id,
    now: Callable[[], float] = time.time,
) -> dict:
    """``stream: false``: the whole reply as one ``response``.

    As in Ollama: a ``reasoning`` item when the model thought, then the ``function_call`` items
    when it called tools, else one ``message`` item (text that came with calls is dropped).
    """
    last = messages[-1]
    thinking = "".join(message.message.thinking for message in messages)
    calls = [call for message in messages for call in message.message.tool_calls]
    output = []
    if thinking:
        output.append(_reasoning_item(f"rs_{response_id}", thinking))
    if calls:
        for index, call in enumerate(calls):
            output.append(_function_call_item(f"fc_{response_id}_{index}", call, new_call_id, "completed"))
    else:
        output.append(_message_item(item_id, "".join(message.message.content for message in messages)))
    return _response_object(
        echo,
        response_id,
        _created(last, now),
        "completed",
        output,
        _usage(last.metrics),
        completed_at=int(now()),
    )


class ResponseStream:
    """The Responses events of a streamed chat, one call of :meth:`events` per message from core.

    As Ollama's ``ResponsesStreamConverter``: ``response.created`` and ``response.in_progress``
    first; thinking as a ``reasoning`` item (``reasoning_summary_text`` deltas); text as a
    ``message`` item with one ``output_text`` part; each tool call whole, as a ``function_call``
    item with one arguments delta; text after a tool call is dropped; ``response.completed`` with
    the whole output and usage last. A failure after the first event is ``response.failed``.
    """

    def __init__(
        self,
        echo: Echo,
        response_id: str,
        item_id: str,
        randbelow: Callable[[int], int] = random.randrange,
        new_call_id: Callable[[], str] = tool_call_id,
        now: Callable[[], float] = time.time,
    ):
        self.echo = echo
        self.response_id = response_id
        self.item_id = item_id
        self.randbelow = randbelow
        self.new_call_id = new_call_id
        self.now = now
        self.sequence = 0
        self.created_at: int | None = None
        self.output: list[dict] = []  # the finished items, in output-index order
        self.open_kind = ""  # "reasoning" or "message" while one is being streamed
        self.open_id = ""
        self.open_text = ""
        self.tool_calls_sent = False

    # -- events ---------------------------------------------------------------------------------

    def _event(self, kind: str, data: dict) -> str:
        data = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return f"event: {kind}\ndata: {dumps(data)}\n\n"

    def _lifecycle(self, kind: str, status: str, output: list, usage: dict | None, **extra: Any) -> str:
        response = _response_object(self.echo, self.response_id, self.created_at or 0, status, output, usage, **extra)
        return self._event(kind, {"response": response})

    @property
    def _index(self) -> int:
        """The output index of the open item, or of the next one."""
        return len(self.output)

    def _open_reasoning(self) -> list[str]:
        self.open_kind, self.open_id, self.open_text = "reasoning", f"rs_{self.randbelow(999999)}", ""
        item = {"id": self.open_id, "type": "reasoning", "summary": []}
        return [self._event("response.output_item.added", {"output_index": self._index, "item": item})]

    def _open_message(self) -> list[str]:
        if any(item["type"] == "message" for item in self.output):
            # A second message (text, thinking, text again) gets Ollama's id for a later message.
            self.item_id = f"msg_{self.response_id.removeprefix('resp_')}_{self._index}"
        self.open_kind, self.open_id, self.open_text = "message", self.item_id, ""
        item = {"id": self.open_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        location = {"item_id": self.open_id, "output_index": self._index, "content_index": 0}
        return [
            self._event("response.output_item.added", {"output_index": self._index, "item": item}),
            self._event("response.content_part.added", {**location, "part": _output_text("")}),
        ]

    def _close(self) -> list[str]:
        """The done events of the open item, which joins the output."""
        kind, item_id, text, index = self.open_kind, self.open_id, self.open_text, self._index
        self.open_kind = ""
        if kind == "reasoning":
            item = _reasoning_item(item_id, text)
            self.output.append(item)
            return [
                self._event(
                    "response.reasoning_summary_text.done",
                    {"item_id": item_id, "output_index": index, "summary_index": 0, "text": text},
                ),
                self._event("response.output_item.done", {"output_index": index, "item": item}),
            ]
        if kind == "message":
            item = _message_item(item_id, text)
            self.output.append(item)
            location = {"item_id": item_id, "output_index": index, "content_index": 0}
            return [
                self._event("response.output_text.done", {**location, "text": text, "logprobs": []}),
                self._event("response.content_part.done", {**location, "part": _output_text(text)}),
                self._event("response.output_item.done", {"output_index": index, "item": item}),
            ]
        return []

    def _thinking(self, thinking: str) -> list[str]:
        out = []
        if self.open_kind != "reasoning":
            out += self._close() + self._open_reasoning()
        self.open_text += thinking
        out.append(
            self._event(
                "response.reasoning_summary_text.delta",
                {"item_id": self.open_id, "output_index": self._index, "summary_index": 0, "delta": thinking},
            )
        )
        return out

    def _text(self, text: str) -> list[str]:
        out = []
        if self.open_kind != "message":
            out += self._close() + self._open_message()
        self.open_text += text
        location = {"item_id": self.open_id, "output_index": self._index, "content_index": 0}
        out.append(self._event("response.output_text.delta", {**location, "delta": text, "logprobs": []}))
        return out

    def _tool_calls(self, calls: Sequence[common_pb2.ToolCall]) -> list[str]:
        out = self._close()
        for number, call in enumerate(calls):
            index = self._index
            item = _function_call_item(f"fc_{self.randbelow(999999)}_{number}", call, self.new_call_id, "completed")
            added = {**item, "status": "in_progress", "arguments": ""}
            location = {"item_id": item["id"], "output_index": index}
            out += [
                self._event("response.output_item.added", {"output_index": index, "item": added}),
                self._event("response.function_call_arguments.delta", {**location, "delta": item["arguments"]}),
                self._event("response.function_call_arguments.done", {**location, "arguments": item["arguments"]}),
                self._event("response.output_item.done", {"output_index": index, "item": item}),
            ]
            self.output.append(item)
        return out

    def events(self, message: inference_pb2.ChatResponse) -> str:
        out = []
        if self.created_at is None:
            self.created_at = _created(message, self.now)
            out.append(self._lifecycle("response.created", "in_progress", [], None))
            out.append(self._lifecycle("response.in_progress", "in_progress", [], None))
        piece = message.message
        if piece.thinking:
            out += self._thinking(piece.thinking)
        if piece.tool_calls:
            out += self._tool_calls(piece.tool_calls)
            self.tool_calls_sent = True
        elif piece.content and not self.tool_calls_sent:
            out += self._text(piece.content)
        if message.done:
            out += self._close()
            out.append(
                self._lifecycle(
                    "response.completed",
                    "completed",
                    list(self.output),
                    _usage(message.metrics),
                    completed_at=int(self.now()),
                )
            )
        return "".join(out)

    def error_event(self, error: ApiError) -> str:
        """``response.failed``, with what was finished so far (and an open item as incomplete)."""
        output = list(self.output)
        if self.open_kind == "message":
            output.append(_message_item(self.open_id, self.open_text, status="incomplete"))
        elif self.open_kind == "reasoning":
            output.append(_reasoning_item(self.open_id, self.open_text))
        failure = {"code": error_type(error.status), "message": error.message}
        return self._lifecycle("response.failed", "failed", output, None, error=failure)
