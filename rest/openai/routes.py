"""OpenAI-compatible /v1 routes: parse, translate, call core, translate back.

As in the native dialect, handlers hold no logic; the shapes live in ``translate``. Every error a
/v1 route answers with is OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with the
status of herd's one table (``herd.rest.errors``); this blueprint's exception handlers write it.
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from herd.rest.cloud.routes import by_model_field, by_model_path, remote_details_refused, request_json
from herd.rest.errors import ApiError, exception_handlers, json_response
from herd.rest.limits import check_message_count
from herd.rest.metrics import generation_observer
from herd.rest.ollama.translate import embed_not_found, show_not_found
from herd.rest.openai import responses as responses_api
from herd.rest.openai import translate
from herd.rest.openai.parsing import parse_body
from herd.rest.request_id import grpc_metadata
from herd.rest.streaming import drain, stream_sse, unary
from herd.v1 import models_pb2


def openai_error_response(error: ApiError) -> HTTPResponse:
    return json_response(translate.error_body(error.status, error.message), status=error.status)


def _metadata(request: Request) -> tuple[tuple[str, str], ...]:
    return grpc_metadata(request.ctx.request_id)


def _not_found(model: str) -> str:
    """What Ollama's generate and chat handlers say for a model that is not there."""
    return f"model '{model}' not found"


async def _complete(request: Request, call, rpc_method, completion_id: str, stream_type, aggregate) -> HTTPResponse | None:
    """Chat and text completions alike: SSE events when streaming, else one aggregated object."""
    not_found = _not_found(call.request.model)
    rpc = rpc_method(call.request, metadata=_metadata(request))
    observe = generation_observer(request)
    if call.stream:
        stream = stream_type(completion_id, call.include_usage)
        return await stream_sse(request, rpc, stream.events, translate.error_event, not_found, observe)
    return json_response(aggregate(await drain(rpc, not_found, observe), completion_id))


async def chat_completions(request: Request) -> HTTPResponse | None:
    body = request_json(request, parse_body)
    check_message_count(request, body)
    call = translate.chat_request(body)
    return await _complete(request, call, request.app.ctx.inference.Chat, translate.chat_completion_id(),
                           translate.ChatStream, translate.chat_completion)


async def completions(request: Request) -> HTTPResponse | None:
    call = translate.completion_request(request_json(request, parse_body))
    return await _complete(request, call, request.app.ctx.inference.Generate, translate.completion_id(),
                           translate.CompletionStream, translate.completion)


async def responses(request: Request) -> HTTPResponse | None:
    responses_api.check_content_encoding(request.headers.get("content-encoding"))
    body = request_json(request, parse_body)
    check_message_count(request, body, field="input")
    call = responses_api.responses_request(body)
    response_id, item_id = responses_api.response_id(), responses_api.message_id()
    not_found = _not_found(call.request.model)
    rpc = request.app.ctx.inference.Chat(call.request, metadata=_metadata(request))
    observe = generation_observer(request)
    if call.stream:
        stream = responses_api.ResponseStream(call.echo, response_id, item_id)
        return await stream_sse(request, rpc, stream.events, stream.error_event, not_found, observe)
    messages = await drain(rpc, not_found, observe)
    return json_response(responses_api.response(messages, call.echo, response_id, item_id))


async def embeddings(request: Request) -> HTTPResponse:
    call = translate.embeddings_request(request_json(request, parse_body))
    rpc = request.app.ctx.inference.Embed(call.request, metadata=_metadata(request))
    reply = await unary(rpc, embed_not_found(call.request.model))
    return json_response(translate.embedding_list(reply, call.model, call.base64))


async def list_models(request: Request) -> HTTPResponse:
    rpc = request.app.ctx.models.List(models_pb2.ListModelsRequest(), metadata=_metadata(request))
    return json_response(translate.model_list(await unary(rpc)))


async def retrieve_model(request: Request, model: str) -> HTTPResponse:
    rpc = request.app.ctx.models.Show(models_pb2.ShowModelRequest(model=model), metadata=_metadata(request))
    try:
        shown = await unary(rpc)
    except ApiError as error:
        if error.status == 404:
            raise ApiError(404, show_not_found(error.message, model)) from None
        raise
    if refused := remote_details_refused(shown, request.app.ctx.cloud.settings):
        raise refused
    return json_response(translate.model_object(shown, model))


def create_blueprint() -> Blueprint:
    """The /v1 routes, on a fresh blueprint for each app; its errors in OpenAI's shape."""
    blueprint = Blueprint("openai")
    blueprint.add_route(by_model_field(chat_completions), "/v1/chat/completions", methods=["POST"])
    blueprint.add_route(by_model_field(completions), "/v1/completions", methods=["POST"])
    blueprint.add_route(by_model_field(responses), "/v1/responses", methods=["POST"])
    blueprint.add_route(by_model_field(embeddings), "/v1/embeddings", methods=["POST"])
    blueprint.add_route(list_models, "/v1/models", methods=["GET"])
    # One path segment, percent-decoded as gin's router decodes it (clients may send ":" as %3A).
    blueprint.add_route(by_model_path(retrieve_model), "/v1/models/<model>", methods=["GET"], unquote=True)
    for exception_type, handler in exception_handlers(openai_error_response):
        blueprint.exception(exception_type)(handler)
    return blueprint
