"""Hybrid cloud mode through the real server: cloud names go to a fake ollama.com (signed with
the temp HOME's key) or to a second herd (with an API key), local names to the bundled model."""

from __future__ import annotations

import base64
import http.client
import json
import time

import httpx
import ollama
import openai
import pytest
import zstandard

from tests.conftest import CHAT_MODEL, start_server, stop_server
from tests.fake_cloud import FakeCloud, Reply, json_reply, ndjson, sse
from tests.integration.test_cli import herd

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
UNAUTHORIZED = {"error": "unauthorized"}


def _chat_line(content: str, done: bool = False) -> dict:
    return {"model": "gpt-oss:20b", "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": content}, "done": done}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with FakeCloud(home=home).running() as fake:
        tmp = tmp_path_factory.mktemp("herd-cloud")
        server = start_server(tmp, HOME=str(home), OLLAMA_CLOUD_BASE_URL=fake.url)
        fake.server = server
        yield fake
        stop_server(server)


@pytest.fixture
def fake(cloud) -> FakeCloud:
    cloud.requests.clear()
    return cloud


def test_serve_made_the_key_in_home(fake):
    key = fake.home / ".ollama" / "id_ed25519"
    assert key.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert key.stat().st_mode & 0o777 == 0o600
    assert "Generating new private key" in fake.server.log_text()


def test_cloud_chat_streams_signed_and_first_line_arrives_while_upstream_generates(fake):
    fake.reply(ndjson(_chat_line("Par"), _chat_line("is"), _chat_line("", done=True), delay=0.7))
    client = ollama.Client(host=fake.server.base_url, headers={"Authorization": "Bearer client-secret"})
    started = time.monotonic()
    stream = client.chat(model="gpt-oss:20b:cloud", messages=QUESTION, stream=True)
    first = next(stream)
    first_at = time.monotonic() - started
    rest = list(stream)
    assert first_at < 0.5, first_at
    assert time.monotonic() - started >= 1.4
    assert first.message.content + "".join(chunk.message.content for chunk in rest) == "Paris"

    [sent] = fake.requests
    assert (sent.method, sent.path, sent.credential) == ("POST", "/api/chat", "signature")
    assert sent.json()["model"] == "gpt-oss:20b"
    assert sent.json()["messages"] == QUESTION
    assert abs(int(sent.query["ts"][0]) - time.time()) < 60
    assert sent.headers["x-ollama-client-version"]
    assert "client-secret" not in sent.headers["authorization"]


def test_local_and_cloud_models_in_one_client_session(fake):
    fake.reply(ndjson(_chat_line("from the cloud", done=True)))
    client = ollama.Client(host=fake.server.base_url, timeout=300)
    local = client.chat(model=CHAT_MODEL, messages=QUESTION, options={"num_predict": 8, "temperature": 0})
    remote = client.chat(model="kimi-k2.5:cloud", messages=QUESTION)
    local_again = client.chat(model=CHAT_MODEL + ":local", messages=QUESTION, options={"num_predict": 8})
    assert local.message.content and local_again.message.content
    assert remote.message.content == "from the cloud"
    assert [sent.json()["model"] for sent in fake.requests] == ["kimi-k2.5"]
    # Core never saw the cloud model: it is not running.
    assert [m.model for m in client.ps().models] == [CHAT_MODEL]


def _zstd_post(server, path: str, body: bytes) -> httpx.Response:
    return httpx.post(server.base_url + path, content=body, timeout=300,
                      headers={"Content-Encoding": "zstd", "Content-Type": "application/json"})


def test_zstd_request_bodies_reach_the_cloud_and_the_local_model_decompressed(fake):
    fake.reply(json_reply({"answer": 42}))
    compress = zstandard.ZstdCompressor().compress
    remote = _zstd_post(fake.server, "/api/chat", compress(json.dumps({"model": "x:cloud", "messages": QUESTION}).encode()))
    assert (remote.status_code, remote.json()) == (200, {"answer": 42})
    [sent] = fake.requests
    assert sent.json() == {"model": "x", "messages": QUESTION}
    assert "content-encoding" not in sent.headers
    local = _zstd_post(fake.server, "/api/generate", compress(json.dumps(
        {"model": CHAT_MODEL, "prompt": "Say hello.", "stream": False, "options": {"num_predict": 4}}).encode()))
    assert local.status_code == 200 and local.json()["response"]


