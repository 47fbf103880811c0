"""Tool calls in a model's streamed output, found the way Ollama finds them.

A template shows the model how to call tools in its ``.ToolCalls`` branch; the literal text that
opens that branch (``<tool_call>`` for SmolLM2) is the tag to look for. Text before the tag is
content; after it, every complete JSON object naming an offered tool becomes one call, sent whole
as soon as its closing brace arrives. Output that looked like a call but held none is given back
as content, so nothing the model wrote is lost.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from herd.core.textstream import partial_tag_length

# The text right after an ``if``/``else if`` on ``.ToolCalls``, up to the next action or JSON brace.
_TOOL_CALLS_BRANCH = re.compile(r"\{\{-?\s*(?:else\s+)?if\b[^}]*\.ToolCalls\b[^}]*\}\}(?P<text>[^{]*)")
# With no tag in the template, a reply that starts with JSON is read as calls.
JSON_TAG = "{"
_ID_ALPHABET = string.ascii_lowercase + string.digits


def tool_call_tag(template_source: str) -> str:
    """The tag that opens tool calls in output following ``template_source``; ``{`` when it has none."""
    match = _TOOL_CALLS_BRANCH.search(template_source)
    if match is None:
        return JSON_TAG
    tag = match.group("text").strip().rstrip("[").strip()
    return tag or JSON_TAG


def new_call_id() -> str:
    """An id in the form Ollama gives calls (``call_`` and 8 lowercase letters or digits)."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


@dataclass(frozen=True)
class ParsedCall:
    id: str
    index: int
    name: str
    arguments: dict[str, Any]


class ToolCallParser:
    """Splits streamed text into content and whole tool calls; ``feed`` each piece, then ``finish``."""

    def __init__(self, tag: str, tool_names: list[str]):
        self._tag = tag
        # </tool_call> for <tool_call>: text after it is content again.
        self._end_tag = "</" + tag[1:] if tag.startswith("<") and tag.endswith(">") else ""
        self._names = set(tool_names)
        self._buffer = ""  # outside a call: unsent text; inside: the call block since the tag
        self._in_call = False
        self._scanned = 0  # how much of the call block has been read for calls
        self._calls_in_block = 0
        self._count = 0
        self._prose = False  # with the JSON tag: the reply began as text, so it holds no calls

    def feed(self, text: str) -> tuple[str, list[ParsedCall]]:
        if self._prose:
            return text, []
        self._buffer += text
        content, calls = "", []
        while True:
            if not self._in_call:
                shown, found = self._take_until_tag()
                content += shown
                if not found:
                    return content, calls
            calls += self._take_calls()
            closed = self._close_block()
            if closed is None:
                return content, calls
            content += closed

    def finish(self) -> str:
        """What is left to show as content once the output has ended."""
        rest, self._buffer = self._buffer, ""
        if not self._in_call:
            return rest
        # A block that held no call was the model talking: show it as written.
        return self._shown_tag() + rest if self._calls_in_block == 0 else ""

    def _shown_tag(self) -> str:
        return "" if self._tag == JSON_TAG else self._tag  # the JSON tag's brace stays in the block

    def _take_until_tag(self) -> tuple[str, bool]:
        """Content before the tag; holds back a tail that may be the start of the tag."""
        at = self._buffer.find(self._tag)
        cut = at if at >= 0 else len(self._buffer) - partial_tag_length(self._buffer, self._tag)
        shown = self._buffer[:cut]
        if self._tag == JSON_TAG and shown.strip():
            self._prose = True
            shown, self._buffer = self._buffer, ""
            return shown, False
        if at < 0:
            self._buffer = self._buffer[cut:]
            return shown, False
        self._buffer = self._buffer[at + len(self._shown_tag()):]
        self._in_call, self._scanned, self._calls_in_block = True, 0, 0
        return shown, True

    def _take_calls(self) -> list[ParsedCall]:
        calls = []
        while (found := _next_object(self._buffer, self._scanned)) is not None:
            obj, self._scanned = found
            call = self._call_in(obj)
            if call is not None:
                calls.append(call)
        self._calls_in_block += len(calls)
        return calls

    def _close_block(self) -> str | None:
        """At the end tag: the block's text to show (none when it held calls); None before it."""
        at = self._buffer.find(self._end_tag, self._scanned) if self._end_tag else -1
        if at < 0:
            return None
        block = self._buffer[: at + len(self._end_tag)]
        self._buffer = self._buffer[at + len(self._end_tag):]
        self._in_call = False
        return self._shown_tag() + block if self._calls_in_block == 0 else ""

    def _call_in(self, obj: Any) -> ParsedCall | None:
        found = _find_call(obj, self._names)
        if found is None:
            return None
        name, arguments = found
        call = ParsedCall(id=new_call_id(), index=self._count, name=name, arguments=arguments)
        self._count += 1
        return call


def _find_call(obj: Any, names: set[str]) -> tuple[str, dict[str, Any]] | None:
    """The first ``{"name": <offered tool>, "arguments"|"parameters": {...}}`` inside ``obj``."""
    if isinstance(obj, dict):
        name = obj.get("name")
        if isinstance(name, str) and name in names:
            for key in ("arguments", "parameters"):
                arguments = _arguments(obj.get(key))
                if arguments is not None:
                    return name, arguments
            return name, {}
        children = list(obj.values())
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        if (found := _find_call(child, names)) is not None:
            return found
    return None


def _arguments(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):  # some models write the arguments as a JSON string
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _next_object(text: str, begin: int) -> tuple[Any, int] | None:
    """The first complete, parsable top-level JSON object in ``text`` from ``begin``, and the index after it."""
    depth, start, in_string, escaped = 0, -1, False, False
    for i in range(begin, len(text)):
        char = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                try:
                    return json.loads(text[start: i + 1]), i + 1
                except ValueError:
                    start = -1  # not JSON after all: look further
    return None

