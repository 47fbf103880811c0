"""Remote models (Ollama's legacy stubs): a local name whose config names a ``remote_host`` and the
``remote_model`` there, made by ``create`` from a cloud name or by pulling ``x:cloud``.

Native generate and chat on a stub go to its host as Ollama's ``server/routes.go`` sends them:
``model`` = the remote model, the stub's SYSTEM, MESSAGES and PARAMETERs (and TEMPLATE on
generate) merged in as defaults, each answer re-encoded with the local name plus ``remote_model``
and ``remote_host``. Core only says that a model is a stub (so local requests pay nothing extra);
the gateway reads the stub's details and talks to the host, never waiting on the scheduler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from sanic import Request
from sanic.response import HTTPResponse

from herd.modelref import ModelSource
from herd.rest.cloud.proxy import UPSTREAM_DROPPED, CloudProxy, Unauthorized, disabled_message, unreachable_message
from herd.rest.cloud.routes import INFERENCE_UNAVAILABLE
from herd.rest.errors import JSON_CONTENT_TYPE, ApiError, dumps
from herd.rest.request_id import grpc_metadata
from herd.rest.streaming import NDJSON_CONTENT_TYPE, unary
from herd.v1 import models_pb2

log = structlog.get_logger(__name__)

NOT_ALLOWED = "this server cannot run this remote model"
GENERATE_PATH = "/api/generate"
CHAT_PATH = "/api/chat"


@dataclass(frozen=True)
class Stub:
    """What a request to a remote model takes from it; ``name`` is the local name as the client sent it."""

    name: str
    remote_host: str
    remote_model: str
    system: str
    template: str
    params: dict[str, Any]
    messages: list[dict[str, str]]

    @classmethod
    def from_show(cls, name: str, shown: models_pb2.ShowModelResponse) -> Stub:
        params = json.loads(shown.parameters_json) if shown.parameters_json else {}
        return cls(
            name=name,
            remote_host=shown.remote_host,
            remote_model=shown.remote_model,
            system=shown.system,
            template=shown.template,
            params=params if isinstance(params, dict) else {},
            messages=[{"role": m.role, "content": m.content} for m in shown.messages],
        )


def _with_params(body: dict, stub: Stub) -> dict:
    """``body`` for the remote model: its ``model``, and ``options`` with the stub's parameters
    under the request's own (Ollama always sends ``options``, if only ``{}``)."""
    options = dict(body.get("options") or {})
    for key, value in stub.params.items():
        options.setdefault(key, value)
    return {**body, "model": stub.remote_model, "options": options}


def generate_body(body: dict, stub: Stub) -> dict:
    """A generate request as the stub's host gets it. The stub's messages are not sent: Ollama
    only warns that generate cannot use them."""
    merged = _with_params(body, stub)
    if not merged.get("template") and stub.template:
        merged["template"] = stub.template
    if not merged.get("system") and stub.system:
        merged["system"] = stub.system
    return merged


def chat_body(body: dict, stub: Stub) -> dict:
    """A chat request as the stub's host gets it: the stub's messages before the client's, and its
    system prompt first unless the client starts with one. A chat without messages (a load) stays one."""
    merged = _with_params(body, stub)
    messages = body.get("messages") or []
    if messages:
        merged["messages"] = [*stub.messages, *messages]
        if messages[0].get("role") != "system" and stub.system:
            merged["messages"].insert(0, {"role": "system", "content": stub.system})
    return merged


def stamp(chunk: dict, stub: Stub) -> dict:
    """One answer of the host as the client sees it: the local name, then the remote model and host,
    then the rest in the host's order (Ollama's GenerateResponse and ChatResponse field order)."""
    rest = {key: value for key, value in chunk.items() if key not in ("model", "remote_model", "remote_host")}
    return {"model": stub.name, "remote_model": stub.remote_model, "remote_host": stub.remote_host, **rest}


async def forward(request: Request, path: str, body: dict) -> HTTPResponse | None:
    """Answers a native generate or chat on a stub (core said the model is one) from its host."""
    name = body["model"]
    ref = getattr(request.ctx, "model_ref", None)
    if ref is not None and ref.source is ModelSource.LOCAL:
        # x:local asks for a model served here, which a stub is not.
        raise ApiError(404, f"model '{ref.original}' not found")
    proxy: CloudProxy = request.app.ctx.cloud
    if proxy.settings.disabled:
        raise ApiError(403, disabled_message(INFERENCE_UNAVAILABLE))
    show = request.app.ctx.models.Show(models_pb2.ShowModelRequest(model=name),
                                       metadata=grpc_metadata(request.ctx.request_id))
    stub = Stub.from_show(name, await unary(show, f"model '{name}' not found"))
    if urlsplit(stub.remote_host).hostname not in proxy.settings.remotes:
        log.info("remote_model_not_allowed", remotes=",".join(proxy.settings.remotes), remote_host=stub.remote_host)
        raise ApiError(400, NOT_ALLOWED)
    merged = generate_body(body, stub) if path == GENERATE_PATH else chat_body(body, stub)
    try:
        upstream_request = proxy.remote_model_request(stub.remote_host, path, dumps(merged).encode())
    except Unauthorized:
        return proxy.unauthorized()
    try:
        upstream = await proxy.open(upstream_request)
    except httpx.TransportError as error:
        log.warning("remote_model_unreachable", remote_host=stub.remote_host, error=repr(error))
        raise ApiError(500, unreachable_message(error)) from None
    try:
        if upstream.status_code == 401:
            return proxy.unauthorized()
        content_type = JSON_CONTENT_TYPE if merged.get("stream") is False else NDJSON_CONTENT_TYPE
        await _relay(request, upstream, stub, content_type)
    finally:
        await upstream.aclose()
    return None


def _parse_line(line: str) -> tuple[dict, str | None]:
    """A line of the host's answer and the error it reports: its ``error``, or the line itself when
    it is not a JSON object (as Ollama's client reports such a line); None for an answer."""
    try:
        chunk = json.loads(line)
    except ValueError:
        return {}, line
    if not isinstance(chunk, dict):
        return {}, line
    error = chunk.get("error")
    return chunk, (str(error) if error else None)


async def _relay(request: Request, upstream: httpx.Response, stub: Stub, content_type: str) -> None:
    """The host's lines, stamped, as they arrive. Before the first one a failure is a status and
    ``{"error": …}`` (the host's status for its errors, 500 otherwise); after it, one error line."""
    failed = upstream.status_code >= 400
    response = None
    try:
        async for line in upstream.aiter_lines():
            if not line.strip():
                continue
            chunk, error = _parse_line(line)
            if failed or error is not None:
                message = error or line
                if response is None:
                    raise ApiError(upstream.status_code if failed else 500, message)
                await response.send(dumps({"error": message}) + "\n")
                break
            if response is None:
                response = await request.respond(content_type=content_type)
            await response.send(dumps(stamp(chunk, stub)) + "\n")
    except (httpx.TransportError, httpx.DecodingError) as error:
        log.warning("remote_model_relay_failed", remote_host=stub.remote_host, error=repr(error))
        if response is None:
            raise ApiError(500, unreachable_message(error)) from None
        await response.send(dumps({"error": UPSTREAM_DROPPED}) + "\n")
    if response is None:
        raise ApiError(upstream.status_code if failed else 500, upstream.reason_phrase or "empty response")
    await response.eof()
