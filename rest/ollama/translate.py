"""Ollama's /api JSON ⇄ herd.v1 messages, as pure functions.

Requests come in as the parsed JSON body (whatever the client sent) and leave as protos, with
Ollama's checks and messages on the way (:class:`ApiError`). Responses leave as dicts in the field
order and with the ``omitempty`` rules of Ollama's Go structs.
"""

from __future__ import annotations

import functools
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from herd.gofmt import go_quote
from herd.rest.errors import ApiError, dumps
from herd.rest.ollama.parsing import (
    CHAT_REQUEST,
    COPY_REQUEST,
    CREATE_REQUEST,
    DELETE_REQUEST,
    EMBED_REQUEST,
    EMBEDDING_REQUEST,
    GENERATE_REQUEST,
    PULL_REQUEST,
    SHOW_REQUEST,
    decode_request,
    options_from_map,
)
from herd.v1 import common_pb2, inference_pb2, models_pb2

log = structlog.get_logger(__name__)

MODEL_REQUIRED = "model is required"

_INT32_MAX = (1 << 31) - 1
_INT64_MAX = (1 << 63) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DONE_REASONS = {
    common_pb2.DONE_REASON_STOP: "stop",
    common_pb2.DONE_REASON_LENGTH: "length",
    common_pb2.DONE_REASON_LOAD: "load",
    common_pb2.DONE_REASON_UNLOAD: "unload",
}
_SHOW_NOT_FOUND = re.compile(r"model '.*' not found", re.DOTALL)


@dataclass(frozen=True)
class InferenceCall:
    """A generate or chat request for core, and how the client wants the answer."""

    request: inference_pb2.GenerateRequest | inference_pb2.ChatRequest
    stream: bool


# ---------------------------------------------------------------------------------------------
# Shared pieces


