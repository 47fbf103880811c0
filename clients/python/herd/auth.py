"""The API key and TLS of herd's gRPC API: channels that send them, and the key comparison.

With ``HERD_API_KEY`` set, core wants metadata ``authorization: Bearer <key>`` on every call but
health checks; the gateway and these channels send it. With ``HERD_GRPC_TLS_CA`` (a PEM file of
the certificate authority that signed core's certificate) the channel speaks TLS.

    from herd.auth import open_channel
    from herd.v1 import models_pb2, models_pb2_grpc

    with open_channel("127.0.0.1:50051", api_key="s3cret") as channel:
        models_pb2_grpc.ModelsStub(channel).List(models_pb2.ListModelsRequest())
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import structlog

log = structlog.get_logger(__name__)

AUTHORIZATION_METADATA = "authorization"
DEFAULT_GRPC_HOST = "127.0.0.1:50051"


def bearer_matches(header: str | None, key: bytes) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <key>``, compared in constant time."""
    scheme, _, token = (header or "").partition(" ")
    # compare_digest takes as long for a wrong first byte as for a wrong last one.
    return hmac.compare_digest(token.strip().encode(), key) and scheme.lower() == "bearer"


def is_loopback_host(host: str) -> bool:
    """Whether a listen host is a loopback address (a name counts by what it resolves to first)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        pass
    try:
        first = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        return False
    return ipaddress.ip_address(first.partition("%")[0]).is_loopback


def warn_if_exposed(process: str, host: str, api_key: str) -> None:
    """Says loudly, in the log and as a plain stderr line, that a server off loopback has no key.

    Not a refusal: behind a firewall or a proxy that authenticates this is a sound set-up, and Ollama
    itself never asks for a key.
    """
    if api_key or is_loopback_host(host):
        return
    log.warning("listening_without_api_key", listen_host=host, hint="set HERD_API_KEY")
    print(
        f"WARNING: herd {process} listens on {host} without HERD_API_KEY: anyone who can reach it "
        "can run, pull and delete models. Set HERD_API_KEY or bind to 127.0.0.1.",
        file=sys.stderr,
        flush=True,
    )


def _with_key(details: Any, key: str) -> Any:
    return details._replace(metadata=(*(details.metadata or ()), (AUTHORIZATION_METADATA, f"Bearer {key}")))


class _BearerKey(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, key: str):
        self.key = key

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(_with_key(client_call_details, self.key), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(_with_key(client_call_details, self.key), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(_with_key(client_call_details, self.key), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(_with_key(client_call_details, self.key), request_iterator)


class _AioUnaryUnaryKey(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, key: str):
        self.key = key

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(_with_key(client_call_details, self.key), request)


class _AioUnaryStreamKey(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, key: str):
        self.key = key

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(_with_key(client_call_details, self.key), request)


class _AioStreamUnaryKey(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, key: str):
        self.key = key

    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(_with_key(client_call_details, self.key), request_iterator)


class _AioStreamStreamKey(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, key: str):
        self.key = key

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(_with_key(client_call_details, self.key), request_iterator)


# grpc.aio files an interceptor under the first kind it is an instance of, so each kind has its own.
_AIO_KEY_INTERCEPTORS = (_AioUnaryUnaryKey, _AioUnaryStreamKey, _AioStreamUnaryKey, _AioStreamStreamKey)


def _tls_credentials(tls_ca: str) -> grpc.ChannelCredentials:
    with open(tls_ca, "rb") as pem:
        return grpc.ssl_channel_credentials(root_certificates=pem.read())


def open_channel(address: str, *, api_key: str = "", tls_ca: str = "", options: Sequence = ()) -> grpc.Channel:
    """A blocking channel to core that sends ``api_key`` and, with ``tls_ca``, speaks TLS."""
    if tls_ca:
        channel = grpc.secure_channel(address, _tls_credentials(tls_ca), options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    return grpc.intercept_channel(channel, _BearerKey(api_key)) if api_key else channel


def open_aio_channel(address: str, *, api_key: str = "", tls_ca: str = "", options: Sequence = ()) -> grpc.aio.Channel:
    """An asyncio channel to core that sends ``api_key`` and, with ``tls_ca``, speaks TLS."""
    interceptors = [kind(api_key) for kind in _AIO_KEY_INTERCEPTORS] if api_key else None
    if tls_ca:
        return grpc.aio.secure_channel(address, _tls_credentials(tls_ca), options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)


def channel_from_env(environ: Mapping[str, str] = os.environ, options: Sequence = ()) -> grpc.Channel:
    """A blocking channel to ``HERD_GRPC_HOST`` with ``HERD_API_KEY`` and ``HERD_GRPC_TLS_CA``."""

    def value(name: str) -> str:
        return environ.get(name, "").strip().strip("\"'")

    return open_channel(
        value("HERD_GRPC_HOST") or DEFAULT_GRPC_HOST,
        api_key=value("HERD_API_KEY"),
        tls_ca=value("HERD_GRPC_TLS_CA"),
        options=options,
    )
