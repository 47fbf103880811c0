"""The one merge of options: server defaults < the model's params layer < the request.

Sampling options may change per request; runner options (``num_ctx`` and friends) decide how a
model is loaded, so a change there means another runner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import structlog

from herd.core.errors import InvalidRequest
from herd.v1 import common_pb2

log = structlog.get_logger(__name__)

# Ollama's DefaultOptions (api/types.go); num_ctx is settled per model by the scheduler.
SAMPLING_DEFAULTS: dict[str, Any] = {
    "num_keep": 4,
    "seed": -1,
    "num_predict": -1,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_last_n": 64,
    "temperature": 0.8,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "stop": [],
}
RUNNER_DEFAULTS: dict[str, Any] = {
    "num_ctx": 0,  # 0: the scheduler's default for the model
    "num_batch": 512,
    "num_gpu": -1,
    "main_gpu": 0,
    "use_mmap": True,
    "num_thread": 0,
}
_INT_OPTIONS = {"num_keep", "seed", "num_predict", "top_k", "repeat_last_n",
                "num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread"}
_BOOL_OPTIONS = {"use_mmap"}
# Bounds that keep llama.cpp away from values it was never meant to see.
_RANGES: dict[str, tuple[float, float]] = {
    "num_ctx": (0, 1 << 20),
    # -1: no limit, -2: until the context is full; lower values have no meaning.
    "num_predict": (-2, (1 << 31) - 1),
    "num_batch": (1, 1 << 16),
    "num_thread": (0, 1024),
    "top_k": (0, 1 << 20),
    "repeat_last_n": (-1, 1 << 20),
    "temperature": (0, 100),
}


@dataclass(frozen=True)
class RunnerOptions:
    """Options that decide how a model is loaded; equal values share a runner."""

    num_ctx: int
    num_batch: int
    num_gpu: int
    main_gpu: int
    use_mmap: bool
    num_thread: int


@dataclass(frozen=True)
class ResolvedOptions:
    num_keep: int
    seed: int
    num_predict: int
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repeat_last_n: int
    temperature: float
    repeat_penalty: float
    presence_penalty: float
    frequency_penalty: float
    stop: tuple[str, ...]
    runner: RunnerOptions


def _coerce(name: str, value: Any) -> Any:
    if name == "stop":
        if isinstance(value, str):
            return [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise InvalidRequest('option "stop" must be of type array of strings')
        return list(value)
    if name in _BOOL_OPTIONS:
        if not isinstance(value, bool):
            raise InvalidRequest(f'option "{name}" must be of type boolean')
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "integer" if name in _INT_OPTIONS else "float32"
        raise InvalidRequest(f'option "{name}" must be of type {kind}')
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(f'option "{name}" must be a finite number')
    if name in _RANGES:
        low, high = _RANGES[name]
        if not low <= value <= high:
            raise InvalidRequest(f'option "{name}" must be between {low} and {high}')
    return int(value) if name in _INT_OPTIONS else float(value)


def _from_pb(pb: common_pb2.Options | None) -> dict[str, Any]:
    if pb is None:
        return {}
    out: dict[str, Any] = {}
    for desc, value in pb.ListFields():
        out[desc.name] = list(value.values) if desc.name == "stop" else value
    return out


def resolve(model_params: dict[str, Any], request: common_pb2.Options | None) -> ResolvedOptions:
    merged: dict[str, Any] = {**SAMPLING_DEFAULTS, **RUNNER_DEFAULTS}
    for source in (model_params, _from_pb(request)):
        for name, value in source.items():
            if name not in merged:
                log.warning("invalid option provided", option=name)
                continue
            merged[name] = _coerce(name, value)
    runner = RunnerOptions(**{f.name: merged.pop(f.name) for f in fields(RunnerOptions)})
    merged["stop"] = tuple(merged["stop"])
    return ResolvedOptions(runner=runner, **merged)
