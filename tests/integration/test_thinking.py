"""Thinking on a model built from the bundled weights with a template that opens a <think> block."""

from __future__ import annotations

import ollama
import pytest

from tests.conftest import CHAT_MODEL

pytestmark = pytest.mark.integration

# ChatML whose assistant turn starts inside <think> when the request thinks: SmolLM2 then writes
# its reasoning there. (At 135M parameters it rarely closes the block on its own.)
THINKING_TEMPLATE = """\
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}<|im_end|>
{{ end }}
{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant
{{ if $.Think }}<think>
{{ end }}{{ end }}
{{- end }}"""

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "num_predict": 24}


@pytest.fixture(scope="module")
def thinker(server) -> str:
    client = ollama.Client(host=server.base_url, timeout=300)
    client.create("smol-thinker", from_=CHAT_MODEL, template=THINKING_TEMPLATE, stream=False)
    yield "smol-thinker"
    client.delete("smol-thinker")


def test_a_template_with_thinking_gives_the_capability(client, thinker):
    assert "thinking" in client.show(thinker).capabilities


def test_thinking_goes_to_message_thinking(client, thinker):
    reply = client.chat(thinker, messages=QUESTION, think=True, options=GREEDY)
    assert reply.message.thinking and "<think>" not in reply.message.thinking
    assert "<think>" not in reply.message.content
    # A thinking model thinks when not told otherwise, as in Ollama.
    assert client.chat(thinker, messages=QUESTION, options=GREEDY).message.thinking == reply.message.thinking


def test_think_false_answers_without_thinking(client, thinker):
    reply = client.chat(thinker, messages=QUESTION, think=False, options=GREEDY)
    assert not reply.message.thinking
    assert "Paris" in reply.message.content


def test_thinking_streams_and_generate_has_it_too(client, thinker):
    chunks = list(client.chat(thinker, messages=QUESTION, think="high", options=GREEDY, stream=True))
    assert sum(1 for chunk in chunks if chunk.message.thinking) >= 2
    assert chunks[-1].done
    generated = client.generate(thinker, "What is the capital of France?", think=True, options=GREEDY)
    assert generated.thinking and not generated.response.startswith("<think>")
