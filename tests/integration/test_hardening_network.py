"""Network defences and input limits through the real server (security.md §6 cases 22-26 and 30).

After every bad input the server must still answer ``/api/version``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import time

import grpc
import httpx
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from herd.auth import channel_from_env, open_channel
from herd.v1 import common_pb2, inference_pb2, inference_pb2_grpc, models_pb2, models_pb2_grpc
from tests.conftest import CHAT_MODEL, start_server, stop_server

pytestmark = pytest.mark.integration

KEY = "s3cret-key"


def assert_still_serving(server) -> None:
    assert httpx.get(server.base_url + "/api/version", timeout=10).status_code == 200


def raw_http(server, head: bytes, body: bytes = b"") -> bytes:
    """One request written by hand (for what httpx would not send) and the answer, up to the server's close."""
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


# --------------------------------------------------------------------------- case 22: Host and CORS


@pytest.mark.parametrize("host", ["evil.example", "evil.example:11434", "203.0.113.9:11434", "[2001:db8::1]"])
def test_foreign_host_header_is_refused_on_loopback(server, host):
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 sends its own Host."""
    response = httpx.get(server.base_url + "/api/tags", headers={"Host": host})
    assert response.status_code == 403
    assert response.text == ""
    assert_still_serving(server)


@pytest.mark.parametrize(
    "host", ["localhost:11434", "localhost", "127.0.0.1", "[::1]:11434", "[::1]", "app.localhost", "box.local", "svc.internal",
             "192.168.1.20:11434", "10.1.2.3", "0.0.0.0:11434", socket.gethostname()],
)
def test_local_host_headers_are_served(server, host):
    response = httpx.get(server.base_url + "/api/tags", headers={"Host": host})
    assert response.status_code == 200
    assert "models" in response.json()


def test_preflight_from_a_local_origin_is_answered(server):
    response = httpx.options(
        server.base_url + "/api/chat",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,authorization"},
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in response.headers["access-control-allow-methods"].split(",")
    assert {"Authorization", "Content-Type", "X-Stainless-Os"} <= set(response.headers["access-control-allow-headers"].split(","))


def test_preflight_from_an_unlisted_origin_gets_no_allow_header(server):
    response = httpx.options(
        server.base_url + "/api/chat",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    # An actual request from there is refused the same way, so a page cannot read the answer.
    response = httpx.get(server.base_url + "/api/tags", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and "access-control-allow-origin" not in response.headers
    assert_still_serving(server)


def test_listed_origin_gets_the_allow_header_on_answers(server):
    response = httpx.get(server.base_url + "/api/tags", headers={"Origin": "vscode-webview://abc"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "vscode-webview://abc"
    assert response.headers["vary"] == "Origin"


def test_ollama_origins_adds_origins(tmp_path):
    server = start_server(tmp_path, HERD_NO_BUNDLED="1", OLLAMA_ORIGINS="https://chat.example,https://*.trusted.example")
    try:
        for origin in ("https://chat.example", "https://app.trusted.example", "http://127.0.0.1:8080"):
            response = httpx.get(server.base_url + "/api/tags", headers={"Origin": origin})
            assert response.headers.get("access-control-allow-origin") == origin, origin
        response = httpx.get(server.base_url + "/api/tags", headers={"Origin": "https://trusted.example.evil"})
        assert response.status_code == 403
    finally:
        stop_server(server)


# --------------------------------------------------------------------------- case 23: the API key


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return {"cert": str(cert), "key": str(key)}


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, tls_files):
    """HERD_API_KEY on REST and gRPC, with gRPC over TLS: the gateway must send both to core."""
    server = start_server(
        tmp_path_factory.mktemp("keyed"),
        HERD_API_KEY=KEY,
        HERD_GRPC_TLS_CERT=tls_files["cert"],
        HERD_GRPC_TLS_KEY=tls_files["key"],
        HERD_GRPC_TLS_CA=tls_files["cert"],
    )
    yield server
    stop_server(server)


def test_rest_wants_the_key(keyed_server):
    url = keyed_server.base_url + "/api/tags"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).json() == {"error": "unauthorized"}
    response = httpx.get(url, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200 and CHAT_MODEL in [m["name"] for m in response.json()["models"]]
    # A blob upload is a client-streaming call to core: the key rides on that kind too.
    blob = b"some bytes"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    uploaded = httpx.post(keyed_server.base_url + f"/api/blobs/{digest}", content=blob,
                          headers={"Authorization": f"Bearer {KEY}"})
    assert uploaded.status_code == 201
    assert_still_serving(keyed_server)


def test_openai_sdk_with_the_key_generates_through_tls_core(keyed_server):
    """The gateway reaches core over TLS and with the key: a whole chat goes through."""
    client = openai.OpenAI(base_url=keyed_server.base_url + "/v1", api_key=KEY, max_retries=0, timeout=300)
    reply = client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Say hi"}], max_tokens=4, temperature=0
    )
    assert reply.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed_server.base_url + "/v1", api_key="nope", max_retries=0).models.list()


@pytest.mark.parametrize("key", ["", "wrong", KEY[:-1], "x" + KEY[1:], KEY + "x"])
def test_grpc_without_the_right_key_is_unauthenticated(keyed_server, tls_files, key):
    with open_channel(keyed_server.grpc_address, api_key=key, tls_ca=tls_files["cert"]) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            models_pb2_grpc.ModelsStub(channel).List(models_pb2.ListModelsRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Health checks stay open for load balancers.
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_with_the_key_over_tls(keyed_server, tls_files):
    """What a Python program does with the same environment as the server."""
    environ = {"HERD_GRPC_HOST": keyed_server.grpc_address, "HERD_API_KEY": KEY, "HERD_GRPC_TLS_CA": tls_files["cert"]}
    with channel_from_env(environ) as channel:
        listed = models_pb2_grpc.ModelsStub(channel).List(models_pb2.ListModelsRequest(), timeout=10)
        assert CHAT_MODEL in [m.name for m in listed.models]
        request = inference_pb2.GenerateRequest(model=CHAT_MODEL, prompt="hi", options=common_pb2.Options(num_predict=2))
        assert list(inference_pb2_grpc.InferenceStub(channel).Generate(request, timeout=300))[-1].done


def test_the_cli_sends_herd_api_key(keyed_server):
    env = {**os.environ, "OLLAMA_HOST": keyed_server.base_url, "HERD_API_KEY": KEY}
    env.pop("OLLAMA_API_KEY", None)
    listed = subprocess.run([sys.executable, "-m", "herd.cli.main", "list"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert CHAT_MODEL in listed.stdout
    env["HERD_API_KEY"] = "wrong"
    refused = subprocess.run([sys.executable, "-m", "herd.cli.main", "list"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert (refused.returncode, refused.stderr.strip()) == (1, "Error: unauthorized")


def test_grpc_in_plaintext_is_refused_by_a_tls_core(keyed_server):
    with open_channel(keyed_server.grpc_address, api_key=KEY) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            models_pb2_grpc.ModelsStub(channel).List(models_pb2.ListModelsRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_binding_off_loopback_without_a_key_warns_loudly(tmp_path):
    """The issue's stance: a warning, not a refusal (a firewall or proxy may guard the port)."""
    server = start_server(tmp_path, HERD_NO_BUNDLED="1")
    stop_server(server)
    assert "listening_without_api_key" not in server.log_text()

    (tmp_path / "exposed").mkdir()
    exposed = start_server(tmp_path / "exposed", bind="0.0.0.0", HERD_NO_BUNDLED="1")
    try:
        assert_still_serving(exposed)
        log = exposed.log_text()
        events = [json.loads(line) for line in log.splitlines() if '"listening_without_api_key"' in line]
        assert {event["process"] for event in events} == {"core", "gateway"}
        assert "WARNING: herd gateway listens on 0.0.0.0 without HERD_API_KEY" in log
        assert "WARNING: herd core listens on 0.0.0.0 without HERD_API_KEY" in log
        # Bound elsewhere than loopback, the Host header is the operator's business (as in Ollama).
        assert httpx.get(exposed.base_url + "/api/tags", headers={"Host": "models.example.com"}).status_code == 200
    finally:
        stop_server(exposed)


