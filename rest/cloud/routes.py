"""Which requests go to the cloud: a model name with a cloud suffix on the inference and show
routes (the handlers are wrapped, so core never sees them), the experimental web routes, and
``GET /api/status`` and ``POST /api/me``."""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable

import httpx
import structlog
import zstandard
from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse

from herd.cloud_key import KeyUnavailable, encoded_public_key, load_key
from herd.gofmt import go_quote
from herd.modelref import MODEL_REQUIRED, ModelRef, ModelRefError, ModelSource, normalize_pull_name, parse_ref
from herd.rest.cloud.proxy import CloudProxy, Unauthorized, disabled_message
from herd.rest.cloud.settings import CloudSettings
from herd.rest.errors import ApiError, dumps, json_response
from herd.rest.ollama.parsing import parse_json_body
from herd.v1 import models_pb2

log = structlog.get_logger(__name__)

INFERENCE_UNAVAILABLE = "remote model is unavailable"
DETAILS_UNAVAILABLE = "remote model details are unavailable"
WEB_SEARCH_UNAVAILABLE = "web search is unavailable"
WEB_FETCH_UNAVAILABLE = "web fetch is unavailable"
MISSING_BODY = "missing request body"
ACCOUNT_UNAVAILABLE = "account unavailable"
SIGNOUT_FAILED = "there was an error signing out"
NOT_SIGNED_IN = "you are not currently signed in"
DECOMPRESS_FAILED = "failed to decompress request body"
BODY_TOO_LARGE = "http: request body too large"

# Ollama's limits on a zstd request body: the decoder's window, and the body once decompressed.
ZSTD_MAX_WINDOW_BYTES = 8 << 20
MAX_DECOMPRESSED_BODY_BYTES = 20 << 20
_DECOMPRESS_READ_BYTES = 1 << 20

Handler = Callable[..., Awaitable[HTTPResponse | None]]


def request_json(request: Request, parse: Callable[[bytes], Any] = parse_json_body) -> Any:
    """The request's JSON: as the routing wrappers below parsed it (its ``model`` respelled), or
    parsed now with ``parse``, which words a bad body in the route's dialect."""
    parsed = getattr(request.ctx, "json", None)
    return parsed if parsed is not None else parse(request.body)


def decompress_zstd_body(request: Request) -> None:
    """A ``Content-Encoding: zstd`` body replaced by its decompressed bytes, as Ollama's cloud
    middleware does before it reads the model name; the local handlers then read plain JSON.

    Read in pieces against the cap, so a small bomb never becomes a large body in memory.
    """
    if request.headers.get("content-encoding") != "zstd":
        return
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW_BYTES)
    pieces, size = [], 0
    try:
        with decompressor.stream_reader(request.body, read_across_frames=True) as reader:
            while piece := reader.read(_DECOMPRESS_READ_BYTES):
                size += len(piece)
                if size > MAX_DECOMPRESSED_BODY_BYTES:
                    raise ApiError(400, BODY_TOO_LARGE)
                pieces.append(piece)
    except zstandard.ZstdError:
        raise ApiError(400, DECOMPRESS_FAILED) from None
    request.body = b"".join(pieces)
    del request.headers["content-encoding"]


def _model_ref(request: Request) -> tuple[dict, ModelRef] | None:
    """The JSON object and its ``model``'s source, the object kept for :func:`request_json`; None
    where there is no model name to route by, leaving the handler to report what is wrong."""
    try:
        payload = parse_json_body(request.body)
    except ApiError:
        return None
    request.ctx.json = payload
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
        return None
    try:
        return payload, parse_ref(payload["model"])
    except ModelRefError as error:
        if str(error) == MODEL_REQUIRED:
            return None
        raise ApiError(400, str(error)) from None


def by_model_field(handler: Handler, disabled_operation: str = INFERENCE_UNAVAILABLE) -> Handler:
    """``handler`` for local names; a cloud name's request goes upstream with ``model`` = its base.

    ``x:local`` reaches ``handler`` as ``x``.
    """

    @functools.wraps(handler)
    async def route(request: Request, *args, **kwargs) -> HTTPResponse | None:
        decompress_zstd_body(request)
        routed = _model_ref(request)
        if routed is not None:
            payload, ref = routed
            # Kept for a remote model's route: ``x:local`` names no stub.
            request.ctx.model_ref = ref
            if ref.source is not ModelSource.UNSPECIFIED:
                payload["model"] = ref.base
                if ref.is_cloud:
                    body = dumps(payload).encode()
                    return await request.app.ctx.cloud.forward(request, request.path, body, disabled_operation)
        return await handler(request, *args, **kwargs)

    return route


def with_cloud_host(create: models_pb2.CreateModelRequest, settings: CloudSettings) -> None:
    """A create ``from`` a cloud name makes a stub served by the configured upstream unless the
    request names another ``remote_host``, as Ollama's create does with its cloud base URL."""
    try:
        from_cloud = parse_ref(getattr(create, "from")).is_cloud
    except ModelRefError:
        return  # core refuses the name
    if from_cloud and not create.remote_host:
        create.remote_host = settings.base_url


def remote_details_refused(shown: models_pb2.ShowModelResponse, settings: CloudSettings) -> ApiError | None:
    """Ollama's 403 for showing a remote model (a stub) while the cloud is disabled."""
    if shown.remote_host and settings.disabled:
        return ApiError(403, disabled_message(DETAILS_UNAVAILABLE))
    return None


def with_pull_name(handler: Handler) -> Handler:
    """Pull and delete see a cloud name in the registry's stub spelling (``x:8b:cloud`` →
    ``x:8b-cloud``) and ``x:local`` as ``x``, as Ollama normalises them."""

    @functools.wraps(handler)
    async def route(request: Request, *args, **kwargs) -> HTTPResponse | None:
        routed = _model_ref(request)
        if routed is not None:
            payload, ref = routed
            payload["model"] = normalize_pull_name(ref.original)
        return await handler(request, *args, **kwargs)

    return route


