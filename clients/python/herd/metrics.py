"""The Prometheus series of core's scheduler, built from its ``Stats`` reply.

Core's own exporter (``HERD_METRICS_HOST``) and the gateway's ``/metrics`` both report these, so
the names and help texts live here, once.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from herd.v1 import models_pb2


def core_metric_families(stats: models_pb2.StatsResponse) -> list[Metric]:
    queued = GaugeMetricFamily(
        "herd_queued_requests", "Requests waiting for a model to be loaded or for a slot of their model's runner."
    )
    queued.add_metric([], stats.queued_requests)
    loaded = GaugeMetricFamily("herd_loaded_models", "Models loaded in a runner.")
    loaded.add_metric([], len(stats.running))
    size = GaugeMetricFamily(
        "herd_loaded_model_size_bytes", "Memory a loaded model takes (weights, KV cache, buffers).", labels=["model"]
    )
    vram = GaugeMetricFamily("herd_loaded_model_vram_bytes", "Of that, bytes held in GPU memory.", labels=["model"])
    for running in stats.running:
        size.add_metric([running.name], running.size)
        vram.add_metric([running.name], running.size_vram)
    restarts = CounterMetricFamily(
        "herd_runner_restarts", "Runners that died and were started again, since core started.", labels=["model"]
    )
    for model, count in sorted(stats.runner_restarts.items()):
        restarts.add_metric([model], count)
    return [queued, loaded, size, vram, restarts]
