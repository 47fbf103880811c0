"""The gateway's /metrics against a fake core: request counts by route, generation histograms,
core's series through its Stats RPC."""

from __future__ import annotations

import grpc

from herd.metrics import core_metric_families
from herd.v1 import common_pb2, inference_pb2, models_pb2
from tests.fake_core import Abort, FakeCore, gateway, run
from tests.prometheus import labels, requests_counted, samples

STATS = models_pb2.StatsResponse(
    queued_requests=3,
    running=[models_pb2.RunningModel(name="smollm2:135m", size=300, size_vram=0)],
    runner_restarts={"smollm2:135m": 2},
)
UNMATCHED = "unmatched"


def generate_stream(model: str = "smollm2") -> list:
    return [
        inference_pb2.GenerateResponse(model=model),  # a first message without text
        inference_pb2.GenerateResponse(model=model, response="Hi"),
        inference_pb2.GenerateResponse(
            model=model, done=True, done_reason=common_pb2.DONE_REASON_STOP,
            metrics=common_pb2.Metrics(eval_count=20, eval_duration_ns=2_000_000_000),
        ),
    ]


def test_requests_are_counted_by_route_pattern_and_status():
    async def scenario():
        core = FakeCore()
        core.unary_answers["Stats"] = STATS
        async with gateway(core) as client:
            await client.get("/api/version")
            await client.get("/api/version")
            await client.get("/no/such/path/1")
            await client.get("/no/such/path/2")
            await client.head("/api/blobs/sha256-bad")
            await client.head("/api/blobs/sha256-worse")
            scrape = samples((await client.get("/metrics")).text)
        assert requests_counted(scrape, "GET", "/api/version", 200) == 2
        assert requests_counted(scrape, "GET", UNMATCHED, 404) == 2
        assert requests_counted(scrape, "HEAD", "/api/blobs/<digest>", 400) == 2
        counted_routes = {dict(series)["route"] for name, series in scrape if name == "herd_http_requests_total"}
        assert counted_routes == {"/api/version", UNMATCHED, "/api/blobs/<digest>"}

    run(scenario)



def test_generation_time_to_first_text_and_speed_are_observed_per_model_on_both_dialects():
    async def scenario():
        core = FakeCore()
        core.unary_answers["Stats"] = STATS
        core.stream_script = generate_stream()
        async with gateway(core) as client:
            await client.post("/api/generate", json={"model": "smollm2", "prompt": "hi"})
            await client.post("/api/generate", json={"model": "smollm2", "prompt": "hi", "stream": False})
            await client.post("/v1/completions", json={"model": "smollm2", "prompt": "hi", "stream": True})
            response = await client.get("/metrics")
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        scrape = samples(response.text)
        model = labels(model="smollm2")
        assert scrape[("herd_time_to_first_token_seconds_count", model)] == 3
        assert 0 < scrape[("herd_time_to_first_token_seconds_sum", model)] < 10
        assert scrape[("herd_generated_tokens_per_second_count", model)] == 3
        assert scrape[("herd_generated_tokens_per_second_sum", model)] == 30.0  # 20 tokens in 2 s, three times
        ten_per_second = labels(model="smollm2", le="10.0")
        assert scrape[("herd_generated_tokens_per_second_bucket", ten_per_second)] == 3

    run(scenario)


def test_a_load_only_request_is_no_generation():
    async def scenario():
        core = FakeCore()
        core.unary_answers["Stats"] = STATS
        core.stream_script = [inference_pb2.GenerateResponse(model="smollm2", done=True)]
        async with gateway(core) as client:
            await client.post("/api/generate", json={"model": "smollm2"})
            scrape = samples((await client.get("/metrics")).text)
        assert not any(name.startswith("herd_time_to_first_token") for name, _ in scrape)
        assert not any(name.startswith("herd_generated_tokens") for name, _ in scrape)

    run(scenario)


def test_cores_scheduler_series_come_from_its_stats_call():
    async def scenario():
        core = FakeCore()
        core.unary_answers["Stats"] = STATS
        async with gateway(core) as client:
            scrape = samples((await client.get("/metrics", headers={"X-Request-Id": "scrape-1"})).text)
        model = labels(model="smollm2:135m")
        assert scrape[("herd_core_up", frozenset())] == 1
        assert scrape[("herd_queued_requests", frozenset())] == 3
        assert scrape[("herd_loaded_models", frozenset())] == 1
        assert scrape[("herd_loaded_model_size_bytes", model)] == 300
        assert scrape[("herd_runner_restarts_total", model)] == 2
        assert core.request_ids == ["scrape-1"]

    run(scenario)


def test_a_core_that_fails_leaves_the_gateways_own_series_and_core_up_zero():
    async def scenario():
        core = FakeCore()
        core.unary_answers["Stats"] = Abort(grpc.StatusCode.UNAVAILABLE, "down")
        async with gateway(core) as client:
            await client.get("/api/version")
            response = await client.get("/metrics")
        assert response.status_code == 200
        scrape = samples(response.text)
        assert scrape[("herd_core_up", frozenset())] == 0
        assert requests_counted(scrape, "GET", "/api/version", 200) == 1
        assert not any(name.startswith("herd_queued") for name, _ in scrape)

    run(scenario)


def test_metrics_want_the_api_key_when_one_is_set():
    async def scenario():
        core = FakeCore()
        core.unary_answers["Stats"] = STATS
        async with gateway(core, api_key="secret") as client:
            refused = await client.get("/metrics")
            allowed = await client.get("/metrics", headers={"Authorization": "Bearer secret"})
        assert (refused.status_code, refused.json()) == (401, {"error": "unauthorized"})
        assert allowed.status_code == 200
        assert requests_counted(samples(allowed.text), "GET", "/metrics", 401) == 1

    run(scenario)


def test_core_metric_families_in_prometheus_text():
    from prometheus_client import CollectorRegistry, generate_latest

    class Families:
        def collect(self):
            return core_metric_families(STATS)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())
    text = generate_latest(registry).decode()
    assert "# TYPE herd_runner_restarts_total counter" in text
    assert 'herd_loaded_model_vram_bytes{model="smollm2:135m"} 0.0' in text
    assert "herd_queued_requests 3.0" in text
