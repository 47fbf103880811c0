"""Domain errors and the one table that maps them to gRPC status codes.

Messages are written for the person who sent the request: no paths, no OS errors, no
tracebacks. The gateway turns the status into the HTTP dialect's error.
"""

from __future__ import annotations

import errno

import grpc

from herd.core.store.create import CreateError
from herd.core.store.manifest import CorruptManifest, InvalidDigest
from herd.core.store.names import InvalidModelName
from herd.core.store.registry import RegistryError
from herd.core.store.store import CorruptModel, DigestMismatch, ModelNotFound
from herd.core.templates.gotemplate import TemplateError
from herd.modelref import REMOTE_MODEL_METADATA


class InvalidRequest(ValueError):
    """The request's arguments are wrong."""


class CapabilityMissing(Exception):
    """The model cannot do what was asked, e.g. ``"gemma3:270m-pt" does not support tools``."""


class RemoteModel(Exception):
    """The model is a stub: its remote host answers its requests, not this core."""

    def __init__(self, name: str) -> None:
        super().__init__(f'"{name}" is a remote model: its remote host serves it')
        self.name = name


class RunnerFailed(Exception):
    """The runner could not load the model or died while serving it."""


class ServerBusy(Exception):
    """Too many requests are waiting."""

    def __str__(self) -> str:
        return "server busy, please try again.  maximum pending requests exceeded"


# gRPC sends the message percent-encoded in a trailer, and a call whose metadata passes 8 KiB breaks
# instead of failing with its status: 512 characters stay below that even at 12 bytes each.
_MAX_MESSAGE_CHARS = 512


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message for a domain error; a message that echoes a huge input is cut short."""
    code, message = _status_and_message(exc)
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 1] + "…"
    return code, message


def trailers_for(exc: BaseException) -> tuple[tuple[str, str], ...]:
    """Trailing metadata that tells a gateway what the status alone cannot: a remote model's
    request is the gateway's to forward."""
    if isinstance(exc, RemoteModel):
        return ((REMOTE_MODEL_METADATA, exc.name),)
    return ()


def _status_and_message(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ModelNotFound):
        return grpc.StatusCode.NOT_FOUND, f"model '{exc.name}' not found"
    if isinstance(exc, InvalidModelName):
        return grpc.StatusCode.INVALID_ARGUMENT, "invalid model name"
    if isinstance(exc, InvalidDigest):
        return grpc.StatusCode.INVALID_ARGUMENT, "invalid digest format"
    if isinstance(exc, (InvalidRequest, CreateError, DigestMismatch)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, (CapabilityMissing, RemoteModel)):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, ServerBusy):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, TemplateError):
        return grpc.StatusCode.INTERNAL, f"template error: {exc}"
    if isinstance(exc, (RunnerFailed, RegistryError, CorruptModel)):
        return grpc.StatusCode.INTERNAL, str(exc)
    if isinstance(exc, CorruptManifest):
        return grpc.StatusCode.INTERNAL, f"model manifest is corrupt: {exc}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # The OS error's text names the file; only its meaning is the client's business.
        return grpc.StatusCode.INTERNAL, "no space left on device"
    return grpc.StatusCode.INTERNAL, "internal error"
