"""OpenAI's /v1 JSON ⇄ herd.v1 messages, as pure functions.

Ollama serves /v1 by rewriting each request into a native one and re-encoding the native answer
(``middleware/openai.go``, ``openai/openai.go``). herd does the same: a /v1 body becomes the body
of /api/chat, /api/generate or /api/embed, which the native translator turns into a proto, so both
dialects share one set of checks. Responses are built from the protos in the field order of
Ollama's Go structs.
"""

from __future__ import annotations

import array
import base64
import json
import random
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from herd.gofmt import go_quote
from herd.rest.errors import ApiError, dumps
from herd.rest.ollama import translate as native
from herd.rest.ollama.parsing import decode_base64, decode_request
from herd.rest.openai.parsing import CHAT_COMPLETION_REQUEST, COMPLETION_REQUEST, EMBED_REQUEST, go_type_name
from herd.v1 import common_pb2, inference_pb2, models_pb2

SYSTEM_FINGERPRINT = "fp_ollama"
SSE_CONTENT_TYPE = "text/event-stream"
DONE_EVENT = "data: [DONE]\n\n"

EMPTY_MESSAGES = "[] is too short - 'messages'"
INVALID_MESSAGE_FORMAT = "invalid message format"
INVALID_TOOL_CALL_ARGUMENTS = "invalid tool call arguments"
IMAGE_URLS_UNSUPPORTED = "image URLs are not currently supported, please use base64 encoded data instead"
INVALID_IMAGE = "invalid image input"
INVALID_EMBED_INPUT = "invalid input"

_DONE_REASONS = {
    common_pb2.DONE_REASON_STOP: "stop",
    common_pb2.DONE_REASON_LENGTH: "length",
    common_pb2.DONE_REASON_LOAD: "load",
    common_pb2.DONE_REASON_UNLOAD: "unload",
}
_IMAGE_PREFIXES = tuple(f"data:image/{kind};base64," for kind in ("jpeg", "jpg", "png", "webp"))
_BARE_BASE64_PREFIX = "data:;base64,"
# time.Time{}.Unix(): what Go reports for a model with no modification time.
_GO_ZERO_TIME_UNIX = -62135596800
_DEFAULT_NAMESPACE = "library"
_CALL_ID_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class OpenAICall:
    """A chat or completion request for core, and how the client wants the answer."""

    request: inference_pb2.ChatRequest | inference_pb2.GenerateRequest
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class EmbeddingsCall:
    request: inference_pb2.EmbedRequest
    # The model as the client named it, echoed in the answer.
    model: str
    base64: bool


# ---------------------------------------------------------------------------------------------
# Errors and ids


def error_type(status: int) -> str:
    """``openai.NewError``'s type for an HTTP status."""
    if status == 400:
        return "invalid_request_error"
    if status == 404:
        return "not_found_error"
    return "api_error"


def error_body(status: int, message: str) -> dict:
    """OpenAI's error object: ``{"error": {"message", "type", "param": null, "code": null}}``."""
    return {"error": {"message": message, "type": error_type(status), "param": None, "code": None}}


def chat_completion_id(randbelow: Callable[[int], int] = random.randrange) -> str:
    """``chatcmpl-<0..998>``, as Ollama numbers them."""
    return f"chatcmpl-{randbelow(999)}"


def completion_id(randbelow: Callable[[int], int] = random.randrange) -> str:
    return f"cmpl-{randbelow(999)}"


def tool_call_id(choice: Callable[[str], str] = random.choice) -> str:
    """``call_`` and eight of ``[a-z0-9]``, Ollama's id for a tool call that has none."""
    return "call_" + "".join(choice(_CALL_ID_LETTERS) for _ in range(8))


# ---------------------------------------------------------------------------------------------
# Requests


def _stop(value: Any, strict: bool) -> list[str] | None:
    """``stop`` as a string or a list of strings; None (no stop override) for anything else.

    Chat drops entries that are not strings; completions refuse them (``strict``).
    """
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        return None
    stops = []
    for item in value:
        if isinstance(item, str):
            stops.append(item)
        elif strict:
            raise ApiError(400, f"invalid type for 'stop' field: {go_type_name(item)}")
    # An empty list is Go's nil slice, sent on as null: the model's own stops stay.
    return stops or None


def _strict_json(text: str) -> Any:
    """``json.Unmarshal``: one JSON value; NaN and Infinity are not JSON."""

    def reject(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_constant=reject)


