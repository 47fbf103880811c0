"""Remote models (Ollama's legacy cloud stubs) through the real server: made offline by create from a
cloud name or found in the store as ``ollama pull x:cloud`` leaves them, listed and shown from their
config, and their chats and generations sent to their host with the stub's defaults merged in."""

from __future__ import annotations

import hashlib
import json

import httpx
import ollama
import pytest

from tests.conftest import free_port, start_server, stop_server
from tests.fake_cloud import FakeCloud, json_reply, ndjson
from tests.integration.test_cli import herd

pytestmark = pytest.mark.integration

API_KEY = "cloud-key"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STUB_MESSAGES = [{"role": "user", "content": "Be brief."}, {"role": "assistant", "content": "Sure."}]
INFO = {"capabilities": ["completion", "tools"], "model_family": "gptoss", "base_name": "gpt-oss",
        "quantization_level": "MXFP4", "parameter_size": "20.9B", "context_length": 131072,
        "embedding_length": 2880}
MEDIA_MODEL = "application/vnd.ollama.image.model"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with FakeCloud(home=home, api_key=API_KEY).running() as fake, FakeCloud(open_access=True).running() as other:
        server = start_server(tmp_path_factory.mktemp("herd-stubs"), HOME=str(home), HERD_NO_BUNDLED="1",
                              OLLAMA_CLOUD_BASE_URL=fake.url, OLLAMA_API_KEY=API_KEY,
                              OLLAMA_REMOTES="127.0.0.1,localhost")
        fake.server, fake.other = server, other
        client = ollama.Client(host=server.base_url)
        client.create("stub", from_="gpt-oss:20b-cloud", system="You are terse.", messages=STUB_MESSAGES,
                      parameters={"temperature": 0.25, "stop": ["END"]})
        _create(server, {"model": "info-stub", "from": "gpt-oss:20b:cloud", "info": INFO})
        yield fake
        stop_server(server)


@pytest.fixture
def fake(cloud) -> FakeCloud:
    cloud.requests.clear()
    cloud.other.requests.clear()
    return cloud


def _create(server, body: dict) -> httpx.Response:
    return httpx.post(server.base_url + "/api/create", json={**body, "stream": False})


def _chat_line(content: str, done: bool = False) -> dict:
    return {"model": "gpt-oss:20b", "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": content}, "done": done}


def _tagged(server, name: str) -> dict:
    models = httpx.get(server.base_url + "/api/tags").json()["models"]
    return next(model for model in models if model["name"] == name)


def test_create_from_a_cloud_name_is_offline_and_stores_no_weights(fake):
    assert fake.requests == [] and fake.other.requests == []
    root = fake.server.models_dir
    manifest = json.loads((root / "manifests/registry.ollama.ai/library/stub/latest").read_text())
    assert MEDIA_MODEL not in [layer["mediaType"] for layer in manifest["layers"]]
    assert max(layer["size"] for layer in manifest["layers"]) < 1000
    config = json.loads((root / "blobs" / manifest["config"]["digest"].replace(":", "-")).read_text())
    assert (config["remote_host"], config["remote_model"]) == (fake.url, "gpt-oss:20b")
    config = json.loads(_config_of(root, "info-stub"))
    assert {key: config[key] for key in ("model_family", "model_families", "model_type", "file_type", "capabilities",
                                         "context_length", "embedding_length", "base_name")} == {
        "model_family": "gptoss", "model_families": ["gptoss"], "model_type": "20.9B", "file_type": "MXFP4",
        "capabilities": ["completion", "tools"], "context_length": 131072, "embedding_length": 2880,
        "base_name": "gpt-oss"}


def test_a_modelfile_from_a_cloud_name_makes_a_stub(fake, tmp_path):
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM gpt-oss:20b-cloud\nSYSTEM You are a pirate.\nPARAMETER temperature 0.7\n")
    created = herd(fake.server, "create", "pirate", "-f", str(modelfile))
    assert created.returncode == 0, created.stderr
    entry = _tagged(fake.server, "pirate:latest")
    assert (entry["remote_model"], entry["remote_host"]) == ("gpt-oss:20b", fake.url)
    shown = httpx.post(fake.server.base_url + "/api/show", json={"model": "pirate"}).json()
    assert shown["system"] == "You are a pirate." and "temperature" in shown["parameters"]
    assert fake.requests == []


