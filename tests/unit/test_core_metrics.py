"""Core's Prometheus exporter over a scheduler on a scripted runner factory (no llama.cpp)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import httpx
import pytest

from herd.core.metrics import MetricsExporter, split_address
from herd.core.settings import CoreSettings
from herd.core.store.store import ModelDetails
from tests.prometheus import labels, samples
from tests.unit.test_scheduler import FakeModel, runner_opts, scheduler


@dataclass
class DescribedModel(FakeModel):
    def details(self) -> ModelDetails:
        return ModelDetails(parent_model="", format="gguf", family="llama", families=("llama",),
                            parameter_size="135M", quantization_level="Q8_0")


@pytest.mark.parametrize(
    ("address", "split"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), (":9464", ("0.0.0.0", 9464)), ("[::1]:0", ("::1", 0))],
)
def test_addresses(address, split):
    assert split_address(address) == split


@pytest.mark.parametrize("address", ["9464", "host:", "host:http", "host:70000"])
def test_bad_addresses(address):
    with pytest.raises(ValueError):
        split_address(address)


def test_a_bad_address_stops_core_with_a_message():
    async def start():
        MetricsExporter(scheduler()[0], "nowhere").start()

    with pytest.raises(SystemExit, match="cannot serve metrics on nowhere"):
        asyncio.run(start())


def test_settings_read_herd_metrics_host():
    assert CoreSettings.from_env({"HERD_METRICS_HOST": " '127.0.0.1:9464' "}).metrics_address == "127.0.0.1:9464"
    assert CoreSettings.from_env({}).metrics_address == ""


@pytest.mark.anyio
async def test_the_exporter_reports_queue_loaded_models_and_restarts_as_they_are_now():
    sched, factory = scheduler(max_queue=5)
    model = DescribedModel()
    exporter = MetricsExporter(sched, "127.0.0.1:0")
    exporter.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{exporter.port}") as client:
            await sched.load(model, runner_opts(), None)
            factory.started[-1].alive = False
            await sched.load(model, runner_opts(), None)
            async with contextlib.AsyncExitStack() as held:
                # The fake runner has one slot: the second and third leases wait.
                for _ in range(3):
                    await held.enter_async_context(sched.lease(model, runner_opts(), None))
                response = await client.get("/metrics")
            scrape = samples(response.text)
            after = samples((await client.get("/metrics")).text)
    finally:
        await exporter.stop()
    assert scrape[("herd_queued_requests", frozenset())] == 2
    assert scrape[("herd_loaded_models", frozenset())] == 1
    assert scrape[("herd_runner_restarts_total", labels(model="m:latest"))] == 1
    assert after[("herd_queued_requests", frozenset())] == 0
