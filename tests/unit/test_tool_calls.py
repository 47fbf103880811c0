"""Tool calls in scripted model output: the tag from the template, streaming splits, and what is not a call."""

from __future__ import annotations

import pytest

from herd.core.templates.library import SMOLLM2_TEMPLATE
from herd.core.tools import JSON_TAG, ToolCallParser, tool_call_tag

NAMES = ["get_weather", "get_time"]


def run(tag: str, pieces: list[str]) -> tuple[str, list[tuple[str, dict]]]:
    parser = ToolCallParser(tag, NAMES)
    content, calls = "", []
    for piece in pieces:
        shown, found = parser.feed(piece)
        content += shown
        calls += found
    content += parser.finish()
    return content, [(call.name, call.arguments) for call in calls]


def one_char_at_a_time(text: str) -> list[str]:
    return list(text)


def test_the_tag_comes_from_the_templates_tool_calls_branch():
    assert tool_call_tag(SMOLLM2_TEMPLATE) == "<tool_call>"
    assert tool_call_tag("{{ if .ToolCalls }}[TOOL_CALLS] {{ range .ToolCalls }}{{ end }}{{ end }}") == "[TOOL_CALLS]"
    assert tool_call_tag('{{ if .ToolCalls }}{{ range .ToolCalls }}{"name": "x"}{{ end }}{{ end }}') == JSON_TAG
    assert tool_call_tag("{{ .Prompt }}") == JSON_TAG


SMOLLM2_CALL = '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>'


@pytest.mark.parametrize("split", [lambda text: [text], one_char_at_a_time])
def test_a_smollm2_call_becomes_one_call_with_object_arguments(split):
    assert run("<tool_call>", split(SMOLLM2_CALL)) == ("", [("get_weather", {"city": "Paris"})])


def test_text_around_calls_stays_content_and_several_calls_keep_their_order():
    text = ('Let me check. <tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
            '{"name": "get_time", "arguments": "{\\"zone\\": \\"CET\\"}"}]</tool_call> Done.')
    content, calls = run("<tool_call>", one_char_at_a_time(text))
    assert content == "Let me check.  Done."
    assert calls == [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]


def test_calls_get_ids_and_indexes():
    parser = ToolCallParser("<tool_call>", NAMES)
    _, calls = parser.feed('<tool_call>[{"name": "get_time", "arguments": {}}, {"name": "get_time", "parameters": {}}]')
    assert [call.index for call in calls] == [0, 1]
    assert all(call.id.startswith("call_") and len(call.id) == 13 for call in calls)
    assert calls[0].id != calls[1].id


def test_a_block_without_a_known_tool_is_given_back_as_content():
    text = '<tool_call>[{"name": "launch_rockets", "arguments": {}}]</tool_call> ok'
    assert run("<tool_call>", one_char_at_a_time(text)) == (text, [])


def test_an_unfinished_block_is_given_back_when_the_output_ends():
    text = '<tool_call>[{"name": "get_weather", "argu'
    assert run("<tool_call>", one_char_at_a_time(text)) == (text, [])


def test_a_partial_tag_is_held_back_until_it_is_decided():
    parser = ToolCallParser("<tool_call>", NAMES)
    assert parser.feed("a <tool") == ("a ", [])
    assert parser.feed("box> b") == ("<toolbox> b", [])
    assert parser.finish() == ""


def test_braces_inside_strings_do_not_end_an_object():
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": "P}a{ris \\" }"}}</tool_call>'
    assert run("<tool_call>", one_char_at_a_time(text)) == ("", [("get_weather", {"city": 'P}a{ris " }'})])


def test_with_no_tag_only_a_reply_that_starts_as_json_is_read_as_calls():
    assert run(JSON_TAG, one_char_at_a_time(' {"name": "get_time", "arguments": {"zone": "UTC"}}')) == (
        " ", [("get_time", {"zone": "UTC"})])
    prose = 'Use {"name": "get_time", "arguments": {}} to ask.'
    assert run(JSON_TAG, one_char_at_a_time(prose)) == (prose, [])


def test_a_call_in_an_openai_style_wrapper_is_found():
    text = '<tool_call>{"type": "function", "function": {"name": "get_time", "arguments": {"zone": "UTC"}}}</tool_call>'
    assert run("<tool_call>", [text]) == ("", [("get_time", {"zone": "UTC"})])
