"""Request limits of the gateway: body size (413), header size and count (431), message count (400).

Ollama has none of these (Go's server caps headers at 1 MiB; bodies are read whole), so each
answer says plainly which limit was hit. Limits on what a body holds (prompt bytes, messages)
are core's, so that gRPC clients meet them too; the gateway checks the message count early as
well. JSON nesting is capped where bodies are parsed.
"""

from __future__ import annotations

from typing import Any, Callable

import structlog
from sanic import Request, Sanic
from sanic.exceptions import PayloadTooLarge, SanicException
from sanic.response import HTTPResponse

from herd.limits import too_many_messages
from herd.rest.errors import ApiError
from herd.rest.settings import GatewaySettings

log = structlog.get_logger(__name__)

# Go's net/http answers an oversized header itself, before any handler, in these words.
HEADERS_TOO_LARGE = "431 Request Header Fields Too Large"
# Sanic raises PayloadTooLarge for both; only its message tells a header from a body.
_SANIC_HEADER_TOO_LARGE = "Request header exceeds the size limit"


class HeadersTooLarge(SanicException):
    status_code = 431
    quiet = True


def body_too_large(limit: int) -> str:
    return f"request body too large: the limit is {limit} bytes"


def _headers_too_large_response() -> HTTPResponse:
    return HTTPResponse(HEADERS_TOO_LARGE, status=431, headers={"Connection": "close"}, content_type="text/plain; charset=utf-8")


def register_limits(
    app: Sanic, settings: GatewaySettings, respond: Callable[[Request, ApiError], HTTPResponse]
) -> None:
    """Sanic's own size limits set from ``settings``, a header count, and the answers they give.

    ``respond`` writes an error in the request's dialect (413 is answered once a route is known).
    """
    app.config.REQUEST_MAX_SIZE = settings.max_body_bytes
    app.config.REQUEST_MAX_HEADER_SIZE = settings.max_header_bytes

    # Right after the head is parsed, before any body is read or any route is looked up.
    async def count_headers(request: Request) -> None:
        if len(request.headers) > settings.max_headers:
            log.info("too_many_headers", count=len(request.headers), limit=settings.max_headers)
            raise HeadersTooLarge(HEADERS_TOO_LARGE)

    app.add_signal(count_headers, "http.lifecycle.request")

    async def share_message_limit(app: Sanic) -> None:
        app.ctx.max_messages = settings.max_messages

    app.register_listener(share_message_limit, "before_server_start")

    def too_large(request: Request, exception: PayloadTooLarge) -> HTTPResponse:
        if str(exception) == _SANIC_HEADER_TOO_LARGE:
            log.info("headers_too_large", limit=settings.max_header_bytes)
            return _headers_too_large_response()
        log.info("body_too_large", limit=settings.max_body_bytes)
        return respond(request, ApiError(413, body_too_large(settings.max_body_bytes)))

    app.error_handler.add(PayloadTooLarge, too_large)
    app.error_handler.add(HeadersTooLarge, lambda request, exception: _headers_too_large_response())


def check_message_count(request: Request, body: Any, field: str = "messages") -> None:
    """A list of messages longer than core takes is refused before it is type-checked and translated."""
    items = body.get(field) if isinstance(body, dict) else None
    limit = request.app.ctx.max_messages
    if isinstance(items, list) and len(items) > limit:
        raise ApiError(400, too_many_messages(len(items), limit))
