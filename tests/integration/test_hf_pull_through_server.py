"""hf.co pulls through the real server, from a local Hugging Face Hub fixture behind HF_ENDPOINT."""

from __future__ import annotations

import ollama
import pytest

from tests.conftest import start_server, stop_server
from tests.hf_server import default_repos, running_hub

pytestmark = pytest.mark.integration


def test_pull_from_hf_co_and_chat(tmp_path):
    with running_hub(default_repos()) as hub:
        server = start_server(tmp_path, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"),
                              HF_HUB_DISABLE_TELEMETRY="1", HERD_NO_BUNDLED="1")
        try:
            client = ollama.Client(host=server.base_url, timeout=300)
            statuses = [p.status for p in client.pull("hf.co/test/smol", stream=True)]
            assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
            assert "hf.co/test/smol:latest" in {m.model for m in client.list().models}
            assert "completion" in client.show("hf.co/test/smol").capabilities
            # No TEMPLATE layer: the GGUF's own chat template renders the conversation.
            reply = client.chat("hf.co/test/smol", messages=[{"role": "user", "content": "Say hello."}],
                                options={"temperature": 0, "num_predict": 8})
            assert reply.message.content and reply.prompt_eval_count > 20
            with pytest.raises(ollama.ResponseError) as err:
                client.pull("hf.co/test/absent")
            assert err.value.error == "pull model manifest: file does not exist"
        finally:
            stop_server(server)