def test_bad_or_oversized_zstd_bodies_are_400s(fake):
    bad = _zstd_post(fake.server, "/api/chat", b"not zstd at all")
    assert (bad.status_code, bad.json()) == (400, {"error": "failed to decompress request body"})
    # 21 MiB once decompressed, 1 kB on the wire: refused at Ollama's 20 MiB cap.
    bomb = zstandard.ZstdCompressor().compress(b'{"model":"x:cloud","pad":"' + b" " * (21 << 20) + b'"}')
    assert len(bomb) < 4096
    refused = _zstd_post(fake.server, "/v1/chat/completions", bomb)
    assert (refused.status_code, refused.json()["error"]["message"]) == (400, "http: request body too large")
    assert fake.requests == []
    assert httpx.get(fake.server.base_url + "/api/version").status_code == 200


def test_cloud_suffix_wins_over_a_local_model_of_that_name(fake):
    client = ollama.Client(host=fake.server.base_url)
    client.copy(CHAT_MODEL, "mine:v-cloud")
    fake.reply(ndjson({"model": "mine:v", "response": "upstream", "done": True}))
    assert client.generate(model="mine:v-cloud", prompt="hi").response == "upstream"
    assert [sent.json()["model"] for sent in fake.requests] == ["mine:v"]


def test_delete_normalises_a_cloud_name_to_the_stub_spelling(fake):
    client = ollama.Client(host=fake.server.base_url)
    client.copy(CHAT_MODEL, "stub:8b-cloud")
    client.delete("stub:8b:cloud")
    assert "stub:8b-cloud" not in [m.model for m in client.list().models]
    assert fake.requests == []


def test_both_suffixes_are_refused_without_an_upstream_call(fake):
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=fake.server.base_url).chat(model="foo:cloud:local", messages=QUESTION)
    assert (refused.value.status_code, refused.value.error) == (
        400, 'use either :local or :cloud, not both: "foo:cloud:local"')
    assert fake.requests == []


