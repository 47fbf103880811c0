"""Starts, watches and stops runner processes; core's side of the runner protocol.

A runner is ``python -m herd.core.runner.service`` on a unix socket in a private directory.
Its stdin is a pipe held by core, so a runner never outlives the core that started it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import grpc
import structlog

from herd.core.errors import InvalidRequest, RunnerFailed
from herd.core.options import RunnerOptions
from herd.logs import REQUEST_ID_METADATA
from herd.runner.v1 import runner_pb2, runner_pb2_grpc

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunnerSpec:
    """Everything a runner is started with."""

    model_path: Path
    options: RunnerOptions  # num_ctx already settled for the model
    n_parallel: int
    adapter_paths: tuple[Path, ...] = ()
    projector_paths: tuple[Path, ...] = ()  # as llama.cpp's server, the runner loads the first


class Runner:
    """A started runner: a process, a channel to it, and what it reported when ready."""

    def __init__(self, spec: RunnerSpec, process: asyncio.subprocess.Process, socket_dir: str):
        self.spec = spec
        self.process = process
        self._socket_dir = socket_dir
        self.channel = grpc.aio.insecure_channel(f"unix://{socket_dir}/runner.sock")
        self.stub = runner_pb2_grpc.RunnerStub(self.channel)
        self.info = runner_pb2.InfoResponse()

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive:
                raise RunnerFailed(f"llama runner process has terminated: exit status {self.process.returncode}")
            try:
                self.info = await self.stub.Info(runner_pb2.InfoRequest(), timeout=1.0, wait_for_ready=True)
                return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise RunnerFailed("timed out waiting for llama runner to start") from None
                await asyncio.sleep(0.05)

    async def generate(self, request: runner_pb2.GenerateRequest, request_id: str) -> AsyncIterator[runner_pb2.GenerateResponse]:
        call = self.stub.Generate(request, metadata=((REQUEST_ID_METADATA, request_id),))
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        finally:
            call.cancel()

    async def embed(self, request: runner_pb2.EmbedRequest, request_id: str) -> runner_pb2.EmbedResponse:
        try:
            return await self.stub.Embed(request, metadata=((REQUEST_ID_METADATA, request_id),))
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: grpc.aio.AioRpcError) -> Exception:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidRequest(exc.details())
        if not self.alive or exc.code() == grpc.StatusCode.UNAVAILABLE:
            return RunnerFailed("llama runner process no longer running")
        return RunnerFailed(exc.details() or "llama runner failed")

    async def stop(self) -> None:
        await self.channel.close()
        if self.alive:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=5)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        for name in os.listdir(self._socket_dir):
            os.unlink(os.path.join(self._socket_dir, name))
        os.rmdir(self._socket_dir)


async def start_runner(
    spec: RunnerSpec, load_timeout_s: float, stream_interval_ms: float = 0.0, runtime_dir: Path | None = None
) -> Runner:
    """Spawns a runner for ``spec`` and waits until its model is loaded."""
    socket_dir = tempfile.mkdtemp(prefix="herd-runner-", dir=runtime_dir)
    opts = spec.options
    # The runner's EngineConfig, by field name (core never imports the engine, which loads llama.cpp).
    engine = {
        "model_path": str(spec.model_path),
        "lora_paths": [str(path) for path in spec.adapter_paths],
        "projector_path": str(spec.projector_paths[0]) if spec.projector_paths else "",
        "n_ctx": opts.num_ctx,
        "n_parallel": spec.n_parallel,
        "n_batch": opts.num_batch,
        "n_threads": opts.num_thread,
        "n_gpu_layers": opts.num_gpu,
        "main_gpu": opts.main_gpu,
        "use_mmap": opts.use_mmap,
    }
    args = [
        sys.executable, "-m", "herd.core.runner.service",
        "--socket", f"{socket_dir}/runner.sock",
        "--engine", json.dumps(engine),
        "--stream-interval-ms", str(stream_interval_ms),
    ]
    process = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE)
    runner = Runner(spec, process, socket_dir)
    try:
        await runner.wait_ready(load_timeout_s)
    except BaseException:
        await runner.stop()
        raise
    log.info("runner_started", pid=process.pid, n_ctx=runner.info.n_ctx, load_ns=runner.info.load_duration_ns)
    return runner
