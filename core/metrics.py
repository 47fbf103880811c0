"""Core's own Prometheus exporter: the scheduler's queue, loaded models and runner restarts.

Off unless ``HERD_METRICS_HOST`` names an address. prometheus_client serves it from a thread of
its own; each scrape reads the scheduler on core's event loop, which owns that state.
"""

from __future__ import annotations

import asyncio
from typing import Iterator

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric

from herd.core.scheduler import Scheduler
from herd.core.servicers import scheduler_stats
from herd.metrics import core_metric_families

log = structlog.get_logger(__name__)

# A scrape that cannot read the scheduler in this long fails rather than piling up threads.
_SCRAPE_TIMEOUT_S = 5.0


class SchedulerCollector:
    def __init__(self, scheduler: Scheduler, loop: asyncio.AbstractEventLoop):
        self._scheduler = scheduler
        self._loop = loop

    async def _stats(self):
        return scheduler_stats(self._scheduler)

    def collect(self) -> Iterator[Metric]:
        stats = asyncio.run_coroutine_threadsafe(self._stats(), self._loop).result(_SCRAPE_TIMEOUT_S)
        yield from core_metric_families(stats)


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a host and a port; ValueError when it is neither."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not a host:port address: {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsExporter:
    """Serves ``/metrics`` for ``scheduler`` on ``address`` until stopped."""

    def __init__(self, scheduler: Scheduler, address: str):
        self._scheduler = scheduler
        self._address = address
        self._httpd = None
        self.port = 0

    def start(self) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SchedulerCollector(self._scheduler, asyncio.get_running_loop()))
        try:
            host, port = split_address(self._address)
            self._httpd, _ = start_http_server(port, host, registry=registry)
        except (ValueError, OSError) as error:
            raise SystemExit(f"cannot serve metrics on {self._address}: {error}") from None
        self.port = self._httpd.server_port
        log.info("metrics_serving", host=host, port=self.port)

    async def stop(self) -> None:
        if self._httpd is not None:
            # shutdown() waits for a scrape in progress, which may be waiting for this loop.
            await asyncio.to_thread(self._httpd.shutdown)
            self._httpd.server_close()
