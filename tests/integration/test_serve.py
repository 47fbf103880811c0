"""`herd serve` as a user runs it: one process tree, and one Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import CHAT_MODEL, start_server, stop_server

pytestmark = pytest.mark.integration


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_core_gateway_and_runners(tmp_path):
    server = start_server(tmp_path)
    try:
        reply = httpx.post(server.base_url + "/api/generate", json={"model": CHAT_MODEL, "prompt": "hi", "stream": False,
                                                                    "options": {"num_predict": 2}}, timeout=120)
        assert reply.status_code == 200
        tree = descendants(server.process.pid)
        assert len(tree) >= 3  # core, gateway and one runner
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in tree if alive(pid)] == []
    finally:
        if server.process.poll() is None:
            stop_server(server)


def test_logs_carry_one_request_id_through_gateway_core_and_runner(server):
    request_id = "trace-" + os.urandom(4).hex()
    reply = httpx.post(server.base_url + "/api/generate", headers={"X-Request-Id": request_id},
                       json={"model": CHAT_MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 2}}, timeout=120)
    assert reply.headers["x-request-id"] == request_id
    time.sleep(0.5)
    processes = {line.split('"process": "')[1].split('"')[0]
                 for line in server.log_text().splitlines() if request_id in line and '"process": "' in line}
    assert {"gateway", "core", "runner"} <= processes


def module_pids(server, module: str) -> list[int]:
    """The server's processes running ``python -m <module>``."""
    pids = []
    for pid in descendants(server.process.pid):
        try:
            if module.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            pass
    return pids


def runner_pids(server) -> list[int]:
    return module_pids(server, "herd.core.runner.service")


def test_a_crashed_runner_fails_its_stream_in_band_and_is_reloaded(server):
    body = {"model": CHAT_MODEL, "prompt": "Once upon a time", "raw": True, "options": {"num_predict": 3000}}
    lines = []
    with httpx.stream("POST", server.base_url + "/api/generate", json=body, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            if len(lines) == 2:
                for pid in runner_pids(server):
                    os.kill(pid, signal.SIGKILL)
    assert lines[-1] == '{"error":"llama runner process no longer running"}'
    again = httpx.post(server.base_url + "/api/generate", json={**body, "stream": False, "options": {"num_predict": 3}}, timeout=120)
    assert again.status_code == 200 and again.json()["eval_count"] == 3


def test_a_burst_beyond_the_queue_gets_fast_503s_and_the_rest_are_served(tmp_path):
    import asyncio

    server = start_server(tmp_path, OLLAMA_NUM_PARALLEL="1", OLLAMA_MAX_QUEUE="2")
    body = {"model": CHAT_MODEL, "prompt": "Tell me a story.", "stream": False,
            "options": {"temperature": 0, "num_predict": 32}}

    async def burst() -> list[tuple[int, dict, float]]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            async def one(delay: float) -> tuple[int, dict, float]:
                await asyncio.sleep(delay)  # in order: the first holds the slot, the next two queue
                started = time.monotonic()
                reply = await client.post("/api/generate", json=body)
                return reply.status_code, reply.json(), time.monotonic() - started

            return await asyncio.gather(*(one(0.05 * i) for i in range(8)))

    try:
        assert httpx.post(server.base_url + "/api/generate", json=body, timeout=120).status_code == 200  # loaded
        results = asyncio.run(burst())
        served = [body for status, body, _ in results if status == 200]
        refused = [(body, seconds) for status, body, seconds in results if status == 503]
        assert len(served) >= 3 and len(served) + len(refused) == 8 and refused
        assert all(body["response"] for body in served)
        for body, seconds in refused:
            assert body == {"error": "server busy, please try again.  maximum pending requests exceeded"}
            assert seconds < 1.0
    finally:
        stop_server(server)


def environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def test_core_gateway_and_runners_start_grpcio_without_its_event_engine(server):
    reply = httpx.post(server.base_url + "/api/generate", json={"model": CHAT_MODEL, "prompt": "hi", "stream": False,
                                                                "options": {"num_predict": 2}}, timeout=120)
    assert reply.status_code == 200
    for module in ("herd.core.server", "herd.rest.app", "herd.core.runner.service"):
        pids = module_pids(server, module)
        assert pids, module
        for pid in pids:
            assert environment(pid)["GRPC_EXPERIMENTS"] == "-event_engine_client,-event_engine_listener"
