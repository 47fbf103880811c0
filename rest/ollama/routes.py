"""Ollama's native /api routes: parse, translate, call core, translate back.

Handlers hold no logic of their own; the checks and shapes live in ``translate`` and ``parsing``,
the status table in ``herd.rest.errors``. An :class:`ApiError` raised anywhere becomes Ollama's
error body through the app's exception handler.
"""

from __future__ import annotations

import re
import time

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from herd.gofmt import go_quote
from herd.rest.cloud import stubs
from herd.rest.cloud.routes import (
    DETAILS_UNAVAILABLE,
    by_model_field,
    remote_details_refused,
    request_json,
    with_cloud_host,
    with_pull_name,
)
from herd.rest.errors import ApiError, RemoteModelCall, json_response
from herd.rest.limits import check_message_count
from herd.rest.metrics import generation_observer
from herd.rest.ollama import translate
from herd.rest.ollama.parsing import parse_json_body
from herd.rest.request_id import grpc_metadata
from herd.rest.streaming import drain, stream_ndjson, unary
from herd.v1 import models_pb2


def _metadata(request: Request) -> tuple[tuple[str, str], ...]:
    return grpc_metadata(request.ctx.request_id)


async def _stream_or_drain(request: Request, body: dict, call, rpc_method, to_chunk, to_response,
                           remote_path: str) -> HTTPResponse | None:
    """Generate and chat alike: NDJSON chunks by default, one aggregated object for ``stream:false``;
    on a remote model (a stub), whatever its host answers at ``remote_path``."""
    not_found = f"model '{call.request.model}' not found"
    rpc = rpc_method(call.request, metadata=_metadata(request))
    observe = generation_observer(request)
    try:
        if call.stream:
            return await stream_ndjson(request, rpc, to_chunk, not_found, observe)
        return json_response(to_response(await drain(rpc, not_found, observe)))
    except RemoteModelCall:
        return await stubs.forward(request, remote_path, body)


async def generate(request: Request) -> HTTPResponse | None:
    body = request_json(request)
    call = translate.generate_request(body)
    return await _stream_or_drain(request, body, call, request.app.ctx.inference.Generate, translate.generate_chunk,
                                  translate.generate_response, stubs.GENERATE_PATH)


async def chat(request: Request) -> HTTPResponse | None:
    body = request_json(request)
    check_message_count(request, body)
    call = translate.chat_request(body)
    return await _stream_or_drain(request, body, call, request.app.ctx.inference.Chat, translate.chat_chunk,
                                  translate.chat_response, stubs.CHAT_PATH)


async def embed(request: Request) -> HTTPResponse:
    pb = translate.embed_request(request_json(request))
    rpc = request.app.ctx.inference.Embed(pb, metadata=_metadata(request))
    return json_response(translate.embed_response(await unary(rpc, translate.embed_not_found(pb.model))))


async def embeddings(request: Request) -> HTTPResponse:
    pb = translate.embeddings_request(request_json(request))
    rpc = request.app.ctx.inference.Embed(pb, metadata=_metadata(request))
    return json_response(translate.embeddings_response(await unary(rpc, translate.embed_not_found(pb.model))))


async def tags(request: Request) -> HTTPResponse:
    rpc = request.app.ctx.models.List(models_pb2.ListModelsRequest(), metadata=_metadata(request))
    return json_response(translate.tags_response(await unary(rpc)))


async def show(request: Request) -> HTTPResponse:
    pb = translate.show_request(request_json(request))
    rpc = request.app.ctx.models.Show(pb, metadata=_metadata(request))
    try:
        shown = await unary(rpc)
    except ApiError as error:
        if error.status == 404:
            raise ApiError(404, translate.show_not_found(error.message, pb.model)) from None
        raise
    if refused := remote_details_refused(shown, request.app.ctx.cloud.settings):
        raise refused
    return json_response(translate.show_response(shown))


async def ps(request: Request) -> HTTPResponse:
    rpc = request.app.ctx.models.ListRunning(models_pb2.ListRunningRequest(), metadata=_metadata(request))
    return json_response(translate.ps_response(await unary(rpc), time.time_ns()))


async def copy(request: Request) -> HTTPResponse:
    pb = translate.copy_request(parse_json_body(request.body))
    rpc = request.app.ctx.models.Copy(pb, metadata=_metadata(request))
    await unary(rpc, f"model {go_quote(pb.source)} not found")
    return HTTPResponse(status=200)


