"""Hostile models and dying runners, through the real server as a user meets them.

Cases from §6 of the security notes (``spec/security.md``) and where each is tested:

====  =====================================================  ==============================================
case  input                                                  test
====  =====================================================  ==============================================
11    GGUF of 0, 4 (``GGUF``), 23 bytes                       test_hostile_gguf_upload_is_a_clean_400 (+ unit
                                                             tests/unit/test_gguf.py BAD_FILES)
12    bad magic, version 0/1/4, byte-swapped version          same
13    n_tensors / n_kv = 2^63-1 or -1: fast, no allocation    same; tests/unit/test_fuzz.py (time, memory)
14    string of 2^40 bytes or past EOF, array of 2^40         same
15    duplicate / empty key, value type 13, nested array      same
16    general.alignment 0, 13, 2^30, typed INT32              same
17    5 dims, ne = -1, product overflow, unknown type,        same
      ne[0] not a block multiple
18    tensor past EOF (Bleeding Llama), offsets out of        same
      order, data one byte short
19    block_count 513, special id >= vocab size, token        same (unit: BAD_FOR_LLAMA)
      of 2^31 bytes, byte token <0x-1>/<0xZZ>, scores UINT8
20    SSTI and 10 MB chat template (GGUF and Modelfile),      test_hostile_chat_template_in_a_gguf_fails_
      endless or huge render                                 the_request_cleanly, test_hostile_modelfile_
                                                             template_is_a_clean_400; unit: test_prompt_
                                                             templates.py (escapes, time, size caps)
21    GGUF that validates but llama.cpp cannot load           test_a_model_llama_cpp_cannot_load_fails_
                                                             cleanly_and_others_keep_serving
27    bad base64 image, 0-byte, 200 MP PNG, image to a        test_vision.py::test_a_bad_image_is_a_clean_
      text-only model                                        400_and_the_server_keeps_serving (+ /v1);
                                                             test_an_image_to_a_text_only_model_is_a_400
28    disconnect mid-stream frees the slot                    test_concurrency.py::test_sixteen_clients_...
                                                             _a_disconnect_frees_a_slot_for_the_next;
                                                             test_ollama_api.py::test_disconnect_mid_
                                                             stream_keeps_server_serving
29    queue full → 503 at once, admitted ones finish          test_serve.py::test_a_burst_beyond_the_queue_
                                                             gets_fast_503s_and_the_rest_are_served
36    runner killed mid-generation                            test_a_killed_runner_fails_its_requests_and_
                                                             spares_other_models; test_serve.py::test_a_
                                                             crashed_runner_fails_its_stream_in_band_...
====  =====================================================  ==============================================
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BASE_MODEL, CHAT_MODEL, LONG_ANSWER_FORMAT, Server
from tests.integration.test_serve import runner_pids
from tests.unit.test_gguf import ARCH, BAD_FILES, BAD_FOR_LLAMA, gguf_file, kv_str, kv_string_array, kv_u32

pytestmark = pytest.mark.integration

NOT_GGUF = "supplied file was not in GGUF format"
HOSTILE = {**BAD_FILES, **BAD_FOR_LLAMA}


def upload(server: Server, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    reply = httpx.post(f"{server.base_url}/api/blobs/{digest}", content=data, timeout=60)
    assert reply.status_code in (200, 201)
    return digest


def create(server: Server, name: str, **body: object) -> httpx.Response:
    return httpx.post(server.base_url + "/api/create", json={"model": name, "stream": False, **body}, timeout=120)


def store_files(server: Server) -> set[str]:
    return {str(path.relative_to(server.models_dir)) for path in server.models_dir.rglob("*") if path.is_file()}


def runner_log_lines(server: Server, since: int) -> list[str]:
    """Lines a runner wrote, or that tell of one starting, after byte ``since`` of the log."""
    text = server.log_text()[since:]
    return [line for line in text.splitlines() if '"process": "runner"' in line or "runner_started" in line]


@pytest.mark.parametrize(("data", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_gguf_upload_is_a_clean_400(server, data, reason):
    digest = upload(server, data)
    before, log_size = store_files(server), len(server.log_text())
    started = time.monotonic()
    reply = create(server, "hostile", files={"model.gguf": digest})
    assert time.monotonic() - started < 2
    assert reply.status_code == 400
    error = reply.json()["error"]
    if reason == "not a GGUF file":
        assert error == NOT_GGUF
    else:
        assert error.startswith("invalid model file: ") and re.search(reason, error)
    assert str(server.models_dir) not in error and "Traceback" not in error
    assert store_files(server) == before  # no manifest, no new layer, no temp file
    assert httpx.post(server.base_url + "/api/show", json={"model": "hostile"}).status_code == 404
    assert runner_log_lines(server, log_size) == []  # llama.cpp never saw the file
    assert httpx.get(server.base_url + "/api/version").status_code == 200


def tiny_llama(*extra: bytes) -> bytes:
    """A GGUF that passes every header check but has no tensors: llama.cpp cannot load it."""
    return gguf_file(
        [
            ARCH,
            kv_u32("llama.block_count", 1),
            kv_u32("llama.context_length", 256),
            kv_u32("llama.embedding_length", 64),
            kv_str("tokenizer.ggml.model", "gpt2"),
            kv_string_array("tokenizer.ggml.tokens", ["a", "b", "<|end|>"]),
            kv_u32("tokenizer.ggml.eos_token_id", 2),
            *extra,
        ],
        [],
    )


def with_chat_template(template: str) -> bytes:
    return tiny_llama(kv_str("tokenizer.chat_template", template))


MARKER = Path("/tmp/herd-ssti-marker")


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ cycler.__init__.__globals__ }}", "unsafe"),
        (f"{{{{ cycler.__init__.__globals__.os.popen('touch {MARKER}').read() }}}}", "unsafe"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
        ("x" * (10 << 20), "larger than"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "took longer"),
        ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "output exceeds"),
    ],
    ids=["globals", "popen", "subclasses", "10MB", "endless", "huge-output"],
)
def test_hostile_chat_template_in_a_gguf_fails_the_request_cleanly(server, template, error):
    MARKER.unlink(missing_ok=True)
    made = create(server, "jinja-hostile", files={"model.gguf": upload(server, with_chat_template(template))})
    assert made.status_code == 200, made.text
    log_size = len(server.log_text())
    started = time.monotonic()
    for path, body in (
        ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
    ):
        reply = httpx.post(server.base_url + path, json={"model": "jinja-hostile", "stream": False, **body}, timeout=60)
        assert reply.status_code == 500
        message = reply.json()["error"] if path.startswith("/api") else reply.json()["error"]["message"]
        assert message.startswith("template error: chat template") and error in message
        assert "<module" not in message and "<function" not in message  # nothing of the globals leaked
    assert time.monotonic() - started < 10  # both renders stopped at the 2 s budget at most
    assert not MARKER.exists()
    assert runner_log_lines(server, log_size) == []  # the prompt failed before any load
    assert httpx.get(server.base_url + "/api/version").status_code == 200
    assert httpx.request("DELETE", server.base_url + "/api/delete", json={"model": "jinja-hostile"}).status_code == 200


@pytest.mark.parametrize(
    "template",
    ["{{ cycler.__init__.__globals__ }}", "{{ .Prompt }}" * (1 << 20), "{{ range .Messages }}" * 10],
    ids=["ssti", "10MB", "unclosed"],
)
def test_hostile_modelfile_template_is_a_clean_400(server, template):
    before = store_files(server)
    reply = create(server, "modelfile-hostile", **{"from": CHAT_MODEL, "template": template})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("template error: ")
    assert len(reply.text) < 1000
    assert store_files(server) == before
    assert httpx.get(server.base_url + "/api/version").status_code == 200


def test_a_model_llama_cpp_cannot_load_fails_cleanly_and_others_keep_serving(server):
    made = create(server, "no-tensors", files={"model.gguf": upload(server, tiny_llama())}, template="{{ .Prompt }}")
    assert made.status_code == 200, made.text
    log_size = len(server.log_text())
    for stream in (False, True):
        reply = httpx.post(server.base_url + "/api/generate",
                           json={"model": "no-tensors", "prompt": "Hi", "stream": stream}, timeout=120)
        assert reply.status_code == 500
        error = reply.json()["error"]
        assert error.startswith("llama runner process has terminated") or "failed to load" in error, error
        assert str(server.models_dir) not in error and "Traceback" not in error
    assert runner_log_lines(server, log_size)  # here llama.cpp did try: the other tests' check can see it
    assert "no-tensors" not in {m["name"] for m in httpx.get(server.base_url + "/api/ps").json()["models"]}
    reply = httpx.post(server.base_url + "/api/generate", json={"model": CHAT_MODEL, "prompt": "Hi", "stream": False,
                                                               "options": {"num_predict": 3}}, timeout=120)
    # The chat model may end its answer before the limit (it samples, and "Hi" invites a short reply).
    assert reply.status_code == 200 and 1 <= reply.json()["eval_count"] <= 3 and reply.json()["response"]
    assert httpx.request("DELETE", server.base_url + "/api/delete", json={"model": "no-tensors"}).status_code == 200


def test_an_image_to_a_text_only_model_is_a_400(server):
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    reply = httpx.post(server.base_url + "/api/generate", json={"model": CHAT_MODEL, "prompt": "What is this?",
                                                               "images": [image], "stream": False}, timeout=60)
    assert (reply.status_code, reply.json()) == (
        400, {"error": "registry.ollama.ai/library/smollm2:135m does not support vision"})
    bad_base64 = httpx.post(server.base_url + "/api/generate", json={"model": CHAT_MODEL, "prompt": "x",
                                                                    "images": ["@@not base64@@"], "stream": False})
    assert (bad_base64.status_code, bad_base64.json()) == (400, {"error": "illegal base64 data at input byte 0"})
    assert httpx.get(server.base_url + "/api/version").status_code == 200


def model_runner(server: Server, model: str) -> int:
    """The pid of the runner serving ``model``: its command line names the model's weights."""
    manifest = json.loads((server.models_dir / "manifests/registry.ollama.ai/library" /
                           model.replace(":", "/")).read_text())
    weights = next(layer["digest"] for layer in manifest["layers"] if layer["mediaType"].endswith(".model"))
    blob = weights.replace(":", "-")
    (pid,) = [pid for pid in runner_pids(server) if blob in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]
    return pid