def by_model_path(handler: Handler) -> Handler:
    """``GET /v1/models/{name}``: a cloud name is asked of the upstream as ``/v1/models/{base}``."""

    @functools.wraps(handler)
    async def route(request: Request, model: str) -> HTTPResponse | None:
        try:
            ref = parse_ref(model)
        except ModelRefError:
            ref = None
        if ref is not None and ref.is_cloud:
            return await request.app.ctx.cloud.forward(request, f"/v1/models/{ref.base}", None, DETAILS_UNAVAILABLE)
        return await handler(request, model)

    return route


def _web_route(upstream_path: str, disabled_operation: str) -> Handler:
    async def route(request: Request) -> HTTPResponse | None:
        # The client's Authorization is never forwarded (the proxy sets its own); an empty body
        # is refused before anything is sent.
        if not request.body.strip():
            return json_response({"error": MISSING_BODY}, status=400)
        return await request.app.ctx.cloud.forward(request, upstream_path, request.body, disabled_operation)

    route.__name__ = "cloud_" + upstream_path.rsplit("/", 1)[-1]
    return route


async def local_anthropic_messages(request: Request) -> HTTPResponse:
    """``POST /v1/messages`` with a local model name. herd speaks Anthropic's Messages API only as a
    passthrough to the cloud; a local model is refused in that API's own error shape, so an
    Anthropic client shows the reason instead of failing to parse it."""
    payload = request_json(request)
    model = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(model, str) or not model:
        status, kind, message = 400, "invalid_request_error", MODEL_REQUIRED
    else:
        status, kind = 404, "not_found_error"
        message = (f"model {go_quote(model)} is local; herd serves /v1/messages for cloud models only "
                   "(use /api/chat or /v1/chat/completions)")
    return json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)


async def status(request: Request) -> HTTPResponse:
    settings: CloudSettings = request.app.ctx.cloud.settings
    return json_response({"cloud": {"disabled": settings.disabled, "source": settings.disabled_source}})


async def whoami(request: Request) -> HTTPResponse:
    """``POST /api/me``: the account the server's credential belongs to, asked of the upstream."""
    proxy: CloudProxy = request.app.ctx.cloud
    try:
        upstream = await proxy.call("POST", "/api/me")
    except Unauthorized:
        return proxy.unauthorized()
    except httpx.TransportError as error:
        log.warning("account_unavailable", error=repr(error))
        return json_response({"error": ACCOUNT_UNAVAILABLE}, status=503)
    if upstream.status_code == 401:
        return proxy.unauthorized()
    try:
        user = upstream.json() if upstream.status_code == 200 else None
    except ValueError:
        user = None
    if not isinstance(user, dict):
        log.warning("account_unavailable", status=upstream.status_code)
        return json_response({"error": ACCOUNT_UNAVAILABLE}, status=503)
    if not user.get("name"):
        return proxy.unauthorized()
    if not str(user.get("plan") or "").strip():
        user["plan"] = "free"
    return json_response(user)


async def signout(request: Request, encoded_key: str = "") -> HTTPResponse:
    """``POST /api/signout`` (and Ollama's older ``DELETE /api/user/keys/<key>``): unlinks this
    server's key from its account, asking the upstream to delete it."""
    proxy: CloudProxy = request.app.ctx.cloud
    try:
        encoded = encoded_public_key(load_key(proxy.settings.key_path))
        upstream = await proxy.call("DELETE", f"/api/user/keys/{encoded}")
    except (KeyUnavailable, Unauthorized):
        return json_response({"error": SIGNOUT_FAILED}, status=500)
    except httpx.TransportError as error:
        log.warning("signout_failed", error=repr(error))
        return json_response({"error": SIGNOUT_FAILED}, status=500)
    if upstream.status_code == 401:
        return json_response({"error": NOT_SIGNED_IN}, status=401)
    if upstream.status_code >= 400:
        log.warning("signout_failed", status=upstream.status_code)
        return json_response({"error": SIGNOUT_FAILED}, status=500)
    return json_response(None)


def install(app: Sanic, settings: CloudSettings, client_version: str) -> None:
    """The cloud proxy on ``app.ctx.cloud`` for the app's life, and the routes that only the cloud serves."""

    async def open_proxy(app: Sanic) -> None:
        app.ctx.cloud = CloudProxy(settings, client_version)
        log.info("cloud", disabled=settings.disabled, source=settings.disabled_source, upstream=settings.base_url,
                 credential="api_key" if settings.api_key else "ed25519")

    async def close_proxy(app: Sanic) -> None:
        await app.ctx.cloud.close()

    app.register_listener(open_proxy, "before_server_start")
    app.register_listener(close_proxy, "after_server_stop")
    blueprint = Blueprint("cloud")
    blueprint.add_route(_web_route("/api/web_search", WEB_SEARCH_UNAVAILABLE), "/api/experimental/web_search",
                        methods=["POST"])
    blueprint.add_route(_web_route("/api/web_fetch", WEB_FETCH_UNAVAILABLE), "/api/experimental/web_fetch",
                        methods=["POST"])
    blueprint.add_route(by_model_field(local_anthropic_messages), "/v1/messages", methods=["POST"])
    blueprint.add_route(status, "/api/status", methods=["GET"])
    blueprint.add_route(whoami, "/api/me", methods=["POST"])
    blueprint.add_route(signout, "/api/signout", methods=["POST"])
    blueprint.add_route(signout, "/api/user/keys/<encoded_key>", methods=["DELETE"], name="signout_by_key")
    app.blueprint(blueprint)
