"""The pure pieces of the network defences and limits: origins, hosts, the key comparison, depth."""

from __future__ import annotations

import hmac
import ipaddress

import pytest

from herd.auth import bearer_matches, is_loopback_host
from herd.core.errors import InvalidRequest
from herd.core.limits import RequestLimits
from herd.core.settings import CoreSettings
from herd.rest.errors import ApiError
from herd.rest.ollama.parsing import json_depth, parse_json_body
from herd.rest.security import BadOrigin, OriginPolicy, default_origins, ip_is_allowed, is_local_name, request_host
from herd.rest.settings import GatewaySettings
from herd.v1 import inference_pb2
from tests.fake_core import FakeCore, gateway, run


def policy(extra: str = "") -> OriginPolicy:
    return OriginPolicy.from_origins(default_origins(extra))


@pytest.mark.parametrize(
    "origin",
    ["http://localhost", "https://localhost:3000", "http://127.0.0.1:8080", "http://0.0.0.0:1", "app://obsidian.md",
     "file://", "tauri://localhost", "vscode-webview://1234", "vscode-file://vscode-app"],
)
def test_ollama_default_origins_are_allowed(origin):
    assert policy().allows(origin)


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.evil", "null", "HTTP://LOCALHOST"]
)
def test_other_origins_are_not(origin):
    assert not policy().allows(origin)


def test_ollama_origins_entries_and_wildcards():
    configured = policy("https://chat.example,https://*.trusted.example,chrome-extension://*")
    assert configured.allows("https://chat.example")
    assert configured.allows("https://a.trusted.example")
    assert configured.allows("chrome-extension://abcdef")
    assert not configured.allows("https://trusted.example.evil")
    assert not configured.allows("https://chat.example.evil")


def test_a_star_allows_every_origin():
    assert policy("*").allow_all and policy("*").allows("https://anything.example")


@pytest.mark.parametrize(("entry", "message"), [("evil.example", "bad origin"), ("https://*.*.example", "only one *")])
def test_origins_ollama_refuses_to_start_with(entry, message):
    with pytest.raises(BadOrigin, match=message):
        policy(entry)


@pytest.mark.parametrize(
    ("header", "host"),
    [("localhost:11434", "localhost"), ("[::1]:11434", "::1"), ("[::1]", "::1"), ("[::1", "[::1"), ("evil.example", "evil.example")],
)
def test_request_host_splits_as_go_does(header, host):
    assert request_host(header) == host


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("::ffff:127.0.0.1", True), ("10.0.0.1", True),
     ("172.16.5.4", True), ("192.168.0.9", True), ("fd00::1", True), ("0.0.0.0", True), ("::", True),
     ("203.0.113.7", False), ("8.8.8.8", False), ("169.254.169.254", False), ("100.64.0.1", False),
     ("198.51.100.2", True)],
)
def test_ip_hosts_as_ollama_allows_them(ip, allowed):
    # 198.51.100.2 stands for one of this machine's own addresses.
    assert ip_is_allowed(ipaddress.ip_address(ip), lambda: {"198.51.100.2"}) is allowed


@pytest.mark.parametrize(
    ("name", "allowed"),
    [("", True), ("localhost", True), ("LOCALHOST", True), ("mybox", True), ("MyBox", True), ("a.localhost", True),
     ("printer.local", True), ("svc.internal", True), ("evil.example", False), ("localhost.evil.example", False),
     ("internal", False), ("local", False)],
)
def test_names_as_ollama_allows_them(name, allowed):
    assert is_local_name(name, "mybox") is allowed


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("[::1]", True),
                                                ("localhost", True), ("0.0.0.0", False), ("10.1.1.1", False)])
def test_loopback_binds(host, loopback):
    assert is_loopback_host(host) is loopback