# --------------------------------------------------------------------------- case 24: sizes


def test_a_64_kib_header_is_refused_with_431(server):
    response = httpx.get(server.base_url + "/api/tags", headers={"X-Big": "a" * 65536})
    assert response.status_code == 431
    assert response.text == "431 Request Header Fields Too Large"
    assert_still_serving(server)


def test_a_thousand_headers_are_refused_with_431(server):
    response = httpx.get(server.base_url + "/api/tags", headers=[(f"x-{i}", "1") for i in range(1000)])
    assert response.status_code == 431
    assert_still_serving(server)


def test_a_1_gb_body_is_refused_before_it_is_sent(server):
    started = time.monotonic()
    answer = raw_http(
        server,
        b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1073741824\r\n\r\n",
        b'{"model": "' + b"a" * 60000,
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"request body too large: the limit is 104857600 bytes" in answer
    assert time.monotonic() - started < 5
    assert_still_serving(server)


def test_a_body_too_large_on_v1_is_an_openai_error(server):
    answer = raw_http(
        server,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2147483648\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413")
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["message"] == "request body too large: the limit is 104857600 bytes"
    assert error["type"] == "api_error"  # openai.NewError's type for every status but 400 and 404


def test_deeply_nested_json_is_refused(server):
    for depth in (200, 100_000):
        body = '{"model": "x", "options": ' + "[" * depth + "]" * depth + "}"
        response = httpx.post(server.base_url + "/api/chat", content=body)
        assert response.status_code == 400
        assert response.json() == {"error": "exceeded max depth"}
    assert_still_serving(server)


def test_a_million_messages_are_refused(server):
    body = json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}] * 1_000_000})
    started = time.monotonic()
    response = httpx.post(server.base_url + "/api/chat", content=body, timeout=120)
    assert response.status_code == 400
    assert response.json()["error"] == "too many messages: 1000000, the limit is 10000 (HERD_MAX_MESSAGES)"
    assert time.monotonic() - started < 30
    assert_still_serving(server)