def _config_of(root, name: str) -> str:
    manifest = json.loads((root / f"manifests/registry.ollama.ai/library/{name}/latest").read_text())
    return (root / "blobs" / manifest["config"]["digest"].replace(":", "-")).read_text()


def test_tags_and_v1_models_list_stubs_from_their_config(fake):
    entry = _tagged(fake.server, "info-stub:latest")
    assert (entry["remote_model"], entry["remote_host"]) == ("gpt-oss:20b", fake.url)
    assert list(entry)[:4] == ["name", "model", "remote_model", "remote_host"]
    assert entry["size"] < 1000
    assert entry["details"] == {"parent_model": "", "format": "", "family": "gptoss", "families": ["gptoss"],
                                "parameter_size": "20.9B", "quantization_level": "MXFP4",
                                "context_length": 131072, "embedding_length": 2880}
    assert entry["capabilities"] == ["completion", "tools"]
    ids = [model["id"] for model in httpx.get(fake.server.base_url + "/v1/models").json()["data"]]
    assert {"stub:latest", "info-stub:latest"} <= set(ids)
    one = httpx.get(fake.server.base_url + "/v1/models/info-stub").json()
    assert (one["id"], one["object"]) == ("info-stub", "model")


def test_show_reports_the_remote_model_and_the_stubs_defaults(fake):
    shown = httpx.post(fake.server.base_url + "/api/show", json={"model": "info-stub"}).json()
    assert (shown["remote_model"], shown["remote_host"]) == ("gpt-oss:20b", fake.url)
    assert shown["model_info"] == {"general.architecture": "gptoss", "general.basename": "gpt-oss",
                                   "gptoss.context_length": 131072, "gptoss.embedding_length": 2880}
    assert shown["capabilities"] == ["completion", "tools"]
    assert "context_length" not in shown["details"]
    plain = httpx.post(fake.server.base_url + "/api/show", json={"model": "stub"}).json()
    assert plain["model_info"] == {}
    assert plain["system"] == "You are terse."
    assert plain["messages"] == STUB_MESSAGES
    assert "temperature" in plain["parameters"] and "END" in plain["parameters"]
    assert fake.requests == []

    shown_by_cli = herd(fake.server, "show", "info-stub").stdout
    assert "Remote model        gpt-oss:20b" in shown_by_cli
    assert f"Remote URL          {fake.url}" in shown_by_cli
    listed = herd(fake.server, "ls").stdout.splitlines()
    stub_row = next(line for line in listed if line.startswith("info-stub:latest"))
    assert stub_row.split()[2] == "-"


@pytest.mark.parametrize("stream", [True, False])
def test_chat_goes_to_the_stubs_host_with_its_defaults(fake, stream):
    fake.reply(ndjson(_chat_line("Par"), _chat_line("is", done=True)) if stream
               else json_reply(_chat_line("Paris", done=True)))
    client = ollama.Client(host=fake.server.base_url)
    if stream:
        chunks = list(client.chat(model="stub", messages=QUESTION, options={"temperature": 0.5}, stream=True))
        assert "".join(chunk.message.content for chunk in chunks) == "Paris"
    else:
        chunks = [client.chat(model="stub", messages=QUESTION, options={"temperature": 0.5}, stream=False)]
        assert chunks[0].message.content == "Paris"
    assert {chunk.model for chunk in chunks} == {"stub"}

    [sent] = fake.requests
    assert (sent.path, sent.credential) == ("/api/chat", "bearer")
    body = sent.json()
    assert body["model"] == "gpt-oss:20b"
    assert body["messages"] == [{"role": "system", "content": "You are terse."}, *STUB_MESSAGES, *QUESTION]
    assert body["options"] == {"temperature": 0.5, "stop": ["END"]}
    # The stub was never loaded: core's scheduler never saw it.
    assert client.ps().models == []