def test_openai_sse_passes_through_byte_for_byte_with_query(fake):
    events = [{"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
              {"id": "c1", "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, "[DONE]"]
    fake.reply(sse(*events, delay=0.3))
    sent_body = {"model": "gpt-oss:120b-cloud", "messages": QUESTION, "stream": True, "extra_field": [1, 2]}
    with httpx.stream("POST", fake.server.base_url + "/v1/chat/completions?beta=true", json=sent_body,
                      headers={"Connection": "keep-alive, X-Drop-Me", "X-Drop-Me": "1", "X-Keep": "yes"}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/event-stream"
        body = b"".join(reply.iter_bytes())
    assert body == b"".join(part for _, part in sse(*events).parts)
    assert body.endswith(b"data: [DONE]\n\n")
    [sent] = fake.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.target.startswith("/v1/chat/completions?beta=true&ts=")
    assert sent.json() == {**sent_body, "model": "gpt-oss:120b"}
    assert sent.headers["x-keep"] == "yes"
    assert "x-drop-me" not in sent.headers and "keep-alive" not in sent.headers

    client = openai.OpenAI(base_url=fake.server.base_url + "/v1", api_key="client-key", max_retries=0)
    fake.reply(sse(*events))
    chunks = list(client.chat.completions.create(model="gpt-oss:120b-cloud", messages=QUESTION, stream=True))
    assert chunks[0].choices[0].delta.content == "Hi"
    assert "client-key" not in fake.requests[-1].headers["authorization"]


@pytest.mark.parametrize(
    ("method", "path", "body", "upstream_path"),
    [
        ("POST", "/api/generate", {"model": "x:cloud", "prompt": "hi"}, "/api/generate"),
        ("POST", "/api/embed", {"model": "x:cloud", "input": "hi"}, "/api/embed"),
        ("POST", "/api/embeddings", {"model": "x:cloud", "prompt": "hi"}, "/api/embeddings"),
        ("POST", "/api/show", {"model": "x:cloud"}, "/api/show"),
        ("POST", "/v1/completions", {"model": "x:cloud", "prompt": "hi"}, "/v1/completions"),
        ("POST", "/v1/embeddings", {"model": "x:cloud", "input": "hi"}, "/v1/embeddings"),
        ("POST", "/v1/responses", {"model": "x:cloud", "input": "hi"}, "/v1/responses"),
        ("POST", "/v1/messages", {"model": "x:cloud", "max_tokens": 8, "messages": QUESTION}, "/v1/messages"),
        ("GET", "/v1/models/x:cloud", None, "/v1/models/x"),
        ("POST", "/api/experimental/web_search", {"query": "herd"}, "/api/web_search"),
        ("POST", "/api/experimental/web_fetch", {"url": "https://example.com"}, "/api/web_fetch"),
    ],
)
def test_every_cloud_route_is_proxied(fake, method, path, body, upstream_path):
    fake.reply(json_reply({"answer": 42}, headers={"X-Upstream": "yes"}))
    reply = httpx.request(method, fake.server.base_url + path, json=body, headers={"Authorization": "Bearer other"})
    assert (reply.status_code, reply.json(), reply.headers["x-upstream"]) == (200, {"answer": 42}, "yes")
    [sent] = fake.requests
    assert (sent.method, sent.path, sent.credential) == (method, upstream_path, "signature")
    if body and "model" in body:
        assert sent.json()["model"] == "x"


def test_anthropic_messages_stream_from_the_cloud_and_refuse_local_models(fake):
    """What Claude Code sends (``/v1/messages?beta=true``, SSE) passes through with its query; a
    local model gets Anthropic's error shape, as herd serves that API for cloud models only."""
    events = ['event: message_start\ndata: {"type":"message_start"}\n\n',
              'event: message_stop\ndata: {"type":"message_stop"}\n\n']
    fake.reply(Reply(parts=[(0.0, event.encode()) for event in events],
                     headers={"Content-Type": "text/event-stream"}))
    body = {"model": "claude-ish:cloud", "max_tokens": 16, "stream": True, "messages": QUESTION}
    with httpx.stream("POST", fake.server.base_url + "/v1/messages?beta=true", json=body) as streamed:
        assert streamed.read().decode() == "".join(events)
    [sent] = fake.requests
    assert (sent.path, sent.query["beta"], sent.json()["model"]) == ("/v1/messages", ["true"], "claude-ish")
    local = httpx.post(fake.server.base_url + "/v1/messages", json={**body, "model": CHAT_MODEL})
    assert local.status_code == 404
    assert local.json()["type"] == "error" and local.json()["error"]["type"] == "not_found_error"
    assert CHAT_MODEL in local.json()["error"]["message"]
    no_name = httpx.post(fake.server.base_url + "/v1/messages", json={**body, "model": 5})
    assert (no_name.status_code, no_name.json()["error"]["type"]) == (400, "invalid_request_error")
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        json_reply(UNAUTHORIZED, 401),
        json_reply({"error": "too many requests"}, 429, headers={"Retry-After": "7"}),
        json_reply({"error": "service unavailable"}, 503),
        Reply(status=307, headers={"Location": "http://127.0.0.1:9/api/chat"}),
    ],
)
def test_upstream_errors_and_redirects_are_relayed_verbatim(fake, reply):
    fake.reply(reply)
    answer = httpx.post(fake.server.base_url + "/api/chat", json={"model": "x:cloud", "messages": QUESTION})
    assert answer.status_code == reply.status
    assert answer.content == b"".join(part for _, part in reply.parts)
    for name, value in reply.headers.items():
        assert answer.headers[name] == value
    assert len(fake.requests) == 1  # the redirect was not followed


def test_gzip_bodies_reach_the_client_intact(fake):
    fake.reply(json_reply({"embeddings": [[0.5]]}, gzipped=True))
    reply = httpx.post(fake.server.base_url + "/api/embed", json={"model": "x:cloud", "input": "hi"})
    assert reply.json() == {"embeddings": [[0.5]]}
    assert reply.headers["content-encoding"] == "gzip"
    # A client that names no encoding gets the body decoded, as Go's transport does.
    fake.reply(json_reply({"embeddings": [[0.5]]}, gzipped=True))
    connection = http.client.HTTPConnection(*fake.server.base_url.removeprefix("http://").split(":"))
    body = json.dumps({"model": "x:cloud", "input": "hi"}).encode()
    connection.putrequest("POST", "/api/embed", skip_accept_encoding=True)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    raw = connection.getresponse()
    assert raw.getheader("content-encoding") is None
    assert json.loads(raw.read()) == {"embeddings": [[0.5]]}
    assert fake.requests[-1].headers["accept-encoding"] == "gzip"


def test_dropped_ndjson_stream_ends_with_an_error_line_promptly(fake):
    fake.reply(ndjson(_chat_line("Par"), _chat_line("is"), delay=0.2, drop=True))
    stream = ollama.Client(host=fake.server.base_url).chat(model="x:cloud", messages=QUESTION, stream=True)
    started = time.monotonic()
    with pytest.raises(ollama.ResponseError) as dropped:
        for _ in stream:
            pass
    assert time.monotonic() - started < 1.5
    assert "ended the response early" in dropped.value.error


def test_dropped_sse_stream_ends_with_an_error_event(fake):
    fake.reply(sse({"id": "c1", "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": "Hi"}}]}, drop=True))
    client = openai.OpenAI(base_url=fake.server.base_url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIError, match="ended the response early"):
        list(client.chat.completions.create(model="x:cloud", messages=QUESTION, stream=True))


