"""create, blobs, copy and delete through ollama-python, on the real bundled weights."""

from __future__ import annotations

import hashlib
import json

import httpx
import ollama
import pytest

from tests.conftest import CHAT_MODEL

pytestmark = pytest.mark.integration

GREEDY = {"temperature": 0, "num_predict": 16}


def test_create_from_an_existing_model_with_system_and_parameters(client, server):
    progress = list(client.create("pirate", from_=CHAT_MODEL, system="You are a pirate. Always say Arr.",
                                  parameters={"temperature": 0, "num_predict": 12}, stream=True))
    statuses = [p.status for p in progress]
    assert statuses[-2:] == ["writing manifest", "success"]
    assert any(s.startswith("creating new layer sha256:") for s in statuses)
    assert any(s.startswith("using existing layer sha256:") for s in statuses)
    shown = client.show("pirate")
    assert httpx.post(server.base_url + "/api/show", json={"model": "pirate"}).json()["system"] == "You are a pirate. Always say Arr."
    assert "num_predict                    12" in shown.parameters
    assert "<|im_start|>" in shown.template  # kept from the base
    reply = client.chat("pirate", messages=[{"role": "user", "content": "Hello"}])
    assert reply.message.content and reply.eval_count <= 12


def test_upload_a_gguf_blob_and_create_from_it(client, server):
    manifest = json.loads((server.models_dir / "manifests/registry.ollama.ai/library/smollm2/135m").read_text())
    model_layer = next(l for l in manifest["layers"] if l["mediaType"].endswith(".model"))
    weights = server.models_dir / "blobs" / model_layer["digest"].replace(":", "-")
    copy = server.models_dir.parent / "upload.gguf"
    copy.write_bytes(weights.read_bytes())
    digest = client.create_blob(copy)
    assert digest == model_layer["digest"]
    result = client.create("uploaded", files={"upload.gguf": digest}, template="{{ .Prompt }}", stream=False)
    assert result.status == "success"
    shown = client.show("uploaded")
    assert shown.template == "{{ .Prompt }}" and shown.details.family == "llama"
    reply = client.generate("uploaded", "The capital of France is", options=GREEDY)
    assert reply.eval_count > 0


def test_blob_endpoints_follow_ollama(server):
    data = b"not a model"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    url = f"{server.base_url}/api/blobs/{digest}"
    assert httpx.head(url).status_code == 404
    assert httpx.post(url, content=data).status_code == 201
    assert httpx.post(url, content=data).status_code == 200
    assert httpx.head(url).status_code == 200
    wrong = httpx.post(f"{server.base_url}/api/blobs/sha256:{'0' * 64}", content=data)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == f'digest mismatch, expected "sha256:{"0" * 64}", got "{digest}"'
    assert httpx.head(f"{server.base_url}/api/blobs/sha256:{'0' * 64}").status_code == 404  # nothing kept
    bad = httpx.post(f"{server.base_url}/api/blobs/sha256:../../etc", content=data)
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid digest format"})
    # A blob that is not a GGUF makes no model.
    made = httpx.post(server.base_url + "/api/create", json={"model": "junk", "files": {"x.gguf": digest}, "stream": False})
    assert (made.status_code, made.json()) == (400, {"error": "supplied file was not in GGUF format"})
    assert httpx.post(server.base_url + "/api/show", json={"model": "junk"}).status_code == 404


@pytest.mark.parametrize(
    "body, message",
    [
        ({"model": "x"}, "neither 'from' or 'files' was specified"),
        ({"model": "x", "files": {"/etc/passwd.gguf": "sha256:" + "a" * 64}}, "file path must be relative"),
        ({"model": "x", "files": {"m.gguf": "sha256:zz"}}, "invalid digest format"),
        ({"model": "bad name!", "from": CHAT_MODEL}, "invalid model name"),
        ({"model": "x", "from": CHAT_MODEL, "template": "{{ .Prompt "}, None),
    ],
)
def test_create_errors(server, body, message):
    reply = httpx.post(server.base_url + "/api/create", json={**body, "stream": False})
    assert reply.status_code == 400
    if message:
        assert reply.json() == {"error": message}
    else:
        assert reply.json()["error"].startswith("template error: ")


def test_copy_and_delete(client, server):
    client.copy(CHAT_MODEL, "copied:v1")
    names = {m.model for m in client.list().models}
    assert "copied:v1" in names and CHAT_MODEL in names
    client.delete("copied:v1")
    assert "copied:v1" not in {m.model for m in client.list().models}
    # The shared weights stay: the original still answers.
    assert client.generate(CHAT_MODEL, "Hi", options={"num_predict": 2}).done
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("copied:v1")
    assert (err.value.status_code, err.value.error) == (404, "model 'copied:v1' not found")
    with pytest.raises(ollama.ResponseError) as err:
        client.copy("nope", "other")
    assert (err.value.status_code, err.value.error) == (404, 'model "nope" not found')


def test_delete_removes_blobs_no_other_model_uses(client, server):
    client.create("ephemeral", from_=CHAT_MODEL, system="A system prompt only this model has.", stream=False)
    manifest = json.loads((server.models_dir / "manifests/registry.ollama.ai/library/ephemeral/latest").read_text())
    system_layer = next(l for l in manifest["layers"] if l["mediaType"].endswith(".system"))
    model_layer = next(l for l in manifest["layers"] if l["mediaType"].endswith(".model"))
    blob = lambda d: server.models_dir / "blobs" / d.replace(":", "-")  # noqa: E731
    assert blob(system_layer["digest"]).is_file()
    client.delete("ephemeral")
    assert not blob(system_layer["digest"]).exists()
    assert blob(model_layer["digest"]).is_file()  # still the bundled model's


def test_creating_over_a_model_removes_the_layers_only_its_old_version_used(client, server):
    def system_blob() -> str:
        manifest = json.loads((server.models_dir / "manifests/registry.ollama.ai/library/revised/latest").read_text())
        layer = next(l for l in manifest["layers"] if l["mediaType"].endswith(".system"))
        return server.models_dir / "blobs" / layer["digest"].replace(":", "-")

    client.create("revised", from_=CHAT_MODEL, system="The first version's system prompt.", stream=False)
    first = system_blob()
    client.create("revised", from_="revised", system="The second version's system prompt.", stream=False)
    assert not first.exists()
    assert system_blob().read_text() == "The second version's system prompt."
    assert client.show("revised").details.family == "llama"
    client.delete("revised")