async def delete(request: Request) -> HTTPResponse:
    pb = translate.delete_request(request_json(request))
    rpc = request.app.ctx.models.Delete(pb, metadata=_metadata(request))
    await unary(rpc, f"model '{pb.model}' not found")
    return HTTPResponse(status=200)


_DIGEST = re.compile(r"sha256[:-][0-9a-fA-F]{64}")
_UPLOAD_CHUNK = 1 << 20


async def blob_exists(request: Request, digest: str) -> HTTPResponse:
    if not _DIGEST.fullmatch(digest):
        raise ApiError(400, "invalid digest format")
    rpc = request.app.ctx.models.HasBlob(models_pb2.HasBlobRequest(digest=digest), metadata=_metadata(request))
    if not (await unary(rpc)).exists:
        raise ApiError(404, f"blob {go_quote(digest)} not found")
    return HTTPResponse(status=200)


async def blob_upload(request: Request, digest: str) -> HTTPResponse:
    """Streams the body to core, which keeps it only if it hashes to ``digest``."""
    if not _DIGEST.fullmatch(digest):
        raise ApiError(400, "invalid digest format")
    # Model weights are gigabytes: this route alone lifts the body limit and never buffers it.
    request.stream.request_max_size = float("inf")

    async def chunks():
        yield models_pb2.PutBlobRequest(digest=digest)
        while (data := await request.stream.read()) is not None:
            for start in range(0, len(data), _UPLOAD_CHUNK):
                yield models_pb2.PutBlobRequest(data=data[start : start + _UPLOAD_CHUNK])

    rpc = request.app.ctx.models.PutBlob(chunks(), metadata=_metadata(request))
    reply = await unary(rpc)
    return HTTPResponse(status=201 if reply.created else 200)


async def create(request: Request) -> HTTPResponse | None:
    call = translate.create_request(parse_json_body(request.body))
    with_cloud_host(call.request, request.app.ctx.cloud.settings)
    rpc = request.app.ctx.models.Create(call.request, metadata=_metadata(request))
    not_found = f"model {go_quote(getattr(call.request, 'from'))} not found"
    if call.stream:
        return await stream_ndjson(request, rpc, translate.progress_chunk, not_found)
    return json_response(translate.progress_chunk((await drain(rpc, not_found))[-1]))


async def _registry_transfer(request: Request, rpc_method, request_type) -> HTTPResponse | None:
    """Pull and push alike: progress lines, or the last one for ``stream:false``."""
    call = translate.transfer_request(request_json(request))
    rpc = rpc_method(request_type(model=call.model, insecure=call.insecure), metadata=_metadata(request))
    if call.stream:
        return await stream_ndjson(request, rpc, translate.progress_chunk)
    return json_response(translate.progress_chunk((await drain(rpc))[-1]))


async def pull(request: Request) -> HTTPResponse | None:
    return await _registry_transfer(request, request.app.ctx.models.Pull, models_pb2.PullModelRequest)


async def push(request: Request) -> HTTPResponse | None:
    return await _registry_transfer(request, request.app.ctx.models.Push, models_pb2.PushModelRequest)


def create_blueprint() -> Blueprint:
    """The /api routes of Ollama's native dialect, on a fresh blueprint for each app."""
    blueprint = Blueprint("ollama")
    blueprint.add_route(by_model_field(generate), "/api/generate", methods=["POST"])
    blueprint.add_route(by_model_field(chat), "/api/chat", methods=["POST"])
    blueprint.add_route(by_model_field(embed), "/api/embed", methods=["POST"])
    blueprint.add_route(by_model_field(embeddings), "/api/embeddings", methods=["POST"])
    blueprint.add_route(tags, "/api/tags", methods=["GET", "HEAD"])
    blueprint.add_route(by_model_field(show, DETAILS_UNAVAILABLE), "/api/show", methods=["POST"])
    blueprint.add_route(ps, "/api/ps", methods=["GET"])
    blueprint.add_route(copy, "/api/copy", methods=["POST"])
    blueprint.add_route(with_pull_name(delete), "/api/delete", methods=["DELETE"])
    blueprint.add_route(create, "/api/create", methods=["POST"])
    blueprint.add_route(with_pull_name(pull), "/api/pull", methods=["POST"])
    blueprint.add_route(push, "/api/push", methods=["POST"])
    blueprint.add_route(blob_exists, "/api/blobs/<digest>", methods=["HEAD"])
    blueprint.add_route(blob_upload, "/api/blobs/<digest>", methods=["POST"], stream=True)
    return blueprint