def test_grpc_clients_meet_the_same_limits(server):
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        many = inference_pb2.ChatRequest(model=CHAT_MODEL, messages=[inference_pb2.Message(role="user", content="hi")] * 10_001)
        long = inference_pb2.GenerateRequest(model=CHAT_MODEL, prompt="\n" * (16 * 1024 * 1024 + 1))
        for call, request, message in (
            (stub.Chat, many, "too many messages: 10001, the limit is 10000 (HERD_MAX_MESSAGES)"),
            (stub.Generate, long, "prompt too long: 16777217 bytes, the limit is 16777216 (HERD_MAX_PROMPT_BYTES)"),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                list(call(request, timeout=60))
            assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert_still_serving(server)


# --------------------------------------------------------------------------- case 25: prompt bytes


def test_a_prompt_over_the_byte_cap_is_refused_before_tokenization(server):
    response = httpx.post(
        server.base_url + "/api/generate",
        json={"model": CHAT_MODEL, "prompt": "\n" * (16 * 1024 * 1024 + 1), "stream": False},
        timeout=120,
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("prompt too long: 16777217 bytes, the limit is 16777216")
    # On /v1 the same refusal is an OpenAI error object.
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=120)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "é" * (9 << 20)}])
    assert "prompt too long" in caught.value.message
    assert_still_serving(server)


def test_a_2_gib_prompt_is_refused_by_the_body_limit(server):
    answer = raw_http(
        server,
        b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2147483700\r\n\r\n",
        b'{"model": "smollm2:135m", "prompt": "' + b"\\n" * 30000,
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert_still_serving(server)


# --------------------------------------------------------------------------- case 26: options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_predict": -5}, 'option "num_predict" must be between -2 and 2147483647'),
        ({"num_ctx": 2**31}, 'option "num_ctx" must be between 0 and 1048576'),
        ({"top_k": -1}, 'option "top_k" must be between 0 and 1048576'),
        ({"temperature": 1e400}, 'option "temperature" must be a finite number'),
    ],
)
def test_out_of_range_options_are_refused(server, options, message):
    response = httpx.post(
        server.base_url + "/api/generate",
        content=json.dumps({"model": CHAT_MODEL, "prompt": "hi", "stream": False, "options": options}).replace(
            "Infinity", "1e400"
        ),
        timeout=120,
    )
    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert_still_serving(server)


