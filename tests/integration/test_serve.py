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


def runner_pids(server) -> list[int]:
    pids = []
    for pid in descendants(server.process.pid):
        try:
            if b"herd.core.runner.service" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            pass
    return pids


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
