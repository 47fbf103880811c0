"""Thinking split from the answer in scripted output, the tags taken from the template."""

from __future__ import annotations

import pytest

from herd.core.thinking import DEFAULT_TAGS, ThinkingParser, thinking_tags


def run(pieces: list[str], prompt: str = "", tags: tuple[str, str] = DEFAULT_TAGS) -> tuple[str, str]:
    parser = ThinkingParser(*tags, prompt=prompt)
    thinking = content = ""
    for piece in pieces:
        thought, said = parser.feed(piece)
        thinking, content = thinking + thought, content + said
    thought, said = parser.finish()
    return thinking + thought, content + said


def test_tags_come_from_the_text_around_thinking_in_the_template():
    assert thinking_tags("{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}") == DEFAULT_TAGS
    assert thinking_tags("{{- if .Thinking }}[THINK]{{- .Thinking -}}[/THINK]{{ end }}") == ("[THINK]", "[/THINK]")
    assert thinking_tags("{{ .Prompt }}") == DEFAULT_TAGS


@pytest.mark.parametrize("split", [lambda text: [text], list])
def test_a_reply_that_opens_with_the_tag_is_thinking_then_answer(split):
    text = "  <think>\nFirst, recall facts.\n</think>\n\nParis."
    assert run(split(text)) == ("First, recall facts.\n", "Paris.")


def test_a_reply_without_the_tag_is_all_answer():
    assert run(list("Paris is the capital. <think>not this</think>")) == (
        "", "Paris is the capital. <think>not this</think>")


def test_a_prompt_that_opened_the_block_makes_the_reply_start_inside_it():
    assert run(list("hmm, France.</think>Paris"), prompt="<|im_start|>assistant\n<think>\n") == ("hmm, France.", "Paris")


def test_a_block_never_closed_is_all_thinking():
    assert run(list("<think>still going </thi")) == ("still going </thi", "")


def test_other_tags_work_the_same():
    assert run(list("[THINK]a[/THINK]b"), tags=("[THINK]", "[/THINK]")) == ("a", "b")