def test_a_killed_runner_fails_its_requests_and_spares_other_models(server):
    def generate(model: str, **body: object) -> httpx.Response:
        return httpx.post(server.base_url + "/api/generate", json={"model": model, "raw": True, **body}, timeout=120)

    assert generate(BASE_MODEL, prompt="Hi", stream=False, options={"num_predict": 1}).status_code == 200
    assert generate(CHAT_MODEL, prompt="Hi", stream=False, options={"num_predict": 1}).status_code == 200
    other = model_runner(server, BASE_MODEL)
    long_story = {"prompt": "Once upon a time", "options": {"num_predict": 3000}}

    # Streamed: the stream has started (status 200 sent), so the error comes as a last NDJSON line.
    lines = []
    with httpx.stream("POST", server.base_url + "/api/generate",
                      json={"model": CHAT_MODEL, "raw": True, **long_story}, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            if len(lines) == 2:
                os.kill(model_runner(server, CHAT_MODEL), signal.SIGKILL)
    assert json.loads(lines[-1]) == {"error": "llama runner process no longer running"}
    assert all("error" not in json.loads(line) for line in lines[:-1])

    # Not streamed: the kill lands while the answer is being generated (held open by its format: a free-form
    # story once ended in 0.85 s, before the kill); the reply is a clean 500.
    assert generate(CHAT_MODEL, prompt="Hi", stream=False, options={"num_predict": 1}).status_code == 200  # reloaded
    victim = model_runner(server, CHAT_MODEL)
    killer = threading.Timer(1.0, os.kill, (victim, signal.SIGKILL))
    killer.start()
    reply = generate(CHAT_MODEL, stream=False, format=LONG_ANSWER_FORMAT, **long_story)
    killer.join()
    assert (reply.status_code, reply.json()) == (500, {"error": "llama runner process no longer running"})

    # The other model's runner was never touched and answers at once; the killed one reloads on demand.
    assert model_runner(server, BASE_MODEL) == other
    again = generate(BASE_MODEL, prompt="The sky is", stream=False, options={"num_predict": 3})
    assert again.status_code == 200 and again.json()["eval_count"] == 3 and again.json()["load_duration"] < 10**8
    reloaded = generate(CHAT_MODEL, prompt="The sky is", stream=False, options={"num_predict": 3})
    assert reloaded.status_code == 200 and 1 <= reloaded.json()["eval_count"] <= 3  # the chat model may stop sooner
    assert model_runner(server, CHAT_MODEL) != victim
    assert httpx.get(server.base_url + "/api/version").status_code == 200
