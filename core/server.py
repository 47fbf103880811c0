"""The core process: herd.v1 services on grpc.aio, with health checking and reflection."""

from __future__ import annotations

import asyncio
import signal
from functools import partial

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from herd.auth import warn_if_exposed
from herd.core.auth import ApiKeyInterceptor
from herd.core.inference import Inference
from herd.core.limits import RequestLimits
from herd.core.metrics import MetricsExporter
from herd.core.models import ModelCatalog
from herd.core.runner.process import start_runner
from herd.core.scheduler import Scheduler
from herd.core.servicers import InferenceServicer, ModelsServicer
from herd.core.settings import PRUNE_GRACE_S, CoreSettings
from herd.core.store.bundled import import_bundled_models
from herd.core.store.store import ModelStore
from herd.logs import configure_logging
from herd.v1 import inference_pb2, inference_pb2_grpc, models_pb2, models_pb2_grpc

log = structlog.get_logger(__name__)

SERVICE_NAMES = (
    inference_pb2.DESCRIPTOR.services_by_name["Inference"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["Models"].full_name,
)


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """gRPC limits of the public server: message size, and keepalive pings it tolerates."""
    return [
        # Bigger messages are refused with RESOURCE_EXHAUSTED before a handler sees them.
        ("grpc.max_receive_message_length", max_message_bytes),
        # gRPC's defaults, stated because they are a defence: a client pinging more often than every
        # 5 minutes without data gets two strikes, then GOAWAY (too_many_pings); the server carries on.
        ("grpc.http2.min_ping_interval_without_data_ms", 5 * 60 * 1000),
        ("grpc.http2.max_ping_strikes", 2),
    ]


class CoreServer:
    """Owns the store, the scheduler and the gRPC server of one core process."""

    def __init__(self, settings: CoreSettings):
        self.settings = settings
        self.store = ModelStore(settings.models_dir, remove_replaced_layers=settings.prune)
        self.catalog = ModelCatalog(self.store)
        runner_factory = partial(
            start_runner,
            load_timeout_s=settings.load_timeout_ns / 1e9,
            stream_interval_ms=settings.stream_interval_ms,
            runtime_dir=settings.runtime_dir,
        )
        self.scheduler = Scheduler(runner_factory, settings)
        self.server = grpc.aio.server(
            options=server_options(settings.grpc_max_message_bytes),
            interceptors=[ApiKeyInterceptor(settings.api_key)] if settings.api_key else None,
        )
        self.health = health.aio.HealthServicer()
        self.metrics = MetricsExporter(self.scheduler, settings.metrics_address) if settings.metrics_address else None
        self.port = 0

    async def start(self) -> None:
        if self.settings.import_bundled and self.store.is_empty():
            imported = await asyncio.to_thread(import_bundled_models, self.store)
            log.info("bundled_models_imported", models=imported)
        if self.settings.prune:
            await asyncio.to_thread(self.store.prune, PRUNE_GRACE_S)
        inference_pb2_grpc.add_InferenceServicer_to_server(
            InferenceServicer(Inference(self.catalog, self.scheduler), RequestLimits.from_settings(self.settings)),
            self.server,
        )
        models_pb2_grpc.add_ModelsServicer_to_server(ModelsServicer(self.catalog, self.scheduler), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        self.port = self._add_port()
        if not self.port:
            raise SystemExit(f"cannot listen on {self.settings.grpc_address}")
        address = self.settings.grpc_address
        # A unix socket is as private as loopback.
        listen_host = "localhost" if address.startswith("unix:") else address.rpartition(":")[0]
        warn_if_exposed("core", listen_host, self.settings.api_key)
        await self.server.start()
        for name in (*SERVICE_NAMES, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.metrics is not None:
            self.metrics.start()
        log.info("core_serving", address=self.settings.grpc_address, port=self.port)

    def _add_port(self) -> int:
        settings = self.settings
        if not settings.tls_cert and not settings.tls_key:
            return self.server.add_insecure_port(settings.grpc_address)
        if not (settings.tls_cert and settings.tls_key):
            raise SystemExit("HERD_GRPC_TLS_CERT and HERD_GRPC_TLS_KEY must be set together")
        try:
            with open(settings.tls_cert, "rb") as cert, open(settings.tls_key, "rb") as key:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        except OSError as error:
            raise SystemExit(f"cannot read the TLS certificate or key: {error}") from None
        log.info("grpc_tls", cert=settings.tls_cert)
        return self.server.add_secure_port(settings.grpc_address, credentials)

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace=2)
        if self.metrics is not None:
            await self.metrics.stop()
        await self.scheduler.close()


async def serve(settings: CoreSettings) -> None:
    core = CoreServer(settings)
    await core.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("core_stopping")
    await core.stop()


def main() -> None:
    configure_logging("core")
    asyncio.run(serve(CoreSettings.from_env()))


if __name__ == "__main__":
    main()
