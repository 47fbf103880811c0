"""Remote models (stubs): Ollama's remoteURL rules, the stub a create makes, the defaults merged
into a request for the stub's host, and the stamping of its answers."""

from __future__ import annotations

import json

import pytest

from herd.core.store.create import CreateError, CreateSpec, RemoteInfo, create_model, remote_url
from herd.core.store.manifest import MEDIA_TYPE_MODEL
from herd.core.store.store import ModelStore
from herd.rest.cloud.routes import with_cloud_host
from herd.rest.cloud.settings import CloudSettings
from herd.rest.cloud.stubs import Stub, chat_body, generate_body, stamp
from herd.v1 import models_pb2


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("ollama.com", "https://ollama.com:443"),
        ("http://ollama.com", "https://ollama.com:443"),
        ("https://ollama.com:443", "https://ollama.com:443"),
        ("gpu-box", "http://gpu-box:11434"),
        ("gpu-box:8080", "http://gpu-box:8080"),
        ("HTTPS://gpu-box/", "https://gpu-box:11434"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("[::1]", "http://[::1]:11434"),
        ("/a/../b/", "http://localhost:11434/b"),
        ("http://host:1/x/./y/", "http://host:1/x/y"),
    ],
)
def test_remote_url_follows_ollamas_rules(raw, url):
    assert remote_url(raw) == url


@pytest.mark.parametrize("raw", ["http://host:port", "http://a b", "http://host:99999", "http://\x7fhost"])
def test_remote_url_refuses_what_is_no_url(raw):
    with pytest.raises(CreateError, match="^bad remote$"):
        remote_url(raw)


def _progress(status, digest, total=0, completed=0):
    pass


def test_a_stub_is_ollamas_config_and_no_weights(tmp_path):
    store = ModelStore(tmp_path)
    spec = CreateSpec(name="m", base="gpt-oss:20b-cloud", system="Terse.", parameters={"temperature": 0.5},
                      info=RemoteInfo(model_family="gptoss", context_length=8192, capabilities=["completion"]))
    create_model(store, spec, _progress, check_template=lambda text: None)
    model = store.get("m")
    assert model.manifest.layers_of(MEDIA_TYPE_MODEL) == [] and model.model_path is None
    assert list(model.config) == ["model_format", "model_family", "model_families", "model_type", "file_type",
                                  "remote_host", "remote_model", "capabilities", "context_length",
                                  "architecture", "os"]
    assert (model.remote_host, model.remote_model, model.is_remote) == ("https://ollama.com:443", "gpt-oss:20b", True)
    assert (model.system, model.params) == ("Terse.", {"temperature": 0.5})
    assert model.model_info(verbose=False) == {"general.architecture": "gptoss", "gptoss.context_length": 8192}


def test_a_local_from_with_a_remote_host_is_a_stub_too(tmp_path):
    store = ModelStore(tmp_path)
    create_model(store, CreateSpec(name="m", base="llama3:8b", remote_host="gpu-box"), _progress, lambda text: None)
    assert (store.get("m").remote_host, store.get("m").remote_model) == ("http://gpu-box:11434", "llama3:8b")


def test_create_from_a_cloud_name_names_the_configured_upstream():
    settings = CloudSettings(base_url="http://127.0.0.1:9")
    for source, host in (("x:cloud", "http://127.0.0.1:9"), ("x:8b-cloud", "http://127.0.0.1:9"), ("x:8b", "")):
        create = models_pb2.CreateModelRequest(model="m", **{"from": source})
        with_cloud_host(create, settings)
        assert create.remote_host == host, source
    explicit = models_pb2.CreateModelRequest(model="m", remote_host="ollama.com", **{"from": "x:cloud"})
    with_cloud_host(explicit, settings)
    assert explicit.remote_host == "ollama.com"


STUB = Stub(name="mine", remote_host="https://ollama.com:443", remote_model="gpt-oss:20b", system="Terse.",
            template="{{ .Prompt }}", params={"temperature": 0.5, "stop": ["END"]},
            messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
QUESTION = [{"role": "user", "content": "Capital?"}]


def test_chat_merges_the_stubs_system_messages_and_parameters_under_the_request():
    body = chat_body({"model": "mine", "messages": QUESTION, "options": {"temperature": 0}, "stream": False}, STUB)
    assert body == {"model": "gpt-oss:20b", "stream": False, "options": {"temperature": 0, "stop": ["END"]},
                    "messages": [{"role": "system", "content": "Terse."}, *STUB.messages, *QUESTION]}
    own_system = [{"role": "system", "content": "Mine."}, *QUESTION]
    assert chat_body({"model": "mine", "messages": own_system}, STUB)["messages"] == [*STUB.messages, *own_system]
    assert "messages" not in chat_body({"model": "mine"}, STUB)


def test_generate_takes_the_stubs_system_and_template_unless_the_request_has_its_own():
    body = generate_body({"model": "mine", "prompt": "Capital?"}, STUB)
    assert body == {"model": "gpt-oss:20b", "prompt": "Capital?", "options": {"temperature": 0.5, "stop": ["END"]},
                    "template": "{{ .Prompt }}", "system": "Terse."}
    own = generate_body({"model": "mine", "prompt": "p", "system": "S", "template": "T"}, STUB)
    assert (own["system"], own["template"]) == ("S", "T")


def test_answers_are_stamped_with_the_local_name_first():
    chunk = {"model": "gpt-oss:20b", "created_at": "t", "message": {"role": "assistant", "content": "x"},
             "done": True, "remote_model": "spoofed"}
    stamped = stamp(chunk, STUB)
    assert list(stamped) == ["model", "remote_model", "remote_host", "created_at", "message", "done"]
    assert (stamped["model"], stamped["remote_model"], stamped["remote_host"]) == (
        "mine", "gpt-oss:20b", "https://ollama.com:443")
    assert json.dumps(stamped)