def _native_tool_calls(calls: list | None) -> list[dict]:
    """Assistant tool calls with ``arguments`` as JSON text, as native calls with an object."""
    native_calls = []
    for call in calls or []:
        call = call or {}
        function = call.get("function") or {}
        try:
            arguments = _strict_json(function.get("arguments") or "")
        except (ValueError, RecursionError):
            raise ApiError(400, INVALID_TOOL_CALL_ARGUMENTS) from None
        if arguments is not None and not isinstance(arguments, dict):
            raise ApiError(400, INVALID_TOOL_CALL_ARGUMENTS)
        native_calls.append(
            {"id": call.get("id") or "", "function": {"name": function.get("name") or "", "arguments": arguments or {}}}
        )
    return native_calls


def _tool_name(messages: list[dict], tool_call_id: str) -> str:
    """The function of the assistant call ``tool_call_id`` answers; the last such call wins."""
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if (call or {}).get("id") == tool_call_id:
                return ((call or {}).get("function") or {}).get("name") or ""
    return ""


def _base64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_image_url(url: str) -> bytes:
    """An ``image_url``: a base64 data URI (jpeg, jpg, png, webp, or no media type) as bytes."""
    if url.startswith(("http://", "https://")):
        raise ApiError(400, IMAGE_URLS_UNSUPPORTED)
    if url.startswith(_BARE_BASE64_PREFIX):
        data = url[len(_BARE_BASE64_PREFIX) :]
    else:
        prefix = next((p for p in _IMAGE_PREFIXES if url.startswith(p)), None)
        if prefix is None:
            raise ApiError(400, INVALID_IMAGE)
        data = url[len(prefix) :]
    try:
        return decode_base64(data)
    except ValueError:
        raise ApiError(400, INVALID_IMAGE) from None


def _part_message(role: str, part: Any) -> dict:
    """One content part as its own native message."""
    if not isinstance(part, dict):
        raise ApiError(400, INVALID_MESSAGE_FORMAT)
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise ApiError(400, INVALID_MESSAGE_FORMAT)
        return {"role": role, "content": text}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise ApiError(400, INVALID_MESSAGE_FORMAT)
        return {"role": role, "images": [_base64_text(decode_image_url(url))]}
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict):
            raise ApiError(400, "invalid input_audio format")
        data = audio.get("data")
        if not isinstance(data, str):
            raise ApiError(400, "invalid input_audio format: missing data")
        try:
            audio_bytes = decode_base64(data)
        except ValueError as exc:
            raise ApiError(400, f"invalid input_audio base64 data: {exc}") from None
        # Audio rides in images, as in Ollama: the model's projector tells the two apart.
        return {"role": role, "images": [_base64_text(audio_bytes)]}
    raise ApiError(400, INVALID_MESSAGE_FORMAT)


def _native_messages(messages: list[dict]) -> list[dict]:
    """OpenAI messages as native ones (``FromChatRequest``): each content part its own message."""
    native_messages: list[dict] = []
    for message in messages:
        message = message or {}
        role = message.get("role") or ""
        tool_calls = message.get("tool_calls")
        tool_call_id = message.get("tool_call_id") or ""
        reasoning = message.get("reasoning") or ""
        tool_name = ""
        if role.lower() == "tool":
            tool_name = message.get("name") or ""
            if not tool_name and tool_call_id:
                tool_name = _tool_name(messages, tool_call_id)
        content = message.get("content")
        if isinstance(content, str):
            native_messages.append(
                {
                    "role": role,
                    "content": content,
                    "thinking": reasoning,
                    "tool_calls": _native_tool_calls(tool_calls),
                    "tool_name": tool_name,
                    "tool_call_id": tool_call_id,
                }
            )
        elif isinstance(content, list):
            native_messages.extend(_part_message(role, part) for part in content)
            # The calls go on the last message made so far, as Ollama puts them.
            if native_messages and tool_calls:
                native_messages[-1].update(
                    tool_calls=_native_tool_calls(tool_calls),
                    tool_name=tool_name,
                    tool_call_id=tool_call_id,
                    thinking=reasoning,
                )
        else:
            # Content may be left out (or null) only by a message that makes tool calls.
            if tool_calls is None:
                raise ApiError(400, f"invalid message content type: {go_type_name(content)}")
            native_messages.append(
                {
                    "role": role,
                    "thinking": reasoning,
                    "tool_calls": _native_tool_calls(tool_calls),
                    "tool_call_id": tool_call_id,
                }
            )
    return native_messages