def test_every_chunk_carries_the_local_name_and_the_remote_model(fake):
    fake.reply(ndjson(_chat_line("Par"), _chat_line("is", done=True)))
    reply = httpx.post(fake.server.base_url + "/api/chat", json={"model": "stub", "messages": QUESTION})
    assert reply.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in reply.text.splitlines()]
    assert [list(line)[:4] for line in lines] == [["model", "remote_model", "remote_host", "created_at"]] * 2
    assert {(line["model"], line["remote_model"], line["remote_host"]) for line in lines} == {
        ("stub", "gpt-oss:20b", fake.url)}

    fake.reply(json_reply(_chat_line("Paris", done=True)))
    whole = httpx.post(fake.server.base_url + "/api/chat",
                       json={"model": "stub", "messages": QUESTION, "stream": False})
    assert whole.headers["content-type"] == "application/json; charset=utf-8"
    assert (whole.json()["model"], whole.json()["remote_model"]) == ("stub", "gpt-oss:20b")


@pytest.mark.parametrize("stream", [True, False])
def test_generate_goes_to_the_stubs_host_with_its_system_and_parameters(fake, stream):
    line = {"model": "gpt-oss:20b", "created_at": "2026-01-01T00:00:00Z", "response": "Paris", "done": True}
    fake.reply(ndjson(line) if stream else json_reply(line))
    client = ollama.Client(host=fake.server.base_url)
    if stream:
        chunks = list(client.generate(model="stub", prompt="Capital of France?", stream=True))
    else:
        chunks = [client.generate(model="stub", prompt="Capital of France?", stream=False)]
    assert [(chunk.model, chunk.response) for chunk in chunks] == [("stub", "Paris")]
    body = fake.requests[-1].json()
    assert (fake.requests[-1].path, body["model"], body["prompt"]) == ("/api/generate", "gpt-oss:20b",
                                                                       "Capital of France?")
    assert (body["system"], body["options"]) == ("You are terse.", {"temperature": 0.25, "stop": ["END"]})
    assert "messages" not in body


def test_local_suffix_on_a_stub_is_not_found(fake):
    reply = httpx.post(fake.server.base_url + "/api/chat", json={"model": "stub:local", "messages": QUESTION})
    assert (reply.status_code, reply.json()) == (404, {"error": "model 'stub:local' not found"})
    assert fake.requests == []


def test_a_host_outside_ollama_remotes_is_refused(fake):
    assert _create(fake.server, {"model": "elsewhere", "from": "x", "remote_host": "example.com"}).status_code == 200
    shown = httpx.post(fake.server.base_url + "/api/show", json={"model": "elsewhere"}).json()
    assert (shown["remote_host"], shown["remote_model"]) == ("http://example.com:11434", "x")
    reply = httpx.post(fake.server.base_url + "/api/chat", json={"model": "elsewhere", "messages": QUESTION})
    assert (reply.status_code, reply.json()) == (400, {"error": "this server cannot run this remote model"})


def test_bad_remote_host_is_refused_at_create(fake):
    reply = _create(fake.server, {"model": "bad", "from": "x", "remote_host": "http://host:port"})
    assert (reply.status_code, reply.json()) == (400, {"error": "bad remote"})
    reply = _create(fake.server, {"model": "bad", "from": "x:cloud", "info": {"context_length": -1}})
    assert (reply.status_code, reply.json()) == (400, {"error": 'info field "context_length" must be a '
                                                                 'non-negative integer'})


def test_credentials_go_only_to_the_configured_upstream(fake):
    other = fake.other
    other_host = other.url  # the same host name on another port: another origin
    assert _create(fake.server, {"model": "other", "from": "x:8b", "remote_host": other_host,
                                 "system": "Other."}).status_code == 200
    other.reply(ndjson({"model": "x:8b", "response": "hi", "done": True}))
    reply = httpx.post(fake.server.base_url + "/api/generate", json={"model": "other", "prompt": "hi"},
                       headers={"Authorization": "Bearer client-secret"})
    assert json.loads(reply.text.splitlines()[0])["remote_host"] == other_host
    [sent] = other.requests
    assert "authorization" not in sent.headers
    assert "ts" not in sent.query
    assert sent.json()["model"] == "x:8b"
    assert fake.requests == []


