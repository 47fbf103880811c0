"""NDJSON and SSE streaming of a server-streaming gRPC call, with Ollama's error rules.

Before the first byte an error is a normal response with its status; after it, one
``{"error": ...}`` line (or SSE event) ends the stream and the status stays 200. A reader task
moves messages from the call into a queue, so messages that arrived while the client was slow to
read go out in one write. Whatever ends the handler (the client leaving makes Sanic cancel it) cancels the
gRPC call, and with it the generation in core.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import grpc
import structlog
from sanic import Request

from herd.rest.errors import ApiError, dumps, error_from_rpc

log = structlog.get_logger(__name__)

NDJSON_CONTENT_TYPE = "application/x-ndjson"
SSE_CONTENT_TYPE = "text/event-stream"
EMPTY_STREAM = "herd core ended the stream without a response"

# Marks the end of a call that finished cleanly.
_END = object()

Observer = Callable[[Any], None]


def unobserved(message: Any) -> None:
    """The observer of a stream nobody measures."""


async def _forward(
    call: grpc.aio.UnaryStreamCall, queue: asyncio.Queue, not_found: str | None, observe: Observer
) -> None:
    """Moves every message of ``call`` into ``queue``, then ``_END`` or the call's ApiError."""
    try:
        async for message in call:
            observe(message)
            queue.put_nowait(message)
    except grpc.aio.AioRpcError as error:
        queue.put_nowait(error_from_rpc(error, not_found))
    except Exception:  # the writer must always learn that the stream is over
        log.exception("stream_read_failed")
        queue.put_nowait(ApiError(500, "internal error"))
    else:
        queue.put_nowait(_END)


def _line(chunk: dict) -> str:
    return dumps(chunk) + "\n"


async def stream_ndjson(
    request: Request,
    call: grpc.aio.UnaryStreamCall,
    to_chunk: Callable[[Any], dict],
    not_found: str | None = None,
    observe: Observer = unobserved,
) -> None:
    """Streams ``call`` to the client as NDJSON, one ``to_chunk(message)`` per line; ``observe``
    sees each message as it arrives.

    Raises :class:`ApiError` when the call fails before its first message.
    """
    await _stream(
        request,
        call,
        NDJSON_CONTENT_TYPE,
        lambda message: _line(to_chunk(message)),
        lambda error: _line({"error": error.message}),
        not_found,
        observe,
    )


async def stream_sse(
    request: Request,
    call: grpc.aio.UnaryStreamCall,
    to_events: Callable[[Any], str],
    to_error_event: Callable[[ApiError], str],
    not_found: str | None = None,
    observe: Observer = unobserved,
) -> None:
    """Streams ``call`` as server-sent events, ``to_events(message)`` being the text of a message's
    events (none, one or several); a failure after the first byte is ``to_error_event(error)``, and
    the end of the stream.

    Raises :class:`ApiError` when the call fails before its first message.
    """
    await _stream(request, call, SSE_CONTENT_TYPE, to_events, to_error_event, not_found, observe)


async def _stream(
    request: Request,
    call: grpc.aio.UnaryStreamCall,
    content_type: str,
    encode: Callable[[Any], str],
    encode_error: Callable[[ApiError], str],
    not_found: str | None,
    observe: Observer,
) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    reader = asyncio.create_task(_forward(call, queue, not_found, observe))
    try:
        first = await queue.get()
        if first is _END:
            raise ApiError(500, EMPTY_STREAM)
        if isinstance(first, ApiError):
            raise first
        response = await request.respond(content_type=content_type)
        ready = [first]
        while True:
            while not queue.empty():
                ready.append(queue.get_nowait())
            parts = []
            finished = False
            for item in ready:
                if item is _END:
                    finished = True
                    break
                if isinstance(item, ApiError):
                    log.info("stream_failed", status=item.status, error=item.message)
                    parts.append(encode_error(item))
                    finished = True
                    break
                parts.append(encode(item))
            text = "".join(parts)
            if text:
                await response.send(text)
            if finished:
                break
            ready = [await queue.get()]
        await response.eof()
    finally:
        reader.cancel()
        call.cancel()


async def drain(call: grpc.aio.UnaryStreamCall, not_found: str | None = None, observe: Observer = unobserved) -> list:
    """Every message of a streaming call, for ``stream:false``; :class:`ApiError` if it fails."""
    messages = []
    try:
        async for message in call:
            observe(message)
            messages.append(message)
    except grpc.aio.AioRpcError as error:
        raise error_from_rpc(error, not_found) from None
    finally:
        call.cancel()
    if not messages:
        raise ApiError(500, EMPTY_STREAM)
    return messages


async def unary(call: grpc.aio.UnaryUnaryCall, not_found: str | None = None) -> Any:
    """The response of a unary call; :class:`ApiError` if it fails; cancelled if we are."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise error_from_rpc(error, not_found) from None
    finally:
        call.cancel()