def test_nan_and_inf_over_grpc_are_refused(server):
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        for value in (math.nan, math.inf):
            request = inference_pb2.GenerateRequest(
                model=CHAT_MODEL, prompt="hi", options=common_pb2.Options(temperature=value)
            )
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.Generate(request, timeout=60))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details() == 'option "temperature" must be a finite number'


def test_a_seed_beyond_64_bits_is_clamped_and_unknown_options_ignored(server):
    """JSON numbers past int64 are clamped as the proto field holds them; n_discard is not an option."""
    response = httpx.post(
        server.base_url + "/api/generate",
        json={"model": CHAT_MODEL, "prompt": "hi", "stream": False,
              "options": {"seed": 2**70, "n_discard": -1, "num_predict": 3}},
        timeout=300,
    )
    assert response.status_code == 200
    assert response.json()["eval_count"] == 3


# --------------------------------------------------------------------------- case 30: gRPC limits


def test_a_1_ms_deadline_is_deadline_exceeded(server):
    with grpc.insecure_channel(server.grpc_address) as channel:
        request = inference_pb2.GenerateRequest(model=CHAT_MODEL, prompt="Tell me a story")
        with pytest.raises(grpc.RpcError) as caught:
            list(inference_pb2_grpc.InferenceStub(channel).Generate(request, timeout=0.001))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_still_serving(server)


def test_a_deadline_mid_generation_stops_the_work(server):
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        # Warm the model, so that the deadline falls in the middle of decoding.
        list(stub.Generate(inference_pb2.GenerateRequest(model=CHAT_MODEL, prompt="hi",
                                                         options=common_pb2.Options(num_predict=1)), timeout=300))
        endless = inference_pb2.GenerateRequest(
            model=CHAT_MODEL, prompt="Count to a million:", options=common_pb2.Options(num_predict=-2, temperature=0)
        )
        received = 0
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stub.Generate(endless, timeout=3):
                received += 1
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert received > 0
        # With the work stopped the runner's slot is free: a short request is answered at once.
        started = time.monotonic()
        short = inference_pb2.GenerateRequest(model=CHAT_MODEL, prompt="hi", options=common_pb2.Options(num_predict=2))
        assert list(stub.Generate(short, timeout=60))[-1].done
        assert time.monotonic() - started < 20
    assert '"event": "sequence_cancelled"' in server.log_text()


def test_a_message_over_the_limit_is_resource_exhausted(server):
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(server.grpc_address, options=options) as channel:
        request = inference_pb2.EmbedRequest(model=CHAT_MODEL, input=["a" * (129 << 20)])
        with pytest.raises(grpc.RpcError) as caught:
            inference_pb2_grpc.InferenceStub(channel).Embed(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serving(server)


AGGRESSIVE_CLIENT = """
import sys, time, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
# A ping every 100 ms (the client library sends at most one a second), with or without calls.
options = [("grpc.keepalive_time_ms", 100), ("grpc.keepalive_permit_without_calls", 1),
           ("grpc.http2.max_pings_without_data", 0)]
with grpc.insecure_channel(sys.argv[1], options=options) as channel:
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    time.sleep(8)
"""


def test_aggressive_keepalive_pings_get_goaway_and_the_server_stays_healthy(server, tmp_path):
    script = tmp_path / "pinger.py"
    script.write_text(AGGRESSIVE_CLIENT)
    done = subprocess.run([sys.executable, str(script), server.grpc_address], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
    # The client library logs the server's GOAWAY (ENHANCE_YOUR_CALM, "too_many_pings").
    assert "too_many_pings" in done.stderr
    with grpc.insecure_channel(server.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert_still_serving(server)
