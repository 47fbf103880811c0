"""Core's side of ``HERD_API_KEY``: every call but health checks wants ``authorization: Bearer <key>``."""

from __future__ import annotations

import grpc
import structlog

from herd.auth import AUTHORIZATION_METADATA, bearer_matches

log = structlog.get_logger(__name__)

# Load balancers and `herd serve` probe health without a key.
OPEN_SERVICE_PREFIX = "/grpc.health.v1.Health/"
UNAUTHENTICATED_MESSAGE = "unauthorized"


async def _refuse(request, context) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    # Same arity as the method, and no deserializer: an unauthenticated body is never parsed.
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_refuse)
    return grpc.unary_unary_rpc_method_handler(_refuse)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without the key with UNAUTHENTICATED; the comparison takes constant time."""

    def __init__(self, api_key: str):
        self.key = api_key.encode()

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_SERVICE_PREFIX):
            return handler
        sent = [value for key, value in handler_call_details.invocation_metadata or () if key == AUTHORIZATION_METADATA]
        if len(sent) == 1 and isinstance(sent[0], str) and bearer_matches(sent[0], self.key):
            return handler
        log.info("unauthenticated", method=handler_call_details.method)
        return _refusal(handler)
