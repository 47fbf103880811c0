"""structlog set-up shared by every herd process, and the request id they pass along.

One request id follows a request from the gateway through core into the runner: the gateway
binds it (``X-Request-Id``) and sends it as gRPC metadata ``x-request-id``; each server binds it
into structlog's context variables for the duration of the call.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

REQUEST_ID_METADATA = "x-request-id"


def configure_logging(process: str) -> None:
    """Logs go to stderr; ``HERD_LOG_FORMAT=json`` gives one JSON object per line."""
    level = logging.DEBUG if os.environ.get("OLLAMA_DEBUG", "").strip() not in ("", "0", "false") else logging.INFO
    renderer = (
        structlog.processors.JSONRenderer()
        if os.environ.get("HERD_LOG_FORMAT", "").lower() == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process)


def request_id_from_metadata(metadata) -> str:
    """The request id among gRPC invocation metadata, or ""."""
    for key, value in metadata or ():
        if key == REQUEST_ID_METADATA:
            return value
    return ""