def test_upstream_errors(fake):
    fake.reply(json_reply({"error": "unauthorized"}, 401))
    refused = httpx.post(fake.server.base_url + "/api/chat", json={"model": "stub", "messages": QUESTION})
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized"
    assert refused.json()["signin_url"].startswith("https://ollama.com/connect?name=")

    fake.reply(json_reply({"error": "model exploded"}, 500))
    failed = httpx.post(fake.server.base_url + "/api/chat", json={"model": "stub", "messages": QUESTION})
    assert (failed.status_code, failed.json()) == (500, {"error": "model exploded"})

    fake.reply(json_reply({"error": "slow down"}, 429))
    busy = httpx.post(fake.server.base_url + "/api/generate", json={"model": "stub", "prompt": "hi"})
    assert (busy.status_code, busy.json()) == (429, {"error": "slow down"})

    assert _create(fake.server, {"model": "gone", "from": "x", "remote_host": f"127.0.0.1:{free_port()}"}
                   ).status_code == 200
    unreachable = httpx.post(fake.server.base_url + "/api/chat", json={"model": "gone", "messages": QUESTION})
    assert unreachable.status_code == 500
    assert unreachable.json() == {"error": "cloud upstream unreachable: connection failed"}


def _write_blob(root, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return digest, len(data)


def test_a_stub_pulled_by_ollama_is_listed_and_usable(fake):
    """The manifest and config as Ollama's registry serves ``gpt-oss:20b-cloud`` (host pointed at the fake)."""
    root = fake.server.models_dir
    config = {"model_format": "", "model_family": "gptoss", "model_families": ["gptoss"], "model_type": "20.9B",
              "file_type": "MXFP4", "remote_host": fake.url, "remote_model": "gpt-oss:20b",
              "capabilities": ["completion", "tools", "thinking"], "context_length": 131072,
              "embedding_length": 2880, "base_name": "gpt-oss", "architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": []}}
    config_digest, config_size = _write_blob(root, json.dumps(config).encode())
    params_digest, params_size = _write_blob(root, b'{"temperature":1}')
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest,
                           "size": config_size},
                "layers": [{"mediaType": "application/vnd.ollama.image.params", "digest": params_digest,
                            "size": params_size}]}
    path = root / "manifests/registry.ollama.ai/library/pulled/20b"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))

    entry = _tagged(fake.server, "pulled:20b")
    assert (entry["remote_model"], entry["size"]) == ("gpt-oss:20b", config_size + params_size)
    assert entry["capabilities"] == ["completion", "tools", "thinking"]
    fake.reply(ndjson(_chat_line("hi", done=True)))
    reply = ollama.Client(host=fake.server.base_url).chat(model="pulled:20b", messages=QUESTION)
    assert (reply.model, reply.message.content) == ("pulled:20b", "hi")
    assert fake.requests[-1].json()["options"] == {"temperature": 1}


def test_disabled_cloud_refuses_stubs_but_creates_them(tmp_path):
    home = tmp_path / "home"
    with FakeCloud(home=home).running() as fake:
        server = start_server(tmp_path, HOME=str(home), OLLAMA_NO_CLOUD="1", HERD_NO_BUNDLED="1",
                              OLLAMA_CLOUD_BASE_URL=fake.url, OLLAMA_REMOTES="127.0.0.1")
        try:
            assert _create(server, {"model": "stub", "from": "x:cloud"}).status_code == 200
            chat = httpx.post(server.base_url + "/api/chat", json={"model": "stub", "messages": QUESTION})
            assert (chat.status_code, chat.json()) == (
                403, {"error": "ollama cloud is disabled: remote model is unavailable"})
            show = httpx.post(server.base_url + "/api/show", json={"model": "stub"})
            assert (show.status_code, show.json()) == (
                403, {"error": "ollama cloud is disabled: remote model details are unavailable"})
            assert fake.requests == []
        finally:
            stop_server(server)


def test_routes_that_do_not_forward_stubs_say_so(fake):
    chat = httpx.post(fake.server.base_url + "/v1/chat/completions", json={"model": "stub", "messages": QUESTION})
    assert chat.status_code == 400
    assert chat.json()["error"]["message"] == '"stub" is a remote model: its remote host serves it'
    embed = httpx.post(fake.server.base_url + "/api/embed", json={"model": "stub", "input": "hi"})
    assert (embed.status_code, embed.json()) == (400, {"error": '"stub" is a remote model: its remote host serves it'})
    assert fake.requests == []
