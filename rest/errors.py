"""The one table from gRPC status to HTTP status, and the Ollama error body.

Every error the gateway answers with is an :class:`ApiError`: a status and a message written for
the person who sent the request. Core's details are passed on as they are (core promises they hold
no paths or tracebacks); the few codes whose details come from the gRPC library rather than from
core get a fixed message instead, so transport noise never reaches a client.
"""

from __future__ import annotations

import json
from typing import Callable

import grpc
import structlog
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from herd.modelref import REMOTE_MODEL_METADATA

log = structlog.get_logger(__name__)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

# Ollama answers a request its client abandoned with nginx's non-standard 499.
CLIENT_CLOSED_REQUEST = 499

HTTP_STATUS_FOR_GRPC = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
    grpc.StatusCode.CANCELLED: CLIENT_CLOSED_REQUEST,
    grpc.StatusCode.UNAVAILABLE: 503,
}

CORE_UNAVAILABLE = "herd core is unavailable, please try again"
REQUEST_CANCELED = "request canceled"
UNEXPECTED_CORE_ERROR = "unexpected error in herd core"


class ApiError(Exception):
    """An error answered to the client as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class RemoteModelCall(ApiError):
    """Core's answer to a generate or chat on a remote model (a stub): the gateway forwards the
    request to the stub's host, where the native routes do."""


def http_status_for(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC status code; anything not in the table is a 500."""
    return HTTP_STATUS_FOR_GRPC.get(code, 500)


def error_from_rpc(error: grpc.aio.AioRpcError, not_found: str | None = None) -> ApiError:
    """The client-facing error for a failed call.

    ``not_found`` replaces core's NOT_FOUND details where the endpoint's Ollama wording differs
    (generate and chat echo the name as sent; embed adds ``try pulling it first``).
    """
    code = error.code()
    details = error.details() or ""
    status = http_status_for(code)
    if code == grpc.StatusCode.FAILED_PRECONDITION and _names_remote_model(error):
        return RemoteModelCall(status, details)
    if code == grpc.StatusCode.NOT_FOUND and not_found is not None:
        message = not_found
    elif code == grpc.StatusCode.UNAVAILABLE:
        # The details are the channel's connection error (addresses, errno text).
        log.warning("core_unavailable", details=details)
        message = CORE_UNAVAILABLE
    elif code == grpc.StatusCode.CANCELLED:
        message = REQUEST_CANCELED
    elif code == grpc.StatusCode.UNKNOWN:
        # UNKNOWN is what grpc reports for an exception core did not map; its text is not for clients.
        log.error("core_unknown_error", details=details)
        message = UNEXPECTED_CORE_ERROR
    else:
        message = details or code.name.lower().replace("_", " ")
    return ApiError(status, message)


def _names_remote_model(error: grpc.aio.AioRpcError) -> bool:
    return any(key == REMOTE_MODEL_METADATA for key, _ in error.trailing_metadata() or ())


# Built once: json.dumps with arguments builds an encoder per call, and this runs once per token.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(obj: object) -> str:
    """Compact JSON as Ollama writes it, UTF-8 kept as is."""
    return _COMPACT_JSON.encode(obj)


def json_response(obj: object, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    """A JSON body with Go's ``application/json; charset=utf-8``."""
    return HTTPResponse(dumps(obj), status=status, headers=headers, content_type=JSON_CONTENT_TYPE)


def error_response(error: ApiError) -> HTTPResponse:
    """Ollama's error body ``{"error": "..."}``."""
    return json_response({"error": error.message}, status=error.status)


def exception_handlers(respond: Callable[[ApiError], HTTPResponse]) -> list[tuple[type[Exception], Callable]]:
    """The handlers every dialect needs, answering in the body ``respond`` writes.

    An ApiError as it is; Sanic's own refusals (body too large, request timeout) with their status
    and their plain, path-free message; anything unexpected as a 500 whose details stay in the log.
    """

    def api_error(request, exception: ApiError) -> HTTPResponse:
        return respond(exception)

    def sanic_error(request, exception: SanicException) -> HTTPResponse:
        return respond(ApiError(exception.status_code, str(exception)))

    def unexpected_error(request, exception: Exception) -> HTTPResponse:
        log.exception("request_failed", path=request.path, exc_info=exception)
        return respond(ApiError(500, "internal server error"))

    return [(ApiError, api_error), (SanicException, sanic_error), (Exception, unexpected_error)]
