"""A fake core (a grpc.aio server speaking herd.v1) and the real gateway app in front of it.

``gateway(core)`` starts both on free ports in the running event loop and yields an httpx client
for the app, as a client would call it; ``run`` runs one such scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

import grpc
import httpx
from sanic import Sanic

from herd.rest.app import create_app
from herd.rest.settings import GatewaySettings
from herd.v1 import inference_pb2_grpc, models_pb2_grpc


@dataclass
class Abort:
    code: grpc.StatusCode
    details: str


class Hold:
    """Keep the stream open until the client goes away."""


class FakeCore(inference_pb2_grpc.InferenceServicer, models_pb2_grpc.ModelsServicer):
    """Answers from scripts set by each test; records requests, metadata and cancellation."""

    def __init__(self) -> None:
        self.stream_script: list = []
        self.unary_answers: dict[str, object] = {}
        self.calls: list[tuple[str, object]] = []
        self.request_ids: list[str] = []
        self.cancelled = asyncio.Event()

    def _record(self, method: str, request, context) -> None:
        self.calls.append((method, request))
        self.request_ids += [value for key, value in context.invocation_metadata() if key == "x-request-id"]

    async def _stream(self, method, request, context):
        self._record(method, request, context)
        for item in self.stream_script:
            if isinstance(item, Abort):
                await context.abort(item.code, item.details)
            elif isinstance(item, Hold):
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    self.cancelled.set()
                    raise
            else:
                item.created_at.GetCurrentTime()
                yield item

    async def _unary(self, method, request, context):
        self._record(method, request, context)
        answer = self.unary_answers[method]
        if isinstance(answer, Abort):
            await context.abort(answer.code, answer.details)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def Generate(self, request, context):
        async for message in self._stream("Generate", request, context):
            yield message

    async def Chat(self, request, context):
        async for message in self._stream("Chat", request, context):
            yield message

    async def Embed(self, request, context):
        return await self._unary("Embed", request, context)

    async def List(self, request, context):
        return await self._unary("List", request, context)

    async def Show(self, request, context):
        return await self._unary("Show", request, context)

    async def ListRunning(self, request, context):
        return await self._unary("ListRunning", request, context)

    async def Stats(self, request, context):
        return await self._unary("Stats", request, context)


def _free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def gateway(
    core: FakeCore, *, core_address: str | None = None, inject_channel: bool = False, api_key: str = "", **settings
):
    server = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServicer_to_server(core, server)
    models_pb2_grpc.add_ModelsServicer_to_server(core, server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    address = core_address or f"127.0.0.1:{grpc_port}"
    channel = grpc.aio.insecure_channel(address) if inject_channel else None
    app = create_app(GatewaySettings(core_address=address, version="1.2.3", api_key=api_key, **settings), channel=channel)
    # Sanic's TouchUp rewrites its own classes once per process; a second app in one process trips on it.
    app.config.TOUCHUP = False
    sock = _free_socket()
    http = await app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
    await http.startup()
    await http.before_start()
    await http.after_start()
    await http.start_serving()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=10) as client:
            yield client
    finally:
        await http.before_stop()
        http.close()
        await http.wait_closed()
        await http.after_stop()
        if channel is not None:
            await channel.close()
        await server.stop(None)
        Sanic.unregister_app(app)


def run(scenario) -> None:
    asyncio.run(scenario())
