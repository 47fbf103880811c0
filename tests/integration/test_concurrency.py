"""Sixteen streams at once on the real model, and a disconnect handing its slot to the next in line."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.conftest import BASE_MODEL, CHAT_MODEL, LONG_ANSWER_FORMAT, start_server, stop_server

SLOTS = 16


async def first_line(lines) -> dict:
    return json.loads(await asyncio.wait_for(anext(lines), timeout=120))


def test_sixteen_clients_stream_at_once_and_a_disconnect_frees_a_slot_for_the_next(tmp_path):
    server = start_server(tmp_path, OLLAMA_NUM_PARALLEL=str(SLOTS))

    def body(i: int, num_predict: int) -> dict:
        # Greedy counting on the pretrained model goes on for as long as it is allowed to: no
        # stream ends by itself, so only the disconnect can free a slot.
        return {"model": BASE_MODEL, "prompt": f"{i}, {i + 1}, {i + 2},", "raw": True,
                "options": {"num_predict": num_predict, "temperature": 0}}

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=SLOTS + 2)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120, limits=limits) as client:
            await client.post("/api/generate", json={"model": BASE_MODEL})  # loaded before the clock starts
            # Sixteen generations far longer than the test: each can only have streamed its first
            # text if it holds a slot of its own at the same time as the fifteen others.
            streams = [await client.send(client.build_request("POST", "/api/generate", json=body(i, 100_000)), stream=True)
                       for i in range(SLOTS)]
            readers = [stream.aiter_lines() for stream in streams]
            firsts = await asyncio.gather(*(first_line(r) for r in readers))
            assert all(s.status_code == 200 for s in streams)
            assert all(not f["done"] and "error" not in f for f in firsts)

            # A seventeenth waits for a slot; closing one stream hands that slot over.
            async def seventeenth() -> tuple[int, list[dict]]:
                async with client.stream("POST", "/api/generate", json=body(99, 8)) as queued:
                    return queued.status_code, [json.loads(line) async for line in queued.aiter_lines()]

            waiting = asyncio.create_task(seventeenth())
            await asyncio.sleep(1.0)
            assert not waiting.done()  # no slot, so not even its headers yet
            closed_at = time.monotonic()
            await streams[0].aclose()
            status, lines = await waiting
            waited = time.monotonic() - closed_at
            assert status == 200 and lines[-1]["done"] and lines[-1]["eval_count"] == 8
            # Without the cancellation the slot would be busy for 100,000 tokens (many minutes).
            assert waited < 30

            # The fifteen still streaming go on producing text.
            more = await asyncio.gather(*(first_line(r) for r in readers[1:]))
            assert all(not m["done"] and "error" not in m for m in more)
            for stream in streams[1:]:
                await stream.aclose()
            reply = await client.post("/api/generate", json=body(100, 4) | {"stream": False})
            assert reply.status_code == 200 and reply.json()["eval_count"] == 4

    try:
        asyncio.run(scenario())
    finally:
        stop_server(server)


def test_an_embedding_is_answered_while_generations_keep_the_runner_busy(server):
    """Found by scripts/soak.py: embeddings waited for a moment with no generation at all (p99 72 s)."""
    body = {"model": CHAT_MODEL, "prompt": "Once upon a time", "raw": True, "options": {"num_predict": 100_000},
            "format": LONG_ANSWER_FORMAT}
    with httpx.stream("POST", server.base_url + "/api/generate", json=body, timeout=120) as generation:
        lines = generation.iter_lines()
        assert "error" not in json.loads(next(lines))  # the generation holds the runner from here on
        started = time.monotonic()
        reply = httpx.post(server.base_url + "/api/embed", json={"model": CHAT_MODEL, "input": ["a cat", "a dog"]},
                           timeout=120)
        elapsed = time.monotonic() - started
        assert not json.loads(next(lines))["done"]  # still generating when the embedding came back
    assert reply.status_code == 200 and len(reply.json()["embeddings"]) == 2
    assert elapsed < 10


def test_coalesced_text_ends_the_stream_as_soon_as_the_answer_is_complete(tmp_path):
    # One message a minute per stream at most: everything after the first piece is held back, and
    # only the end of the answer may (and must) cut that wait short.
    server = start_server(tmp_path, HERD_STREAM_INTERVAL_MS="60000")
    body = {"model": CHAT_MODEL, "prompt": "Name three colours.", "options": {"num_predict": 24, "temperature": 0}}
    try:
        whole = httpx.post(server.base_url + "/api/generate", json=body | {"stream": False}, timeout=120).json()
        started = time.monotonic()
        with httpx.stream("POST", server.base_url + "/api/generate", json=body, timeout=120) as response:
            lines = [json.loads(line) for line in response.iter_lines()]
        elapsed = time.monotonic() - started
    finally:
        stop_server(server)
    assert elapsed < 30
    assert lines[-1]["done"] and lines[-1]["eval_count"] == whole["eval_count"] > 1
    assert len(lines) <= 3  # the first piece at once, the rest with the end
    assert "".join(line["response"] for line in lines) == whole["response"]