def test_bearer_key_comparison():
    key = b"s3cret"
    assert bearer_matches("Bearer s3cret", key)
    assert bearer_matches("bearer s3cret", key)
    assert not bearer_matches("Bearer s3cre", key)
    assert not bearer_matches("Basic s3cret", key)
    assert not bearer_matches(None, key)
    assert not bearer_matches("Bearer s3crét", key)


def test_the_key_is_compared_in_constant_time(monkeypatch):
    """A key compared byte by byte would tell an attacker how much of a guess is right.

    Timing cannot show it from Python: copying and encoding the header cost far more than the
    comparison, so even ``==`` measures the same for a wrong first and a wrong last byte. What
    keeps it true is the comparison itself, so that is what this pins.
    """
    compared = []
    compare_digest = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr("herd.auth.hmac.compare_digest", spy)
    assert not bearer_matches("Bearer xecret", b"secret")
    assert not bearer_matches("Bearer secrex", b"secret")
    assert bearer_matches("Bearer secret", b"secret")
    assert compared == [(b"xecret", b"secret"), (b"secrex", b"secret"), (b"secret", b"secret")]


def test_json_depth():
    assert json_depth(1) == 0
    assert json_depth([]) == 1
    assert json_depth({"a": [{"b": []}], "c": 1}) == 4
    nested: list = []
    for _ in range(4999):
        nested = [nested]
    assert json_depth(nested) == 5000


@pytest.mark.parametrize("depth", [129, 2000, 100_000])
def test_bodies_nested_too_deep_are_refused(depth):
    with pytest.raises(ApiError) as caught:
        parse_json_body(b'{"a": ' + b"[" * depth + b"]" * depth + b"}")
    assert (caught.value.status, caught.value.message) == (400, "exceeded max depth")


def test_nesting_within_the_limit_and_brackets_in_strings_are_fine():
    assert json_depth(parse_json_body(b"[" * 128 + b"]" * 128)) == 128
    assert parse_json_body(b'{"prompt": "' + b"[{" * 5000 + b'"}') == {"prompt": "[{" * 5000}


def test_prompt_bytes_are_counted_in_utf8():
    limits = RequestLimits(max_prompt_bytes=10, max_messages=2)
    limits.check_generate(inference_pb2.GenerateRequest(prompt="éééé", system="ab"))  # 8 + 2 bytes
    with pytest.raises(InvalidRequest, match="prompt too long: 11 bytes, the limit is 10"):
        limits.check_generate(inference_pb2.GenerateRequest(prompt="ééééé", suffix="a"))


def test_messages_are_counted_and_their_text_summed():
    limits = RequestLimits(max_prompt_bytes=10, max_messages=2)
    message = inference_pb2.Message(role="user", content="12345")
    limits.check_chat(inference_pb2.ChatRequest(messages=[message, message]))
    with pytest.raises(InvalidRequest, match="too many messages: 3, the limit is 2"):
        limits.check_chat(inference_pb2.ChatRequest(messages=[message] * 3))
    with pytest.raises(InvalidRequest, match="prompt too long"):
        limits.check_chat(inference_pb2.ChatRequest(messages=[message, inference_pb2.Message(content="123456")]))


def test_embed_inputs_are_limited_one_by_one():
    limits = RequestLimits(max_prompt_bytes=10, max_messages=2)
    limits.check_embed(inference_pb2.EmbedRequest(input=["a" * 10] * 1000))
    with pytest.raises(InvalidRequest):
        limits.check_embed(inference_pb2.EmbedRequest(input=["a", "b" * 11]))


# --------------------------------------------------------------------------- the gateway's guards (fake core)


def test_options_is_answered_for_a_local_name_and_left_to_the_router_for_an_ip():
    async def scenario():
        async with gateway(FakeCore()) as client:
            named = await client.options("/api/tags", headers={"Host": "localhost:11434"})
            assert named.status_code == 204
            by_ip = await client.options("/api/tags")
            assert (by_ip.status_code, by_ip.text) == (405, "405 method not allowed")
            refused = await client.get("/no/such/path", headers={"Host": "evil.example"})
            assert refused.status_code == 403

    run(scenario)


