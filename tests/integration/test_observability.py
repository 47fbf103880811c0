"""Prometheus metrics of a real server: the gateway's /metrics and core's own exporter."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.conftest import CHAT_MODEL, free_port, start_server, stop_server
from tests.integration.test_serve import descendants
from tests.prometheus import labels, requests_counted, samples

pytestmark = pytest.mark.integration

NO_LABELS = frozenset()


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """A server whose core also serves its own exporter; yields it and that exporter's URL."""
    metrics_port = free_port()
    server = start_server(tmp_path_factory.mktemp("observed"), HERD_METRICS_HOST=f"127.0.0.1:{metrics_port}")
    yield server, f"http://127.0.0.1:{metrics_port}/metrics"
    stop_server(server)


def scrape(url: str) -> dict:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    return samples(response.text)


def test_metrics_count_real_traffic_and_time_its_generations(observed):
    server, _ = observed
    before = scrape(server.base_url + "/metrics")

    chunks = list(ollama.Client(host=server.base_url, timeout=300).generate(
        model=CHAT_MODEL, prompt="Say hello.", stream=True, options={"num_predict": 8, "temperature": 0}
    ))
    assert chunks[-1].done and "".join(chunk.response for chunk in chunks)
    events = list(openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=300)
                  .chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Say hello."}],
                                           stream=True, max_tokens=8, temperature=0))
    assert "".join(event.choices[0].delta.content or "" for event in events if event.choices)
    assert httpx.get(server.base_url + "/api/no-such-route").status_code == 404

    after = scrape(server.base_url + "/metrics")
    moved = {
        dict(series)["route"]: (dict(series)["method"], dict(series)["status"], value - before.get((name, series), 0))
        for (name, series), value in after.items()
        if name == "herd_http_requests_total" and value != before.get((name, series), 0)
    }
    assert moved == {
        "/api/generate": ("POST", "200", 1),
        "/v1/chat/completions": ("POST", "200", 1),
        "unmatched": ("GET", "404", 1),
        "/metrics": ("GET", "200", 1),  # the scrape before the traffic
    }
    assert requests_counted(after, "GET", "/metrics", 200) == requests_counted(before, "GET", "/metrics", 200) + 1

    model = labels(model=CHAT_MODEL)
    for histogram in ("herd_time_to_first_token_seconds", "herd_generated_tokens_per_second"):
        assert after[(histogram + "_count", model)] - before.get((histogram + "_count", model), 0) == 2
        assert after[(histogram + "_sum", model)] > before.get((histogram + "_sum", model), 0)

    assert after[("herd_core_up", NO_LABELS)] == 1
    assert after[("herd_loaded_models", NO_LABELS)] == 1
    assert after[("herd_loaded_model_size_bytes", model)] > 0
    assert after[("herd_queued_requests", NO_LABELS)] == 0


def test_cores_own_exporter_reports_the_scheduler(observed):
    server, core_url = observed
    httpx.post(server.base_url + "/api/generate", json={"model": CHAT_MODEL}, timeout=300).raise_for_status()
    core = scrape(core_url)
    gateway = scrape(server.base_url + "/metrics")
    model = labels(model=CHAT_MODEL)
    assert core[("herd_loaded_models", NO_LABELS)] == 1
    assert core[("herd_loaded_model_size_bytes", model)] == gateway[("herd_loaded_model_size_bytes", model)] > 0
    assert core[("herd_queued_requests", NO_LABELS)] == 0
    # Core's exporter has the scheduler's series only; requests are the gateway's.
    assert not any(name.startswith("herd_http_requests") for name, _ in core)


def runner_pids(server) -> list[int]:
    return [
        pid for pid in descendants(server.process.pid)
        if b"herd.core.runner.service" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_a_runner_killed_and_started_again_is_a_restart(observed):
    server, core_url = observed
    httpx.post(server.base_url + "/api/generate", json={"model": CHAT_MODEL}, timeout=300).raise_for_status()
    restarts = ("herd_runner_restarts_total", labels(model=CHAT_MODEL))
    assert restarts not in scrape(server.base_url + "/metrics")

    [pid] = runner_pids(server)
    os.kill(pid, signal.SIGKILL)
    # Gone from /proc once core has reaped it; core's event loop learns of it right after.
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    reply = httpx.post(server.base_url + "/api/generate", timeout=300,
                       json={"model": CHAT_MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 2}})
    assert reply.status_code == 200
    assert runner_pids(server) != [pid]

    assert scrape(server.base_url + "/metrics")[restarts] == 1
    assert scrape(core_url)[restarts] == 1
