"""The scheduler's lifecycle rules, on a scripted runner factory (no llama.cpp)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from herd.core.errors import ServerBusy
from herd.core.options import resolve
from herd.core.scheduler import Scheduler
from herd.core.settings import CoreSettings
from herd.runner.v1 import runner_pb2


@dataclass
class FakeModel:
    short_name: str = "m:latest"
    digest: str = "d1"
    model_path: Path = Path("/nonexistent/model.gguf")
    context_length: int | None = 8192
    adapter_paths: list[Path] = field(default_factory=list)
    projector_paths: list[Path] = field(default_factory=list)


@dataclass
class FakeRunner:
    spec: object
    alive: bool = True
    stopped: bool = False
    info: runner_pb2.InfoResponse = field(default_factory=lambda: runner_pb2.InfoResponse(n_ctx=4096))

    async def stop(self) -> None:
        self.stopped = True
        self.alive = False


class Factory:
    def __init__(self):
        self.started: list[FakeRunner] = []

    async def __call__(self, spec):
        runner = FakeRunner(spec)
        self.started.append(runner)
        return runner


GIB = 1 << 30


def scheduler(memory: int = 64 * GIB, need: int = GIB, **settings) -> tuple[Scheduler, Factory]:
    """A scheduler whose machine has ``memory`` free and whose models each need ``need``."""
    factory = Factory()
    return Scheduler(factory, CoreSettings(**settings), memory_available=lambda: memory,
                     estimate=lambda model, spec: need, choose_parallel=lambda model, num_ctx: 4), factory


def runner_opts(**options):
    return resolve({}, None).runner if not options else resolve(options, None).runner


@pytest.mark.anyio
async def test_one_runner_serves_concurrent_requests_and_stays_for_keep_alive():
    sched, factory = scheduler()
    model = FakeModel()
    async with sched.lease(model, runner_opts(), None), sched.lease(model, runner_opts(), None):
        pass
    assert len(factory.started) == 1
    [loaded] = sched.running()
    assert loaded.expires_at is not None and not factory.started[0].stopped


@pytest.mark.anyio
async def test_keep_alive_zero_unloads_after_the_request():
    sched, factory = scheduler()
    async with sched.lease(FakeModel(), runner_opts(), 0):
        assert sched.is_loaded("m:latest")
    await asyncio.sleep(0.05)
    assert not sched.is_loaded("m:latest") and factory.started[0].stopped


@pytest.mark.anyio
async def test_keep_alive_expiry_unloads_an_idle_model():
    sched, factory = scheduler()
    await sched.load(FakeModel(), runner_opts(), 50_000_000)  # 50 ms
    assert sched.is_loaded("m:latest")
    await asyncio.sleep(0.2)
    assert not sched.is_loaded("m:latest")


@pytest.mark.anyio
async def test_negative_keep_alive_never_expires():
    sched, _ = scheduler()
    await sched.load(FakeModel(), runner_opts(), -1)
    [loaded] = sched.running()
    assert loaded.expires_at is None


@pytest.mark.anyio
async def test_changing_a_runner_option_reloads_after_in_flight_requests_finish():
    sched, factory = scheduler()
    model = FakeModel()
    order = []

    async def first():
        async with sched.lease(model, runner_opts(), None):
            await asyncio.sleep(0.05)
            order.append("first done")

    async def second():
        await asyncio.sleep(0.01)
        async with sched.lease(model, runner_opts(num_ctx=2048), None) as (loaded, _):
            order.append("second started")
            assert loaded.runner.spec.options.num_ctx == 2048

    await asyncio.gather(first(), second())
    assert order == ["first done", "second started"]
    assert len(factory.started) == 2 and factory.started[0].stopped


@pytest.mark.anyio
async def test_sampling_options_do_not_reload():
    sched, factory = scheduler()
    model = FakeModel()
    await sched.load(model, resolve({"temperature": 0.1}, None).runner, None)
    await sched.load(model, resolve({"temperature": 0.9, "top_k": 5}, None).runner, None)
    assert len(factory.started) == 1


@pytest.mark.anyio
async def test_num_ctx_defaults_from_settings_and_is_capped_by_the_model():
    sched, _ = scheduler(context_length=16384)
    assert sched.runner_spec(FakeModel(context_length=8192), runner_opts()).options.num_ctx == 8192
    assert sched.runner_spec(FakeModel(context_length=None), runner_opts()).options.num_ctx == 16384
    default, _ = scheduler()
    assert default.runner_spec(FakeModel(), runner_opts()).options.num_ctx == 4096


@pytest.mark.anyio
async def test_a_dead_runner_is_replaced_on_the_next_request():
    sched, factory = scheduler()
    model = FakeModel()
    await sched.load(model, runner_opts(), None)
    factory.started[0].alive = False
    await sched.load(model, runner_opts(), None)
    assert len(factory.started) == 2


@pytest.mark.anyio
async def test_only_a_runner_that_died_and_was_started_again_counts_as_a_restart():
    sched, factory = scheduler()
    model = FakeModel()
    await sched.load(model, runner_opts(), None)
    await sched.load(model, runner_opts(num_ctx=2048), None)  # a reload for other options
    await sched.unload("m:latest")
    await sched.load(model, runner_opts(), None)
    assert sched.runner_restarts() == {}
    factory.started[-1].alive = False
    await sched.load(model, runner_opts(), None)
    assert len(factory.started) == 4
    assert sched.runner_restarts() == {"m:latest": 1}


@pytest.mark.anyio
async def test_the_least_recently_used_idle_model_is_evicted_at_the_limit():
    sched, factory = scheduler(max_loaded_models=2)
    a, b, c = FakeModel("a:latest"), FakeModel("b:latest"), FakeModel("c:latest")
    await sched.load(a, runner_opts(), None)
    await sched.load(b, runner_opts(), None)
    await sched.load(a, runner_opts(), None)  # a is now the more recently used
    await sched.load(c, runner_opts(), None)
    assert {m.model.short_name for m in sched.running()} == {"a:latest", "c:latest"}
    assert factory.started[1].stopped  # b's runner


@pytest.mark.anyio
async def test_a_model_that_cannot_fit_is_refused_with_ollamas_words():
    from herd.core.errors import RunnerFailed

    sched, factory = scheduler(memory=2 * GIB, need=3 * GIB)
    with pytest.raises(RunnerFailed) as err:
        await sched.load(FakeModel(), runner_opts(), None)
    assert str(err.value) == "model requires more system memory (3.0 GiB) than is available (2.0 GiB)"
    assert factory.started == []


@pytest.mark.anyio
async def test_a_load_waits_for_a_busy_model_to_finish_before_evicting_it():
    sched, factory = scheduler(max_loaded_models=1)
    order = []

    async def busy():
        async with sched.lease(FakeModel("a:latest"), runner_opts(), None):
            await asyncio.sleep(0.05)
            order.append("a done")

    async def newcomer():
        await asyncio.sleep(0.01)
        await sched.load(FakeModel("b:latest"), runner_opts(), None)
        order.append("b loaded")

    await asyncio.gather(busy(), newcomer())
    assert order == ["a done", "b loaded"]
    assert [m.model.short_name for m in sched.running()] == ["b:latest"]


@pytest.mark.anyio
async def test_requests_beyond_the_slots_and_the_queue_are_refused_at_once():
    sched, _ = scheduler(max_queue=2)
    model = FakeModel()
    async with contextlib.AsyncExitStack() as held:
        # The fake runner has one slot: the first lease runs, the next two wait in its queue.
        for _ in range(3):
            await held.enter_async_context(sched.lease(model, runner_opts(), None))
        assert sched.queued() == 2
        with pytest.raises(ServerBusy):
            async with sched.lease(model, runner_opts(), None):
                pass
    assert sched.queued() == 0
    async with sched.lease(model, runner_opts(), None):
        pass


@pytest.mark.anyio
async def test_a_queue_of_zero_still_runs_what_fits_in_the_slots():
    sched, _ = scheduler(max_queue=0)
    async with sched.lease(FakeModel(), runner_opts(), None):
        with pytest.raises(ServerBusy):
            async with sched.lease(FakeModel(), runner_opts(), None):
                pass


@dataclass
class FakeGGUF:
    values: dict

    def architecture_value(self, key: str):
        return self.values.get(key)


@dataclass
class ModelWithShape(FakeModel):
    shape: dict = field(default_factory=dict)

    def gguf(self) -> FakeGGUF:
        return FakeGGUF(self.shape)


SMOLLM2_SHAPE = {"block_count": 30, "attention.head_count": 9, "attention.head_count_kv": 3, "embedding_length": 576}
LLAMA3_8B_SHAPE = {"block_count": 32, "attention.head_count": 32, "attention.head_count_kv": 8, "embedding_length": 4096}


@pytest.mark.parametrize(
    ("shape", "memory", "expected"),
    [
        (SMOLLM2_SHAPE, 24 * GIB, 16),  # 94 MB of KV per 4096-token slot
        (SMOLLM2_SHAPE, 2 * GIB, 2),
        (LLAMA3_8B_SHAPE, 24 * GIB, 4),  # 537 MB per slot: four fit in a 3 GiB share
        (LLAMA3_8B_SHAPE, 4 * GIB, 1),
    ],
)
def test_default_num_parallel_follows_the_kv_cache_a_slot_needs_and_the_machine_memory(shape, memory, expected):
    from herd.core.scheduler import default_num_parallel

    assert default_num_parallel(ModelWithShape(shape=shape), 4096, total_memory=memory) == expected


@pytest.mark.anyio
async def test_ollama_num_parallel_overrides_the_chosen_default():
    sched, factory = scheduler(num_parallel=2)
    async with sched.lease(FakeModel(), runner_opts(), None):
        pass
    assert factory.started[0].spec.n_parallel == 2
    default, factory = scheduler()
    async with default.lease(FakeModel(), runner_opts(), None):
        pass
    assert factory.started[0].spec.n_parallel == 4  # what the test's chooser says