def test_limits_come_from_settings():
    async def scenario():
        async with gateway(FakeCore(), max_body_bytes=1000, max_headers=10) as client:
            native = await client.post("/api/chat", content=b"{" + b" " * 2000 + b"}")
            assert native.status_code == 413
            assert native.json() == {"error": "request body too large: the limit is 1000 bytes"}
            openai = await client.post("/v1/embeddings", content=b" " * 2000)
            assert openai.status_code == 413
            assert openai.json()["error"]["message"] == "request body too large: the limit is 1000 bytes"
            many = await client.get("/api/version", headers={f"x-{i}": "1" for i in range(11)})
            assert (many.status_code, many.text) == (431, "431 Request Header Fields Too Large")
            assert (await client.get("/api/version")).status_code == 200
            # Blobs are streamed to core, never held whole: the body limit is not theirs (this fake
            # core cannot store them, and Sanic drops the connection of a failed upload: last here).
            blob = await client.post("/api/blobs/sha256:" + "0" * 64, content=b"x" * 2000)
            assert blob.status_code == 500

    run(scenario)


def test_api_key_is_checked_after_cors_so_preflights_pass():
    async def scenario():
        async with gateway(FakeCore(), api_key="k") as client:
            preflight = await client.options(
                "/v1/chat/completions", headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"}
            )
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
            refused = await client.get("/v1/models", headers={"Origin": "http://localhost:5173"})
            assert refused.status_code == 401
            # The browser may read the refusal: it carries the allow header.
            assert refused.headers["access-control-allow-origin"] == "http://localhost:5173"

    run(scenario)


def test_limits_and_tls_settings_from_the_environment():
    gateway_settings = GatewaySettings.from_env(
        {"HERD_MAX_BODY_BYTES": "2048", "HERD_MAX_HEADERS": "x", "OLLAMA_ORIGINS": "'https://a.example'",
         "HERD_GRPC_TLS_CA": "/etc/herd/ca.pem"}
    )
    assert (gateway_settings.max_body_bytes, gateway_settings.max_headers) == (2048, 100)
    assert (gateway_settings.origins, gateway_settings.grpc_tls_ca) == ("https://a.example", "/etc/herd/ca.pem")
    core_settings = CoreSettings.from_env(
        {"HERD_API_KEY": "k", "HERD_GRPC_TLS_CERT": "c.pem", "HERD_GRPC_TLS_KEY": "k.pem",
         "HERD_MAX_PROMPT_BYTES": "100", "HERD_MAX_MESSAGES": "0", "HERD_GRPC_MAX_MESSAGE_BYTES": "4096"}
    )
    assert (core_settings.api_key, core_settings.tls_cert, core_settings.tls_key) == ("k", "c.pem", "k.pem")
    assert (core_settings.max_prompt_bytes, core_settings.max_messages) == (100, 10_000)
    assert core_settings.grpc_max_message_bytes == 4096


def test_the_gateway_refuses_too_many_messages_before_translating_them():
    async def scenario():
        core = FakeCore()
        async with gateway(core, max_messages=3) as client:
            messages = [{"role": "user", "content": "hi"}] * 4
            native = await client.post("/api/chat", json={"model": "m", "messages": messages})
            assert (native.status_code, native.json()) == (
                400, {"error": "too many messages: 4, the limit is 3 (HERD_MAX_MESSAGES)"}
            )
            chat = await client.post("/v1/chat/completions", json={"model": "m", "messages": messages})
            assert chat.json()["error"]["message"] == "too many messages: 4, the limit is 3 (HERD_MAX_MESSAGES)"
            responses = await client.post("/v1/responses", json={"model": "m", "input": messages})
            assert responses.status_code == 400
        assert core.calls == []

    run(scenario)