def think_from_reasoning_effort(effort: str) -> bool | str | None:
    """A reasoning effort as a native ``think``: None leaves thinking to the model.

    OpenAI's scale reaches past Ollama's at both ends; those efforts go to the nearest level.
    """
    if effort == "":
        return None
    if effort == "none":
        return False
    if effort == "minimal":
        return "low"
    if effort in ("low", "medium", "high", "max"):
        return effort
    if effort in ("xhigh", "ultra"):
        return "max"
    raise ApiError(
        400,
        f"invalid reasoning value: {go_quote(effort)}"
        ' (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")',
    )


def _format(response_format: dict | None) -> Any:
    """``response_format`` as a native ``format``: "json", a schema, or None."""
    if response_format is None:
        return None
    kind = (response_format.get("type") or "").strip().lower()
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema")
    return None


def _include_usage(fields: dict) -> bool:
    return bool((fields.get("stream_options") or {}).get("include_usage"))


def chat_request(document: Any) -> OpenAICall:
    """A /v1/chat/completions body as a ChatRequest, with Ollama's checks in Ollama's order."""
    fields = decode_request(document, CHAT_COMPLETION_REQUEST)
    messages = fields.get("messages") or []
    if not messages:
        raise ApiError(400, EMPTY_MESSAGES)
    native_messages = _native_messages(messages)

    options: dict[str, Any] = {"stop": _stop(fields.get("stop"), strict=False)}
    # max_completion_tokens is OpenAI's newer name (LangChain sends only it); Ollama ignores it.
    max_tokens = fields.get("max_tokens", fields.get("max_completion_tokens"))
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    options["temperature"] = fields.get("temperature", 1.0)
    for key in ("seed", "frequency_penalty", "presence_penalty"):
        if key in fields:
            options[key] = fields[key]
    options["top_p"] = fields.get("top_p", 1.0)

    # A reasoning object wins over reasoning_effort, even one without an effort.
    if "reasoning" in fields:
        effort = fields["reasoning"].get("effort") or ""
    else:
        effort = fields.get("reasoning_effort", "")
    think = think_from_reasoning_effort(effort)

    body: dict[str, Any] = {
        "model": fields.get("model", ""),
        "messages": native_messages,
        "stream": fields.get("stream", False),
        "format": _format(fields.get("response_format")),
        "options": options,
        "tools": fields.get("tools") or [],
        "logprobs": fields.get("logprobs", False),
        "top_logprobs": fields.get("top_logprobs", 0),
    }
    if think is not None:
        body["think"] = think
    call = native.chat_request(body)
    return OpenAICall(call.request, call.stream, _include_usage(fields))


def completion_request(document: Any) -> OpenAICall:
    """A /v1/completions body as a GenerateRequest (``FromCompleteRequest``)."""
    fields = decode_request(document, COMPLETION_REQUEST)
    options: dict[str, Any] = {"stop": _stop(fields.get("stop"), strict=True)}
    if "max_tokens" in fields:
        options["num_predict"] = fields["max_tokens"]
    options["temperature"] = fields.get("temperature", 1.0)
    if "seed" in fields:
        options["seed"] = fields["seed"]
    options["frequency_penalty"] = fields.get("frequency_penalty", 0.0)
    options["presence_penalty"] = fields.get("presence_penalty", 0.0)
    options["top_p"] = fields.get("top_p") or 1.0
    logprobs = fields.get("logprobs", 0)
    body = {
        "model": fields.get("model", ""),
        "prompt": fields.get("prompt", ""),
        "suffix": fields.get("suffix", ""),
        "stream": fields.get("stream", False),
        "options": options,
        "logprobs": logprobs > 0,
        "top_logprobs": logprobs if logprobs > 0 else 0,
    }
    call = native.generate_request(body)
    return OpenAICall(call.request, call.stream, _include_usage(fields))


def embeddings_request(document: Any) -> EmbeddingsCall:
    """A /v1/embeddings body as an EmbedRequest, and whether vectors go out as base64."""
    fields = decode_request(document, EMBED_REQUEST)
    encoding = fields.get("encoding_format", "")
    if encoding and encoding.casefold() not in ("float", "base64"):
        raise ApiError(400, f"Invalid value for 'encoding_format' = {encoding}. Supported values: ['float', 'base64'].")
    value = fields.get("input")
    if value == "":
        value = [""]
    if value is None or value == []:
        raise ApiError(400, INVALID_EMBED_INPUT)
    model = fields.get("model", "")
    body: dict[str, Any] = {"model": model, "input": value}
    if "dimensions" in fields:
        body["dimensions"] = fields["dimensions"]
    return EmbeddingsCall(native.embed_request(body), model, encoding.casefold() == "base64")


# ---------------------------------------------------------------------------------------------
# Responses


