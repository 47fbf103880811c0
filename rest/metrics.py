"""Prometheus ``/metrics``: the gateway's requests and generation speed, and core's scheduler.

Every app has a registry of its own (several apps may live in one process, as in tests). Core's
series (queue, loaded models, runner restarts) are asked of core over gRPC at each scrape, so one
scrape of the gateway sees the whole server.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from herd.metrics import core_metric_families
from herd.rest.request_id import grpc_metadata
from herd.v1 import inference_pb2, models_pb2

log = structlog.get_logger(__name__)

# What generate_latest writes: Prometheus' text format 0.0.4.
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

# Requests no route matched share one label value, so that scanning for paths cannot grow the series.
UNMATCHED_ROUTE = "unmatched"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A scrape answers with the gateway's own series when core is slow or down.
_CORE_TIMEOUT_S = 5.0

_TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_TOKENS_PER_SECOND_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 150.0, 250.0, 500.0, 1000.0)


class GatewayMetrics:
    """The gateway's own series, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "herd_http_requests",
            "HTTP requests answered, by method, route pattern and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "herd_time_to_first_token_seconds",
            "Generate and chat requests: from the request's arrival to the first generated text.",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "herd_generated_tokens_per_second",
            "Generate and chat requests: generated tokens over the time spent generating them.",
            ["model"],
            buckets=_TOKENS_PER_SECOND_BUCKETS,
            registry=self.registry,
        )


def route_label(request: Request) -> str:
    """The matched route's pattern as written (``/api/blobs/<digest>``), never the raw path."""
    return "/" + request.route.raw_path if request.route else UNMATCHED_ROUTE


def method_label(method: str) -> str:
    return method if method in _KNOWN_METHODS else "other"


async def count_response(request: Request, response: HTTPResponse) -> None:
    """Response middleware; for a stream it runs when the headers go out, with the stream's status."""
    request.app.ctx.metrics.requests.labels(
        method_label(request.method), route_label(request), str(response.status)
    ).inc()


def _carries_output(message: Any) -> bool:
    if isinstance(message, inference_pb2.ChatResponse):
        piece = message.message
        return bool(piece.content or piece.thinking or piece.tool_calls)
    return bool(message.response or message.thinking)


class GenerationObserver:
    """Watches one Generate or Chat stream: the time to its first text, and its decode speed.

    The speed comes from core's final metrics (``eval_count`` over ``eval_duration``); a request
    that only loads a model generates nothing and is observed in neither histogram.
    """

    def __init__(self, metrics: GatewayMetrics, started_ns: int):
        self._metrics = metrics
        self._started_ns = started_ns
        self._seen_output = False

    def __call__(self, message: Any) -> None:
        if not self._seen_output and _carries_output(message):
            self._seen_output = True
            seconds = (time.perf_counter_ns() - self._started_ns) / 1e9
            self._metrics.time_to_first_token.labels(message.model).observe(seconds)
        if message.done and message.metrics.eval_count and message.metrics.eval_duration_ns > 0:
            speed = message.metrics.eval_count / (message.metrics.eval_duration_ns / 1e9)
            self._metrics.tokens_per_second.labels(message.model).observe(speed)


def generation_observer(request: Request) -> GenerationObserver:
    return GenerationObserver(request.app.ctx.metrics, request.ctx.started_ns)


class _Families:
    """A collector of families already built, for one scrape."""

    def __init__(self, families: list[Metric]):
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


async def _core_families(request: Request) -> list[Metric]:
    up = GaugeMetricFamily("herd_core_up", "Whether core answered the gateway's Stats call during this scrape.")
    call = request.app.ctx.models.Stats(
        models_pb2.StatsRequest(), metadata=grpc_metadata(request.ctx.request_id), timeout=_CORE_TIMEOUT_S
    )
    try:
        stats = await call
    except grpc.aio.AioRpcError as error:
        log.warning("core_stats_failed", code=error.code().name, error=error.details())
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    return [up, *core_metric_families(stats)]


async def metrics(request: Request) -> HTTPResponse:
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Families(await _core_families(request)))
    body = generate_latest(request.app.ctx.metrics.registry) + generate_latest(scrape)
    return HTTPResponse(body, content_type=PROMETHEUS_TEXT)


def create_blueprint() -> Blueprint:
    blueprint = Blueprint("metrics")
    blueprint.add_route(metrics, "/metrics", methods=["GET"])
    return blueprint