@functools.lru_cache(maxsize=64)
def _whole_seconds_text(seconds: int) -> str:
    # Cached: the tokens of a stream mostly share their second, and this runs once per token.
    moment = _EPOCH + timedelta(seconds=seconds)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def rfc3339_nano(seconds: int, nanos: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: ``2023-08-04T19:22:45.499127Z`` (trailing zeros trimmed)."""
    if nanos:
        return f"{_whole_seconds_text(seconds)}.{nanos:09d}".rstrip("0") + "Z"
    return _whole_seconds_text(seconds) + "Z"


def timestamp_text(timestamp: Timestamp) -> str:
    return rfc3339_nano(timestamp.seconds, timestamp.nanos)


def _now_text() -> str:
    now_ns = time.time_ns()
    return rfc3339_nano(now_ns // 1_000_000_000, now_ns % 1_000_000_000)


def _created_at(message: Any) -> str:
    # Core stamps every message; an unstamped one is stamped here rather than sent as 1970.
    return timestamp_text(message.created_at) if message.HasField("created_at") else _now_text()


def _add_metrics(body: dict, metrics: common_pb2.Metrics) -> None:
    """The metric fields that are set, in ns, as Go's ``omitempty`` leaves them."""
    if metrics.total_duration_ns:
        body["total_duration"] = metrics.total_duration_ns
    if metrics.load_duration_ns:
        body["load_duration"] = metrics.load_duration_ns
    if metrics.prompt_eval_count:
        body["prompt_eval_count"] = metrics.prompt_eval_count
    if metrics.prompt_eval_duration_ns:
        body["prompt_eval_duration"] = metrics.prompt_eval_duration_ns
    if metrics.eval_count:
        body["eval_count"] = metrics.eval_count
    if metrics.eval_duration_ns:
        body["eval_duration"] = metrics.eval_duration_ns


def _format(value: Any) -> str:
    """``format``: "" (none), "json", or a JSON Schema object as JSON text."""
    if value is None or value == "":
        return ""
    if value == "json":
        return "json"
    if isinstance(value, dict):
        return dumps(value)
    # The runner's check, which Ollama answers with a 500.
    raise ApiError(500, f'invalid format: {go_quote(dumps(value))}; expected "json" or a valid JSON Schema object')


def _check_top_logprobs(fields: dict) -> None:
    if not 0 <= fields.get("top_logprobs", 0) <= 20:
        raise ApiError(400, "top_logprobs must be between 0 and 20")


def _set_common(pb: Any, fields: dict) -> None:
    """keep_alive and options, shared by every inference request."""
    if "keep_alive" in fields:
        pb.keep_alive_ns = fields["keep_alive"]
    pb.options.CopyFrom(options_from_map(fields.get("options")))


def _set_generation(pb: inference_pb2.GenerateRequest | inference_pb2.ChatRequest, fields: dict) -> None:
    """What generate and chat share beyond _set_common: think and logprobs."""
    _set_common(pb, fields)
    think = fields.get("think")
    if think is not None:
        # Core takes "true"/"false" or a level, and refuses thinking for a model that cannot.
        pb.think = think if isinstance(think, str) else ("true" if think else "false")
    pb.logprobs = fields.get("logprobs", False)
    pb.top_logprobs = fields.get("top_logprobs", 0)


def logprob_dict(entry: common_pb2.TokenLogprob) -> dict:
    """One token's log probability as Ollama's ``api.Logprob`` (bytes and top list when present)."""
    body: dict[str, Any] = {"token": entry.token, "logprob": entry.logprob}
    if entry.bytes:
        body["bytes"] = list(entry.bytes)
    if entry.top_logprobs:
        body["top_logprobs"] = [logprob_dict(top) for top in entry.top_logprobs]
    return body


def _add_logprobs(chunk: dict, entries: Sequence[common_pb2.TokenLogprob]) -> None:
    if entries:
        chunk["logprobs"] = [logprob_dict(entry) for entry in entries]


def _whole(messages: Sequence[Any]) -> Any:
    """The last message of a drained stream, carrying every message's log probabilities."""
    whole = type(messages[-1])()
    whole.CopyFrom(messages[-1])
    whole.ClearField("logprobs")
    whole.logprobs.extend(entry for message in messages for entry in message.logprobs)
    return whole


def details_dict(details: common_pb2.ModelDetails) -> dict:
    body = {
        "parent_model": details.parent_model,
        "format": details.format,
        "family": details.family,
        # A Go nil slice: null, not [].
        "families": list(details.families) or None,
        "parameter_size": details.parameter_size,
        "quantization_level": details.quantization_level,
    }
    if details.context_length:
        body["context_length"] = details.context_length
    if details.embedding_length:
        body["embedding_length"] = details.embedding_length
    return body


# ---------------------------------------------------------------------------------------------
# /api/generate


def generate_request(document: Any) -> InferenceCall:
    """A parsed /api/generate body as a GenerateRequest, with Ollama's checks in Ollama's order."""
    fields = decode_request(document, GENERATE_REQUEST)
    _check_top_logprobs(fields)
    model = fields.get("model", "")
    if not model:
        raise ApiError(404, "model '' not found")
    if fields.get("raw") and (fields.get("template") or fields.get("system") or fields.get("context")):
        raise ApiError(400, "raw mode does not support template, system, or context")
    pb = inference_pb2.GenerateRequest(
        model=model,
        prompt=fields.get("prompt", ""),
        suffix=fields.get("suffix", ""),
        context=fields.get("context", []),
        raw=fields.get("raw", False),
        format=_format(fields.get("format")),
        images=fields.get("images", []),
    )
    # Ollama overrides the model's SYSTEM and TEMPLATE only with non-empty text.
    if fields.get("system"):
        pb.system = fields["system"]
    if fields.get("template"):
        pb.template = fields["template"]
    _set_generation(pb, fields)
    return InferenceCall(pb, fields.get("stream", True))


def generate_chunk(message: inference_pb2.GenerateResponse) -> dict:
    """One NDJSON line of /api/generate; the final one carries done_reason, context and metrics."""
    chunk = {
        "model": message.model,
        "created_at": _created_at(message),
        "response": message.response,
    }
    if message.thinking:
        chunk["thinking"] = message.thinking
    chunk["done"] = message.done
    if message.done:
        reason = _DONE_REASONS.get(message.done_reason)
        if reason:
            chunk["done_reason"] = reason
        if message.context:
            chunk["context"] = list(message.context)
    _add_logprobs(chunk, message.logprobs)
    if message.done:
        _add_metrics(chunk, message.metrics)
    return chunk


def generate_response(messages: Sequence[inference_pb2.GenerateResponse]) -> dict:
    """``stream:false``: the last chunk with every chunk's text and thinking."""
    whole = _whole(messages)
    whole.response = "".join(message.response for message in messages)
    whole.thinking = "".join(message.thinking for message in messages)
    return generate_chunk(whole)


# ---------------------------------------------------------------------------------------------
# /api/chat


def _tool_call_pb(call: dict) -> common_pb2.ToolCall:
    function = call.get("function") or {}
    return common_pb2.ToolCall(
        id=call.get("id", ""),
        index=_clamp_int32(function.get("index", 0)),
        name=function.get("name", ""),
        arguments_json=dumps(function.get("arguments") or {}),
    )


def _clamp_int32(value: int) -> int:
    return max(-_INT32_MAX - 1, min(_INT32_MAX, value))


def _message_pb(message: dict) -> inference_pb2.Message:
    return inference_pb2.Message(
        role=message.get("role", "").lower(),
        content=message.get("content", ""),
        images=message.get("images", []),
        thinking=message.get("thinking", ""),
        tool_calls=[_tool_call_pb(call) for call in message.get("tool_calls", [])],
        tool_name=message.get("tool_name", ""),
        tool_call_id=message.get("tool_call_id", ""),
    )


def _tool_pb(tool: dict) -> common_pb2.Tool:
    function = tool.get("function") or {}
    parameters = function.get("parameters")
    return common_pb2.Tool(
        type=tool.get("type", ""),
        function=common_pb2.ToolFunction(
            name=function.get("name", ""),
            description=function.get("description", ""),
            parameters_json=dumps(parameters) if parameters is not None else "",
        ),
    )


def chat_request(document: Any) -> InferenceCall:
    """A parsed /api/chat body as a ChatRequest, with Ollama's checks in Ollama's order."""
    fields = decode_request(document, CHAT_REQUEST)
    _check_top_logprobs(fields)
    model = fields.get("model", "")
    if not model:
        raise ApiError(400, MODEL_REQUIRED)
    pb = inference_pb2.ChatRequest(
        model=model,
        messages=[_message_pb(message) for message in fields.get("messages", [])],
        tools=[_tool_pb(tool) for tool in fields.get("tools", [])],
        format=_format(fields.get("format")),
    )
    _set_generation(pb, fields)
    return InferenceCall(pb, fields.get("stream", True))


def _tool_call_dict(call: common_pb2.ToolCall) -> dict:
    try:
        arguments = json.loads(call.arguments_json) if call.arguments_json else {}
    except ValueError:
        log.warning("tool_call_arguments_not_json", name=call.name)
        arguments = {}
    body: dict[str, Any] = {"id": call.id} if call.id else {}
    body["function"] = {"index": call.index, "name": call.name, "arguments": arguments}
    return body


def _message_dict(role: str, content: str, thinking: str, tool_calls: list[dict]) -> dict:
    message = {"role": role or "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def chat_chunk(message: inference_pb2.ChatResponse) -> dict:
    """One NDJSON line of /api/chat; the final one carries done_reason and metrics."""
    piece = message.message
    chunk = {
        "model": message.model,
        "created_at": _created_at(message),
        "message": _message_dict(
            piece.role, piece.content, piece.thinking, [_tool_call_dict(call) for call in piece.tool_calls]
        ),
        "done": message.done,
    }
    if message.done:
        reason = _DONE_REASONS.get(message.done_reason)
        if reason:
            chunk["done_reason"] = reason
    _add_logprobs(chunk, message.logprobs)
    if message.done:
        _add_metrics(chunk, message.metrics)
    return chunk


def chat_response(messages: Sequence[inference_pb2.ChatResponse]) -> dict:
    """``stream:false``: the last chunk with all content, thinking, tool calls and log probabilities."""
    body = chat_chunk(_whole(messages))
    body["message"] = _message_dict(
        messages[-1].message.role,
        "".join(message.message.content for message in messages),
        "".join(message.message.thinking for message in messages),
        [_tool_call_dict(call) for message in messages for call in message.message.tool_calls],
    )
    return body


# ---------------------------------------------------------------------------------------------
# /api/embed and /api/embeddings


def embed_not_found(model: str) -> str:
    """Ollama's wording when an embedding model is missing."""
    return f"model {go_quote(model)} not found, try pulling it first"


def _embed_inputs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ApiError(400, "invalid input type")


def embed_request(document: Any) -> inference_pb2.EmbedRequest:
    """A parsed /api/embed body as an EmbedRequest."""
    fields = decode_request(document, EMBED_REQUEST)
    model = fields.get("model", "")
    if not model:
        raise ApiError(404, "model '' not found")
    dimensions = fields.get("dimensions", 0)
    pb = inference_pb2.EmbedRequest(
        model=model,
        input=_embed_inputs(fields.get("input")),
        # Zero, negative or more than a vector has all mean "keep every dimension".
        dimensions=dimensions if 0 < dimensions <= _INT32_MAX else 0,
    )
    if "truncate" in fields:
        pb.truncate = fields["truncate"]
    _set_common(pb, fields)
    return pb


def embed_response(message: inference_pb2.EmbedResponse) -> dict:
    body: dict[str, Any] = {
        "model": message.model,
        "embeddings": [list(embedding.values) for embedding in message.embeddings],
    }
    if message.metrics.total_duration_ns:
        body["total_duration"] = message.metrics.total_duration_ns
    if message.metrics.load_duration_ns:
        body["load_duration"] = message.metrics.load_duration_ns
    if message.metrics.prompt_eval_count:
        body["prompt_eval_count"] = message.metrics.prompt_eval_count
    return body


def embeddings_request(document: Any) -> inference_pb2.EmbedRequest:
    """A legacy /api/embeddings body: one prompt, a vector that is not normalised."""
    fields = decode_request(document, EMBEDDING_REQUEST)
    model = fields.get("model", "")
    if not model:
        raise ApiError(400, MODEL_REQUIRED)
    prompt = fields.get("prompt", "")
    pb = inference_pb2.EmbedRequest(model=model, input=[prompt] if prompt else [], normalize=False)
    _set_common(pb, fields)
    return pb


def embeddings_response(message: inference_pb2.EmbedResponse) -> dict:
    return {"embedding": list(message.embeddings[0].values) if message.embeddings else []}


# ---------------------------------------------------------------------------------------------
# /api/tags, /api/show, /api/ps


def _add_remote(body: dict, message: models_pb2.ModelSummary | models_pb2.ShowModelResponse) -> None:
    """A remote model's (a stub's) name on its host and the host, as Ollama's omitempty leaves them."""
    if message.remote_model:
        body["remote_model"] = message.remote_model
    if message.remote_host:
        body["remote_host"] = message.remote_host


def tags_response(message: models_pb2.ListModelsResponse) -> dict:
    models = []
    for summary in message.models:
        entry = {"name": summary.name, "model": summary.name}
        _add_remote(entry, summary)
        entry |= {
            "modified_at": timestamp_text(summary.modified_at),
            "size": summary.size,
            "digest": summary.digest,
            "details": details_dict(summary.details),
        }
        if summary.capabilities:
            entry["capabilities"] = list(summary.capabilities)
        models.append(entry)
    return {"models": models}


def show_request(document: Any) -> models_pb2.ShowModelRequest:
    fields = decode_request(document, SHOW_REQUEST)
    model = fields.get("model") or fields.get("name") or ""
    if not model:
        raise ApiError(400, MODEL_REQUIRED)
    pb = models_pb2.ShowModelRequest(model=model, verbose=fields.get("verbose", False))
    if fields.get("system"):
        pb.system = fields["system"]
    pb.options.CopyFrom(options_from_map(fields.get("options")))
    return pb


def show_not_found(details: str, model: str) -> str:
    """Core names the normalised model (``x:latest``) as Ollama's show does; else the name as sent."""
    return details if _SHOW_NOT_FOUND.fullmatch(details) else f"model '{model}' not found"


def show_response(message: models_pb2.ShowModelResponse) -> dict:
    body: dict[str, Any] = {}
    for key in ("license", "modelfile", "parameters", "template", "system"):
        if getattr(message, key):
            body[key] = getattr(message, key)
    body["details"] = details_dict(message.details)
    if message.messages:
        body["messages"] = [{"role": m.role, "content": m.content} for m in message.messages]
    _add_remote(body, message)
    body["model_info"] = json.loads(message.model_info_json) if message.model_info_json else {}
    if message.projector_info_json:
        body["projector_info"] = json.loads(message.projector_info_json)
    if message.capabilities:
        body["capabilities"] = list(message.capabilities)
    # Go's zero time when core has none; time.Time is never omitted.
    body["modified_at"] = timestamp_text(message.modified_at) if message.HasField("modified_at") else "0001-01-01T00:00:00Z"
    return body


def ps_response(message: models_pb2.ListRunningResponse, now_ns: int) -> dict:
    """Loaded models; one kept forever expires, as Ollama shows it, ``now + MaxInt64 ns`` (~2318)."""
    models = []
    for running in message.models:
        if running.HasField("expires_at"):
            expires_at = timestamp_text(running.expires_at)
        else:
            forever_ns = now_ns + _INT64_MAX
            expires_at = rfc3339_nano(forever_ns // 1_000_000_000, forever_ns % 1_000_000_000)
        models.append(
            {
                "name": running.name,
                "model": running.name,
                "size": running.size,
                "digest": running.digest,
                "details": details_dict(running.details),
                "expires_at": expires_at,
                "size_vram": running.size_vram,
                "context_length": running.context_length,
            }
        )
    return {"models": models}


# ---------------------------------------------------------------------------------------------
# Model management


def copy_request(document: Any) -> models_pb2.CopyModelRequest:
    fields = decode_request(document, COPY_REQUEST)
    return models_pb2.CopyModelRequest(source=fields.get("source", ""), destination=fields.get("destination", ""))


def delete_request(document: Any) -> models_pb2.DeleteModelRequest:
    fields = decode_request(document, DELETE_REQUEST)
    model = fields.get("model") or fields.get("name") or ""
    if not model:
        raise ApiError(400, MODEL_REQUIRED)
    return models_pb2.DeleteModelRequest(model=model)


@dataclass(frozen=True)
class CreateCall:
    request: models_pb2.CreateModelRequest
    stream: bool


def create_request(document: Any) -> CreateCall:
    fields = decode_request(document, CREATE_REQUEST)
    model = fields.get("model") or fields.get("name") or ""
    if not model:
        raise ApiError(400, MODEL_REQUIRED)
    for mapping in (fields.get("files") or {}, fields.get("adapters") or {}):
        if not all(isinstance(value, str) for value in mapping.values()):
            raise ApiError(400, "invalid digest format")
    license_value = fields.get("license")
    if isinstance(license_value, str):
        licenses = [license_value]
    elif isinstance(license_value, list) and all(isinstance(item, str) for item in license_value):
        licenses = license_value
    elif license_value is None:
        licenses = []
    else:
        raise ApiError(400, "license must be a string or a list of strings")
    pb = models_pb2.CreateModelRequest(
        model=model,
        files=fields.get("files") or {},
        adapters=fields.get("adapters") or {},
        license=licenses,
        parameters_json=dumps(fields.get("parameters") or {}),
        quantize=fields.get("quantize") or fields.get("quantization") or "",
        messages=[models_pb2.ModelMessage(role=m.get("role", ""), content=m.get("content", "")) for m in fields.get("messages") or []],
    )
    setattr(pb, "from", fields.get("from", ""))
    for key in ("template", "system"):
        if key in fields:
            setattr(pb, key, fields[key])
    pb.remote_host = fields.get("remote_host", "")
    if fields.get("info"):
        pb.info.CopyFrom(_create_info(fields["info"]))
    return CreateCall(pb, fields.get("stream", True))


# Ollama accepts counts in ``info`` up to its int's range.
_MAX_INFO_INT = (1 << 63) - 1


def _create_info(info: dict) -> models_pb2.CreateModelInfo:
    """A create request's ``info`` (what a remote model's config records), checked as Ollama checks it."""
    pb = models_pb2.CreateModelInfo()
    capabilities = info.get("capabilities")
    if isinstance(capabilities, list):
        # Ollama keeps a non-string entry's place as "".
        pb.capabilities.extend(item if isinstance(item, str) else "" for item in capabilities)
    for key in ("model_family", "base_name", "quantization_level", "parameter_size"):
        value = info.get(key, "")
        if not isinstance(value, str):
            raise ApiError(400, f"info field {go_quote(key)} must be a string")
        setattr(pb, key, value)
    for key in ("context_length", "embedding_length"):
        value = info.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApiError(400, f"info field {go_quote(key)} must be a number")
        if value < 0 or value != int(value) or value > _MAX_INFO_INT:
            raise ApiError(400, f"info field {go_quote(key)} must be a non-negative integer")
        setattr(pb, key, int(value))
    return pb


def progress_chunk(message: models_pb2.ProgressUpdate) -> dict:
    chunk: dict[str, Any] = {"status": message.status}
    if message.digest:
        chunk["digest"] = message.digest
    if message.total:
        chunk["total"] = message.total
        chunk["completed"] = message.completed
    return chunk


@dataclass(frozen=True)
class TransferCall:
    model: str
    insecure: bool
    stream: bool


def transfer_request(document: Any) -> TransferCall:
    """``/api/pull`` and ``/api/push`` bodies (Ollama's PullRequest and PushRequest share a shape)."""
    fields = decode_request(document, PULL_REQUEST)
    model = fields.get("model") or fields.get("name") or ""
    if not model:
        raise ApiError(400, MODEL_REQUIRED)
    return TransferCall(model, fields.get("insecure", False), fields.get("stream", True))
