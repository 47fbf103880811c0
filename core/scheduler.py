"""Which models are loaded, for how long, and who is using them.

One runner per model. A request leases the runner for its duration; when the last lease ends,
the model's ``keep_alive`` starts counting (0 unloads at once, negative never). A request whose
runner options differ from the loaded runner's waits for the runner to drain, then reloads it.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator, Awaitable, Callable

import structlog

from herd.core.errors import RunnerFailed, ServerBusy
from herd.core.options import RunnerOptions
from herd.core.runner.process import Runner, RunnerSpec
from herd.core.settings import DEFAULT_MAX_LOADED_MODELS, DEFAULT_NUM_CTX, CoreSettings
from herd.core.store.store import StoredModel

log = structlog.get_logger(__name__)

RunnerFactory = Callable[[RunnerSpec], Awaitable[Runner]]
# Concurrent sequences per runner when OLLAMA_NUM_PARALLEL is not set: as many as a KV cache of
# an eighth of the machine's memory holds, halving from the most down to one.
MAX_DEFAULT_NUM_PARALLEL = 16
KV_SHARE_OF_MEMORY = 8


def kv_cache_bytes(model: StoredModel, n_ctx: int) -> int:
    """f16 K and V for ``n_ctx`` tokens: 2 · layers · kv_heads · head_dim · 2 bytes per token."""
    info = model.gguf()
    layers = info.architecture_value("block_count") or 0
    heads = info.architecture_value("attention.head_count") or 1
    kv_heads = info.architecture_value("attention.head_count_kv") or heads
    if isinstance(heads, list):
        heads = max(heads) or 1
    if isinstance(kv_heads, list):  # per-layer counts
        kv_heads = sum(kv_heads) / max(1, len(kv_heads))
    head_dim = info.architecture_value("attention.key_length") or (info.architecture_value("embedding_length") or 0) // heads
    return int(2 * layers * kv_heads * head_dim * 2 * n_ctx)


def total_memory_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_num_parallel(model: StoredModel, num_ctx: int, total_memory: int | None = None) -> int:
    """Slots for ``model`` at ``num_ctx`` tokens each when OLLAMA_NUM_PARALLEL is not set.

    Idle slots cost no compute (batching only spends on sequences that run), only KV memory, so
    small models get many. The machine's total memory, not what is free at this moment, keeps the
    choice the same from one request to the next; a different one would reload the runner.
    """
    budget = (total_memory or total_memory_bytes()) // KV_SHARE_OF_MEMORY
    per_slot = max(1, kv_cache_bytes(model, num_ctx))
    parallel = MAX_DEFAULT_NUM_PARALLEL
    while parallel > 1 and parallel * per_slot > budget:
        parallel //= 2
    return parallel


def estimate_bytes(model: StoredModel, spec: RunnerSpec) -> int:
    """Memory a runner for ``spec`` will take: weights, KV cache for every slot, compute buffers.

    The compute buffer is dominated by the logits of a full batch (vocabulary × batch × 4 bytes).
    """
    vocab = len(model.gguf().metadata.get("tokenizer.ggml.tokens") or ())
    weights = sum(path.stat().st_size for path in (spec.model_path, *spec.adapter_paths, *spec.projector_paths))
    kv = kv_cache_bytes(model, spec.options.num_ctx * spec.n_parallel)
    compute = vocab * 4 * min(spec.options.num_batch, 512) + (64 << 20)
    return weights + kv + compute


def available_memory_bytes() -> int:
    """What the kernel says new allocations can take without swapping."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def human_bytes(n: int) -> str:
    """Sizes as Ollama's errors print them, e.g. ``3.2 GiB``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


@dataclass
class LoadedModel:
    model: StoredModel
    runner: Runner
    keep_alive_ns: int
    size: int = 0  # the memory estimate it was admitted with
    leases: int = 0
    last_used: float = 0.0
    expires_at: datetime | None = None  # None: never
    expiry: asyncio.TimerHandle | None = None
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def context_length(self) -> int:
        return self.runner.info.n_ctx


class Scheduler:
    def __init__(
        self,
        runner_factory: RunnerFactory,
        settings: CoreSettings,
        memory_available: Callable[[], int] = available_memory_bytes,
        estimate: Callable[[StoredModel, RunnerSpec], int] = estimate_bytes,
        choose_parallel: Callable[[StoredModel, int], int] = default_num_parallel,
    ):
        self._start_runner = runner_factory
        self._settings = settings
        self._memory_available = memory_available
        self._estimate = estimate
        self._choose_parallel = choose_parallel
        self._max_loaded = settings.max_loaded_models or DEFAULT_MAX_LOADED_MODELS
        self._loaded: dict[str, LoadedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._acquiring = 0  # requests waiting for a model to be loaded or reloaded
        self._died: set[str] = set()  # models whose runner exited on its own and was not started again yet
        self._restarts: dict[str, int] = {}

    def runner_spec(self, model: StoredModel, options: RunnerOptions) -> RunnerSpec:
        num_ctx = options.num_ctx or self._settings.context_length or DEFAULT_NUM_CTX
        if model.context_length:
            num_ctx = min(num_ctx, model.context_length)
        return RunnerSpec(
            model_path=model.model_path,
            options=replace(options, num_ctx=num_ctx),
            n_parallel=self._settings.num_parallel or self._choose_parallel(model, num_ctx),
            adapter_paths=tuple(model.adapter_paths),
            projector_paths=tuple(model.projector_paths),
        )

    @asynccontextmanager
    async def lease(self, model: StoredModel, options: RunnerOptions, keep_alive_ns: int | None) -> AsyncIterator[tuple[LoadedModel, int]]:
        """Holds a loaded runner for ``model``; yields it with the nanoseconds spent loading.

        Raises ServerBusy when this request would wait for a slot while ``max_queue`` others already wait.
        """
        if self._would_queue(model) and self.queued() >= self._settings.max_queue:
            raise ServerBusy()
        self._acquiring += 1
        try:
            loaded, load_ns = await self._acquire(model, options, keep_alive_ns)
        finally:
            self._acquiring -= 1
        try:
            yield loaded, load_ns
        finally:
            self._release(loaded)

    def _would_queue(self, model: StoredModel) -> bool:
        loaded = self._loaded.get(model.short_name)
        return loaded is not None and loaded.leases >= max(1, loaded.runner.info.n_parallel)

    def queued(self) -> int:
        """Requests that wait: for a load, or for one of their runner's slots (the runner queues them)."""
        waiting_for_slots = sum(max(0, m.leases - max(1, m.runner.info.n_parallel)) for m in self._loaded.values())
        return self._acquiring + waiting_for_slots

    async def load(self, model: StoredModel, options: RunnerOptions, keep_alive_ns: int | None) -> int:
        """Loads ``model`` (if needed) and starts its keep-alive; returns the load time in ns."""
        async with self.lease(model, options, keep_alive_ns) as (_, load_ns):
            return load_ns

    async def _acquire(self, model: StoredModel, options: RunnerOptions, keep_alive_ns: int | None):
        started = time.perf_counter_ns()
        keep_alive = self._settings.keep_alive_ns if keep_alive_ns is None else keep_alive_ns
        spec = self.runner_spec(model, options)
        key = model.short_name
        async with self._locks.setdefault(key, asyncio.Lock()):
            loaded = self._loaded.get(key)
            if loaded is not None and (loaded.runner.spec != spec or not loaded.runner.alive or loaded.model.digest != model.digest):
                # Different options or a dead runner: wait for in-flight requests, then reload.
                if loaded.leases:
                    await loaded.drained.wait()
                await self._stop(key)
                loaded = None
            if loaded is None:
                size = self._estimate(model, spec)
                await self._make_room(key, size)
                runner = await self._start_runner(spec)
                if key in self._died:
                    self._died.discard(key)
                    self._restarts[key] = self._restarts.get(key, 0) + 1
                loaded = LoadedModel(model=model, runner=runner, keep_alive_ns=keep_alive, size=size)
                self._loaded[key] = loaded
                log.info("model_loaded", model=key, load_ns=time.perf_counter_ns() - started)
            loaded.keep_alive_ns = keep_alive
            loaded.leases += 1
            loaded.drained.clear()
            if loaded.expiry is not None:
                loaded.expiry.cancel()
                loaded.expiry = None
        return loaded, time.perf_counter_ns() - started

    async def _make_room(self, key: str, needed: int) -> None:
        """Unloads idle models, least recently used first, until ``needed`` bytes and a slot are free.

        While every other model is busy this waits for one to finish; a model that cannot fit even
        with nothing else loaded is refused rather than pushed into swap.
        """
        while True:
            others = {k: m for k, m in self._loaded.items() if k != key}
            available = self._memory_available()
            if len(others) < self._max_loaded and needed <= available:
                return
            idle = sorted((m for m in others.values() if not m.leases), key=lambda m: m.last_used)
            if idle:
                victim = idle[0].model.short_name
                log.info("model_evicted", model=victim, needed=needed, available=available)
                await self._stop(victim)
                continue
            if not others:
                raise RunnerFailed(
                    f"model requires more system memory ({human_bytes(needed)}) than is available ({human_bytes(available)})"
                )
            waits = [asyncio.ensure_future(m.drained.wait()) for m in others.values()]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()

    def _release(self, loaded: LoadedModel) -> None:
        loaded.leases -= 1
        loaded.last_used = time.monotonic()
        if loaded.leases:
            return
        loaded.drained.set()
        key = loaded.model.short_name
        if self._loaded.get(key) is not loaded:
            return
        if loaded.keep_alive_ns == 0 or not loaded.runner.alive:
            asyncio.get_running_loop().create_task(self.unload(key))
        elif loaded.keep_alive_ns > 0:
            delay = loaded.keep_alive_ns / 1e9
            loaded.expires_at = datetime.now(timezone.utc) + timedelta(seconds=delay)
            loaded.expiry = asyncio.get_running_loop().call_later(
                delay, lambda: asyncio.get_running_loop().create_task(self.unload(key, only_if_idle=True))
            )
        else:
            loaded.expires_at = None

    async def unload(self, key: str, only_if_idle: bool = False) -> bool:
        """Stops the runner of model ``key`` once its requests finish; False if it was not loaded."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            loaded = self._loaded.get(key)
            if loaded is None or (only_if_idle and loaded.leases):
                return False
            if loaded.leases:
                await loaded.drained.wait()
            await self._stop(key)
            return True

    async def _stop(self, key: str) -> None:
        loaded = self._loaded.pop(key, None)
        if loaded is None:  # another request stopped it first
            return
        if loaded.expiry is not None:
            loaded.expiry.cancel()
        if not loaded.runner.alive:
            # Nobody stopped it (a crash, the OOM killer): the next load of this model is a restart.
            self._died.add(key)
            log.warning("runner_died", model=key)
        await loaded.runner.stop()
        log.info("model_unloaded", model=key)

    def running(self) -> list[LoadedModel]:
        """Loaded models, longest time remaining first (never-expiring ones first)."""
        now = datetime.now(timezone.utc)
        for loaded in self._loaded.values():
            if loaded.leases and loaded.keep_alive_ns > 0:
                loaded.expires_at = now + timedelta(seconds=loaded.keep_alive_ns / 1e9)
            elif loaded.leases and loaded.keep_alive_ns < 0:
                loaded.expires_at = None
        far = datetime.max.replace(tzinfo=timezone.utc)
        return sorted(self._loaded.values(), key=lambda m: m.expires_at or far, reverse=True)

    def runner_restarts(self) -> dict[str, int]:
        """Runners that died and were started again, by model, since this scheduler was made."""
        return dict(self._restarts)

    def is_loaded(self, key: str) -> bool:
        return key in self._loaded

    async def close(self) -> None:
        for key in list(self._loaded):
            await self._stop(key)
