"""The Sanic app: listeners that own the gRPC channel, request ids, Ollama's router conventions.

``python -m herd.rest.app`` (what ``herd gateway`` runs) serves it in one process on
``OLLAMA_HOST``, talking to core at ``HERD_GRPC_HOST``.
"""

from __future__ import annotations

import os
import time

import grpc
import structlog
from sanic import Request, Sanic
from sanic.exceptions import MethodNotAllowed, NotFound
from sanic.response import HTTPResponse

from herd.auth import bearer_matches, is_loopback_host, open_aio_channel, warn_if_exposed
from herd.logs import configure_logging
from herd.rest import metrics, openapi
from herd.rest.cloud.routes import install as install_cloud
from herd.rest.errors import ApiError, error_response, exception_handlers, json_response
from herd.rest.limits import register_limits
from herd.rest.ollama.routes import create_blueprint
from herd.rest.openai.routes import create_blueprint as create_openai_blueprint
from herd.rest.openai.routes import openai_error_response
from herd.rest.request_id import REQUEST_ID_HEADER, request_id_for
from herd.rest.security import BadOrigin, OriginPolicy, default_origins, register_network_guards
from herd.rest.settings import GatewaySettings
from herd.v1 import inference_pb2_grpc, models_pb2_grpc

log = structlog.get_logger(__name__)

APP_NAME = "herd_gateway"

# Gin's own router answers, byte for byte, with Go's bare text/plain.
_GO_TEXT = "text/plain"
_UTF8_TEXT = "text/plain; charset=utf-8"

_CHANNEL_OPTIONS = (
    # Verbose show (a vocabulary in model_info) and batches of embeddings outgrow gRPC's 4 MiB.
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
)

# Sanic answers 503 when a handler has been silent this long; loading a model and a
# non-streaming generation may take minutes, and Ollama has no such limit.
_RESPONSE_TIMEOUT_S = 24 * 3600


async def _open_channel(app: Sanic, settings: GatewaySettings, channel: grpc.aio.Channel | None) -> None:
    app.ctx.owns_channel = channel is None
    app.ctx.channel = channel or open_aio_channel(
        settings.core_address, api_key=settings.api_key, tls_ca=settings.grpc_tls_ca, options=_CHANNEL_OPTIONS
    )
    app.ctx.inference = inference_pb2_grpc.InferenceStub(app.ctx.channel)
    app.ctx.models = models_pb2_grpc.ModelsStub(app.ctx.channel)
    log.info("gateway_starting", core=settings.core_address, host=settings.host, port=settings.port)


async def _close_channel(app: Sanic) -> None:
    # An injected channel belongs to whoever made it.
    if app.ctx.owns_channel:
        await app.ctx.channel.close()


async def _bind_request_id(request: Request) -> None:
    request.ctx.started_ns = time.perf_counter_ns()
    request.ctx.request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))
    structlog.contextvars.bind_contextvars(request_id=request.ctx.request_id)


async def _send_request_id(request: Request, response: HTTPResponse) -> None:
    # Routing errors are answered before request middleware, so the id may be made here.
    request_id = getattr(request.ctx, "request_id", None) or request_id_for(request.headers.get(REQUEST_ID_HEADER))
    response.headers[REQUEST_ID_HEADER] = request_id
    # For a stream this runs when its headers go out: the status, and the time to first byte.
    started = getattr(request.ctx, "started_ns", None)
    log.info(
        "request",
        request_id=request_id,
        method=request.method,
        path=request.path,
        status=response.status,
        first_byte_ns=time.perf_counter_ns() - started if started else None,
    )


# Health checks stay open when HERD_API_KEY is set.
_OPEN_PATHS = frozenset({"/", "/api/version"})
UNAUTHORIZED = "unauthorized"


def dialect_error_response(request: Request, error: ApiError) -> HTTPResponse:
    """OpenAI's error object on /v1, Ollama's ``{"error": ...}`` elsewhere."""
    return openai_error_response(error) if request.path.startswith("/v1/") else error_response(error)


def _api_key_check(api_key: str):
    key = api_key.encode()

    async def check_api_key(request: Request) -> HTTPResponse | None:
        if request.path in _OPEN_PATHS and request.method in ("GET", "HEAD"):
            return None
        if bearer_matches(request.headers.get("authorization"), key):
            return None
        log.info("unauthorized", path=request.path)
        response = dialect_error_response(request, ApiError(401, UNAUTHORIZED))
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    return check_api_key


def _page_not_found(request: Request, exception: Exception) -> HTTPResponse:
    return HTTPResponse("404 page not found", status=404, content_type=_GO_TEXT)


def _method_not_allowed(request: Request, exception: Exception) -> HTTPResponse:
    return HTTPResponse("405 method not allowed", status=405, content_type=_GO_TEXT)


def create_app(settings: GatewaySettings, channel: grpc.aio.Channel | None = None) -> Sanic:
    """The gateway app. Without ``channel`` it dials ``settings.core_address`` when it starts."""
    app = Sanic(APP_NAME, configure_logging=False, strict_slashes=True)
    app.config.RESPONSE_TIMEOUT = _RESPONSE_TIMEOUT_S
    app.ctx.metrics = metrics.GatewayMetrics()

    async def open_channel(app: Sanic) -> None:
        await _open_channel(app, settings, channel)

    app.register_listener(open_channel, "before_server_start")
    app.register_listener(_close_channel, "after_server_stop")
    app.register_middleware(_bind_request_id, "request")
    register_network_guards(
        app,
        origins=OriginPolicy.from_origins(default_origins(settings.origins)),
        check_host=is_loopback_host(settings.host),
    )
    register_limits(app, settings, dialect_error_response)
    if settings.api_key:
        app.register_middleware(_api_key_check(settings.api_key), "request")
    app.register_middleware(_send_request_id, "response")
    app.register_middleware(metrics.count_response, "response")

    app.error_handler.add(NotFound, _page_not_found)
    app.error_handler.add(MethodNotAllowed, _method_not_allowed)
    for exception_type, handler in exception_handlers(error_response):
        app.error_handler.add(exception_type, handler)

    async def root(request: Request) -> HTTPResponse:
        return HTTPResponse("Ollama is running", content_type=_UTF8_TEXT)

    async def version(request: Request) -> HTTPResponse:
        return json_response({"version": settings.version})

    app.add_route(root, "/", methods=["GET", "HEAD"])
    app.add_route(version, "/api/version", methods=["GET", "HEAD"])
    app.blueprint(create_blueprint())
    app.blueprint(create_openai_blueprint())
    app.blueprint(metrics.create_blueprint())
    app.blueprint(openapi.create_blueprint(settings.version))
    install_cloud(app, settings.cloud, settings.version)
    return app


def serve(settings: GatewaySettings) -> None:
    """Runs the gateway in this process until it is stopped."""
    try:
        app = create_app(settings)
    except BadOrigin as error:
        raise SystemExit(f"OLLAMA_ORIGINS: {error}") from None
    warn_if_exposed("gateway", settings.host, settings.api_key)
    app.run(host=settings.host, port=settings.port, single_process=True, access_log=False, motd=False)


def main() -> None:
    configure_logging("gateway")
    serve(GatewaySettings.from_env(os.environ))


if __name__ == "__main__":
    main()