def test_client_disconnect_cancels_the_upstream_call(fake):
    lines = [_chat_line(str(i)) for i in range(50)]
    fake.reply(ndjson(*lines, delay=0.1))
    with httpx.stream("POST", fake.server.base_url + "/api/chat", json={"model": "x:cloud", "messages": QUESTION}) as reply:
        next(reply.iter_lines())
    assert fake.closed_early.wait(timeout=3)


def test_no_key_is_401_without_an_upstream_call(fake):
    key = fake.home / ".ollama" / "id_ed25519"
    saved = key.read_bytes()
    key.unlink()
    try:
        reply = httpx.post(fake.server.base_url + "/api/chat", json={"model": "x:cloud", "messages": QUESTION})
    finally:
        key.write_bytes(saved)
        key.chmod(0o600)
    assert (reply.status_code, reply.json()) == (401, UNAUTHORIZED)
    assert fake.requests == []


def test_unreachable_upstream_is_502_with_a_json_error(fake):
    with fake.down():
        reply = httpx.post(fake.server.base_url + "/v1/chat/completions", json={"model": "x:cloud", "messages": QUESTION})
    assert reply.status_code == 502
    assert reply.json() == {"error": "cloud upstream unreachable: connection failed"}


def test_cloud_status_when_enabled(fake):
    assert httpx.get(fake.server.base_url + "/api/status").json() == {"cloud": {"disabled": False, "source": "none"}}


def test_herd_run_and_show_reach_a_cloud_model(fake):
    def script(recorded):
        if recorded.path == "/api/show":
            return json_reply({"details": {"family": "gptoss"}, "capabilities": ["completion"],
                               "model_info": {"general.architecture": "gptoss"}})
        return ndjson({"model": "gpt-oss:20b", "response": "Paris", "done": False},
                      {"model": "gpt-oss:20b", "response": ".", "done": True})

    fake.reply(script)
    ran = herd(fake.server, "run", "gpt-oss:20b-cloud", "What is the capital of France?")
    assert ran.stdout.strip() == "Paris.", ran.stderr
    assert [(sent.path, sent.json()["model"]) for sent in fake.requests] == [
        ("/api/show", "gpt-oss:20b"), ("/api/generate", "gpt-oss:20b")]
    shown = herd(fake.server, "show", "gpt-oss:20b-cloud")
    assert "gptoss" in shown.stdout, shown.stderr


def test_account_route_and_signin(fake):
    fake.reply(json_reply({"name": "alice", "email": "a@example.com", "plan": ""}))
    me = httpx.post(fake.server.base_url + "/api/me")
    assert (me.status_code, me.json()) == (200, {"name": "alice", "email": "a@example.com", "plan": "free"})
    assert fake.requests[-1].path == "/api/me" and fake.requests[-1].credential == "signature"
    assert "You are already signed in as user 'alice'" in herd(fake.server, "signin").stdout

    fake.reply(json_reply(UNAUTHORIZED, 401))
    refused = httpx.post(fake.server.base_url + "/api/me")
    assert refused.status_code == 401
    signin_url = refused.json()["signin_url"]
    public_line = (fake.home / ".ollama" / "id_ed25519.pub").read_text().strip()
    assert signin_url.startswith("https://ollama.com/connect?name=")
    assert base64.urlsafe_b64decode(signin_url.split("&key=")[1] + "==").decode() == public_line
    printed = herd(fake.server, "signin").stdout
    assert printed == ("You need to be signed in to Ollama to run Cloud models.\n\n"
                       f"If your browser did not open, navigate to:\n    {signin_url}\n\n")

    with fake.down():
        unavailable = httpx.post(fake.server.base_url + "/api/me")
    assert (unavailable.status_code, unavailable.json()) == (503, {"error": "account unavailable"})