def sse(obj: object) -> str:
    """One server-sent event carrying ``obj`` as JSON."""
    return "data: " + dumps(obj) + "\n\n"


def error_event(error: ApiError) -> str:
    """A failure after the stream began: an event openai-python raises ``APIError`` for."""
    return sse(error_body(error.status, error.message))


def _created(message: Any, now: Callable[[], float]) -> int:
    """Unix seconds of a message; core stamps every one, so ``now`` is only a fallback."""
    return message.created_at.seconds if message.HasField("created_at") else int(now())


def _usage(metrics: common_pb2.Metrics) -> dict:
    return {
        "prompt_tokens": metrics.prompt_eval_count,
        "completion_tokens": metrics.eval_count,
        "total_tokens": metrics.prompt_eval_count + metrics.eval_count,
    }


_ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _arguments_text(arguments_json: str) -> str:
    """Arguments as compact JSON text, as Go marshals them; ``{}`` when there are none."""
    if not arguments_json:
        return "{}"
    try:
        return dumps(json.loads(arguments_json))
    except ValueError:
        return arguments_json


def _tool_call(call: common_pb2.ToolCall, new_call_id: Callable[[], str]) -> dict:
    return {
        "id": call.id or new_call_id(),
        "index": call.index,
        "type": "function",
        "function": {"name": call.name, "arguments": _arguments_text(call.arguments_json)},
    }


def _add_logprobs(choice: dict, entries: Sequence[common_pb2.TokenLogprob]) -> None:
    """A chat choice's ``logprobs: {"content": [...]}``, left out when there are none."""
    if entries:
        choice["logprobs"] = {"content": [native.logprob_dict(entry) for entry in entries]}


def chat_completion(
    messages: Sequence[inference_pb2.ChatResponse],
    completion_id: str,
    new_call_id: Callable[[], str] = tool_call_id,
    now: Callable[[], float] = time.time,
) -> dict:
    """``stream:false``: every piece of the reply in one ``chat.completion``."""
    last = messages[-1]
    tool_calls = [_tool_call(call, new_call_id) for message in messages for call in message.message.tool_calls]
    message: dict[str, Any] = {
        "role": last.message.role or "assistant",
        "content": "".join(message.message.content for message in messages),
    }
    reasoning = "".join(message.message.thinking for message in messages)
    if reasoning:
        message["reasoning"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    reason = _DONE_REASONS.get(last.done_reason)
    if reason == "stop" and tool_calls:
        reason = "tool_calls"
    choice = {"index": 0, "message": message, "finish_reason": reason}
    _add_logprobs(choice, [entry for message in messages for entry in message.logprobs])
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": _created(last, now),
        "model": last.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [choice],
        "usage": _usage(last.metrics),
    }


class ChatStream:
    """The SSE events of a streamed chat, one call of :meth:`events` per message from core.

    As Ollama's ``ChatWriter``: one id and the first message's ``created`` on every chunk; the
    first delta carries the role; thinking and content that arrive together go out as two chunks,
    reasoning first (with the message's log probabilities); the final metrics-only message is not a content chunk, but a finish chunk
    ``{"delta": {}}``, the usage chunk (``choices: []``) when asked for, and ``[DONE]``.
    """

    def __init__(
        self,
        completion_id: str,
        include_usage: bool,
        new_call_id: Callable[[], str] = tool_call_id,
        now: Callable[[], float] = time.time,
    ):
        self.id = completion_id
        self.include_usage = include_usage
        self.new_call_id = new_call_id
        self.now = now
        self.created: int | None = None
        self.first_sent = False
        self.tool_call_sent = False

    def _chunk(self, model: str, choices: list) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }

    def _choices(self, message: inference_pb2.ChatResponse) -> list[dict]:
        """The one or two choices (reasoning apart from content) a message's delta chunks carry."""
        piece = message.message
        role = {} if self.first_sent else {"role": "assistant"}
        tool_calls = [_tool_call(call, self.new_call_id) for call in piece.tool_calls]
        if piece.thinking and (piece.content or tool_calls):
            first: dict[str, Any] = {"index": 0, "delta": {**role, "reasoning": piece.thinking}, "finish_reason": None}
            # The message's log probabilities ride on its first chunk.
            _add_logprobs(first, message.logprobs)
            second: dict[str, Any] = {"content": piece.content}
            if tool_calls:
                second["tool_calls"] = tool_calls
            return [first, {"index": 0, "delta": second, "finish_reason": None}]
        delta: dict[str, Any] = {**role, "content": piece.content}
        if piece.thinking:
            delta["reasoning"] = piece.thinking
        if tool_calls:
            delta["tool_calls"] = tool_calls
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        _add_logprobs(choice, message.logprobs)
        return [choice]

    def events(self, message: inference_pb2.ChatResponse) -> str:
        if self.created is None:
            self.created = _created(message, self.now)
        piece = message.message
        out = []
        empty_trailer = (
            message.done
            and self.first_sent
            and not piece.content
            and not piece.thinking
            and not piece.tool_calls
            and not message.logprobs
        )
        if not empty_trailer:
            for choice in self._choices(message):
                self.tool_call_sent = self.tool_call_sent or "tool_calls" in choice["delta"]
                out.append(sse(self._chunk(message.model, [choice])))
            self.first_sent = True
        if message.done:
            reason = _DONE_REASONS.get(message.done_reason) or "stop"
            if reason == "stop" and self.tool_call_sent:
                reason = "tool_calls"
            out.append(sse(self._chunk(message.model, [{"index": 0, "delta": {}, "finish_reason": reason}])))
            if self.include_usage:
                out.append(sse({**self._chunk(message.model, []), "usage": _usage(message.metrics)}))
            out.append(DONE_EVENT)
        return "".join(out)


