"""Push to a real OCI registry (Debian's docker-registry), delete, pull back, chat: issue #3's loop."""

from __future__ import annotations

import pytest

from tests.conftest import CHAT_MODEL
from tests.registry_server import running_registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


def test_push_delete_pull_back_byte_identical_and_chat(client, server, registry):
    name = f"{registry}/herd/smol:v1"
    client.copy(CHAT_MODEL, name)
    manifest_path = server.models_dir / "manifests" / registry / "herd" / "smol" / "v1"
    manifest_bytes = manifest_path.read_bytes()

    pushed = [p.status for p in client.push(name, insecure=True, stream=True)]
    assert pushed[0] == "retrieving manifest" and pushed[-1] == "success"
    assert "pushing manifest" in pushed

    client.delete(name)
    assert not manifest_path.exists()

    pulled = list(client.pull(name, insecure=True, stream=True))
    statuses = [p.status for p in pulled]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    assert manifest_path.read_bytes() == manifest_bytes

    reply = client.chat(name, messages=[{"role": "user", "content": "What is the capital of France?"}],
                        options={"temperature": 0, "num_predict": 16})
    assert "Paris" in reply.message.content
    client.delete(name)


def test_pull_of_a_missing_model_is_ollamas_error(server, registry):
    import httpx

    reply = httpx.post(server.base_url + "/api/pull",
                       json={"model": f"{registry}/herd/absent:v1", "insecure": True, "stream": False}, timeout=60)
    assert reply.status_code == 500
    assert reply.json() == {"error": "pull model manifest: file does not exist"}


def test_herd_pull_and_push_print_progress(server, registry):
    from tests.integration.test_cli import herd

    name = f"{registry}/herd/cli:v1"
    assert herd(server, "cp", CHAT_MODEL, name).returncode == 0
    pushed = herd(server, "push", name, "--insecure")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stderr.splitlines()[-1] == "success"
    assert herd(server, "rm", name).returncode == 0
    pulled = herd(server, "pull", name, "--insecure")
    assert pulled.returncode == 0, pulled.stderr
    lines = pulled.stderr.splitlines()
    assert lines[0] == "pulling manifest" and lines[-1] == "success"
    # Not a terminal: each layer's bar is printed when it starts and when it is complete.
    assert any(line.startswith("pulling ") and "100% ▕" in line for line in lines)
    herd(server, "rm", name)


def test_herd_run_pulls_a_model_it_does_not_have_then_answers(server, registry):
    from tests.integration.test_cli import herd

    name = f"{registry}/herd/run:v1"
    assert herd(server, "cp", CHAT_MODEL, name).returncode == 0
    assert herd(server, "push", name, "--insecure").returncode == 0
    assert herd(server, "rm", name).returncode == 0
    ran = herd(server, "run", name, "--insecure", "What is the capital of France?")
    assert ran.returncode == 0, ran.stderr
    progress = ran.stderr.splitlines()
    assert progress[0] == "pulling manifest" and progress[-1] == "success"
    assert ran.stdout.strip()
    assert name in herd(server, "list").stdout
    herd(server, "rm", name)