def test_signout_deletes_this_servers_key_upstream(fake):
    fake.reply(json_reply(None))
    reply = httpx.post(fake.server.base_url + "/api/signout")
    assert (reply.status_code, reply.text) == (200, "null")
    public_line = (fake.home / ".ollama" / "id_ed25519.pub").read_text().strip()
    deleted = fake.requests[-1]
    assert deleted.method == "DELETE" and deleted.credential == "signature"
    assert base64.urlsafe_b64decode(deleted.path.removeprefix("/api/user/keys/") + "==").decode() == public_line
    assert herd(fake.server, "signout").stdout == "You have signed out of ollama.com\n\n"

    fake.reply(json_reply(UNAUTHORIZED, 401))
    refused = httpx.request("DELETE", fake.server.base_url + "/api/user/keys/anything")  # Ollama's older route
    assert (refused.status_code, refused.json()) == (401, {"error": "you are not currently signed in"})
    assert herd(fake.server, "signout").stdout == "You are not signed in to ollama.com\n\n"

    with fake.down():
        failed = httpx.post(fake.server.base_url + "/api/signout")
    assert (failed.status_code, failed.json()) == (500, {"error": "there was an error signing out"})


def test_disabled_cloud_refuses_with_ollamas_strings(tmp_path):
    home = tmp_path / "home"
    (home / ".ollama").mkdir(parents=True)
    (home / ".ollama" / "server.json").write_text('{"disable_ollama_cloud": true}')
    with FakeCloud(home=home).running() as fake:
        server = start_server(tmp_path, HOME=str(home), OLLAMA_NO_CLOUD="1", HERD_NO_BUNDLED="1",
                              OLLAMA_CLOUD_BASE_URL=fake.url)
        try:
            base = server.base_url
            assert httpx.get(base + "/api/status").json() == {"cloud": {"disabled": True, "source": "both"}}
            cases = [
                ("POST", "/api/chat", {"model": "x:cloud"}, "remote model is unavailable"),
                ("POST", "/v1/chat/completions", {"model": "x-cloud:8b-cloud"}, "remote model is unavailable"),
                ("POST", "/api/show", {"model": "x:cloud"}, "remote model details are unavailable"),
                ("GET", "/v1/models/x:cloud", None, "remote model details are unavailable"),
                ("POST", "/api/experimental/web_search", {"query": "q"}, "web search is unavailable"),
                ("POST", "/api/experimental/web_fetch", {"url": "u"}, "web fetch is unavailable"),
            ]
            for method, path, body, operation in cases:
                reply = httpx.request(method, base + path, json=body)
                assert (reply.status_code, reply.json()) == (403, {"error": f"ollama cloud is disabled: {operation}"})
            assert fake.requests == []
            assert '"disabled": true' in server.log_text() or '"disabled":true' in server.log_text()
        finally:
            stop_server(server)


def test_one_herd_is_anothers_cloud_with_an_api_key(tmp_path):
    """The acceptance of the issue: ollama-python and openai, local and :cloud mixed, streaming and not."""
    (tmp_path / "gpu").mkdir()
    (tmp_path / "laptop").mkdir()
    upstream = start_server(tmp_path / "gpu", HERD_API_KEY="team-key")
    laptop = start_server(tmp_path / "laptop", OLLAMA_API_KEY="team-key", OLLAMA_CLOUD_BASE_URL=upstream.base_url)
    try:
        client = ollama.Client(host=laptop.base_url, timeout=300)
        options = {"num_predict": 8, "temperature": 0}
        for model in (CHAT_MODEL, CHAT_MODEL + ":cloud"):
            reply = client.chat(model=model, messages=QUESTION, options=options)
            assert "Paris" in reply.message.content, model
            streamed = "".join(c.message.content for c in client.chat(model=model, messages=QUESTION,
                                                                      options=options, stream=True))
            assert streamed == reply.message.content, model
        assert [m.model for m in client.ps().models] == [CHAT_MODEL]
        assert [m.model for m in ollama.Client(host=upstream.base_url,
                                               headers={"Authorization": "Bearer team-key"}).ps().models] == [CHAT_MODEL]

        oai = openai.OpenAI(base_url=laptop.base_url + "/v1", api_key="not-the-team-key", max_retries=0, timeout=300)
        for model in (CHAT_MODEL, CHAT_MODEL + "-cloud"):
            done = oai.chat.completions.create(model=model, messages=QUESTION, max_tokens=8, temperature=0)
            assert "Paris" in done.choices[0].message.content, model
            chunks = oai.chat.completions.create(model=model, messages=QUESTION, max_tokens=8, temperature=0,
                                                 stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
                done.choices[0].message.content

    finally:
        stop_server(laptop)
        stop_server(upstream)