def completion(
    messages: Sequence[inference_pb2.GenerateResponse], completion_id: str, now: Callable[[], float] = time.time
) -> dict:
    """``stream:false``: the whole completion as one ``text_completion``."""
    last = messages[-1]
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": _created(last, now),
        "model": last.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "text": "".join(message.response for message in messages),
                "index": 0,
                "finish_reason": _DONE_REASONS.get(last.done_reason),
            }
        ],
        "usage": _usage(last.metrics),
    }


class CompletionStream:
    """The SSE events of a streamed completion, as Ollama's ``CompleteWriter`` sends them.

    One chunk per message, the last one with ``finish_reason`` (no separate finish chunk). With
    ``include_usage`` every chunk carries zeroed usage and a ``choices: []`` chunk with the real
    usage comes before ``[DONE]``.
    """

    def __init__(self, completion_id: str, include_usage: bool, now: Callable[[], float] = time.time):
        self.id = completion_id
        self.include_usage = include_usage
        self.now = now

    def events(self, message: inference_pb2.GenerateResponse) -> str:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": _created(message, self.now),
            "choices": [{"text": message.response, "index": 0, "finish_reason": _DONE_REASONS.get(message.done_reason)}],
            "model": message.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        if self.include_usage:
            chunk["usage"] = dict(_ZERO_USAGE)
        out = [sse(chunk)]
        if message.done:
            if self.include_usage:
                out.append(sse({**chunk, "choices": [], "usage": _usage(message.metrics)}))
            out.append(DONE_EVENT)
        return "".join(out)


def _float32_base64(values: Sequence[float]) -> str:
    """Little-endian float32 bytes, base64: ``encoding_format: "base64"``."""
    floats = array.array("f", values)
    if sys.byteorder != "little":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode("ascii")


def embedding_list(message: inference_pb2.EmbedResponse, model: str, as_base64: bool) -> dict:
    data = [
        {
            "object": "embedding",
            "embedding": _float32_base64(embedding.values) if as_base64 else list(embedding.values),
            "index": index,
        }
        for index, embedding in enumerate(message.embeddings)
    ]
    tokens = message.metrics.prompt_eval_count
    return {
        "object": "list",
        # A Go nil slice: null, not [].
        "data": data or None,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def namespace(name: str) -> str:
    """The namespace of a model name as Ollama's ``model.ParseName`` fills it in (``library``)."""
    if name.rfind(":") > name.rfind("/"):
        name = name[: name.rfind(":")]
    if "/" not in name:
        return _DEFAULT_NAMESPACE
    rest = name[: name.rfind("/")] or "!MISSING!"
    return rest[rest.rfind("/") + 1 :] or "!MISSING!"


def _unix(timestamp_holder: Any) -> int:
    return timestamp_holder.modified_at.seconds if timestamp_holder.HasField("modified_at") else _GO_ZERO_TIME_UNIX


def _model(model_id: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": namespace(model_id)}


def model_list(message: models_pb2.ListModelsResponse) -> dict:
    """``/v1/models``; with no models ``data`` is null, as Ollama sends it."""
    return {"object": "list", "data": [_model(summary.name, _unix(summary)) for summary in message.models] or None}


def model_object(message: models_pb2.ShowModelResponse, model: str) -> dict:
    """``/v1/models/{model}``: the id as the client wrote it."""
    return _model(model, _unix(message))
