"""The request id: taken from the client when it is sane, made up otherwise.

It is bound into structlog's context for the request's logs, sent to core as gRPC metadata and
returned to the client in ``X-Request-Id``, so one id follows a request through every process.
"""

from __future__ import annotations

import re
import uuid

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_METADATA = "x-request-id"

# Short and plain, so a client cannot forge log lines or bloat every log entry with it.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_for(sent: str | None) -> str:
    """The client's id when it is at most 64 of ``[A-Za-z0-9._-]``, else a fresh uuid4 hex."""
    if sent is not None and _SANE_REQUEST_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


def grpc_metadata(request_id: str) -> tuple[tuple[str, str], ...]:
    """The metadata every call to core carries."""
    return ((REQUEST_ID_METADATA, request_id),)
