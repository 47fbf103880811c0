"""Thinking text in a model's streamed output, split from the answer as Ollama splits it.

A thinking template writes a past turn's reasoning between two tags around ``{{ .Thinking }}``
(``<think>`` and ``</think>`` when the template shows none). A reply that opens with the opening
tag, or whose prompt already ended with it, is thinking up to the closing tag and answer after it.
"""

from __future__ import annotations

import re

from herd.core.textstream import partial_tag_length

DEFAULT_TAGS = ("<think>", "</think>")
# The literal text on either side of {{ .Thinking }}, within the line.
_THINKING_ACTION = re.compile(r"(?P<before>[^\s}]*)\{\{-?\s*\.Thinking\s*-?\}\}(?P<after>[^\s{]*)")


def thinking_tags(template_source: str) -> tuple[str, str]:
    """The (opening, closing) tags around thinking in output following ``template_source``."""
    for match in _THINKING_ACTION.finditer(template_source):
        if match.group("before") and match.group("after"):
            return match.group("before"), match.group("after")
    return DEFAULT_TAGS


class ThinkingParser:
    """Splits streamed text into (thinking, content); ``feed`` each piece, then ``finish``."""

    def __init__(self, opening: str, closing: str, prompt: str):
        self._opening, self._closing = opening, closing
        # A template may open the thinking block itself, at the end of the prompt.
        self._state = "thinking" if prompt.rstrip().endswith(opening) else "start"
        self._buffer = ""
        self._thought = False  # whether any thinking text has been sent yet

    def feed(self, text: str) -> tuple[str, str]:
        self._buffer += text
        thinking = content = ""
        while self._buffer:
            if self._state == "start":
                stripped = self._buffer.lstrip()
                if stripped.startswith(self._opening):
                    self._buffer, self._state = stripped[len(self._opening):], "thinking"
                elif self._opening.startswith(stripped):
                    break  # still undecided
                else:
                    self._state = "content"
            elif self._state == "thinking":
                at = self._buffer.find(self._closing)
                if at < 0:
                    held = partial_tag_length(self._buffer, self._closing)
                    thinking += self._thought_text(self._buffer[: len(self._buffer) - held])
                    self._buffer = self._buffer[len(self._buffer) - held:]
                    break
                thinking += self._thought_text(self._buffer[:at])
                # The answer starts after the whitespace that follows the closing tag.
                self._buffer, self._state = self._buffer[at + len(self._closing):], "after"
            elif self._state == "after":
                self._buffer = self._buffer.lstrip()
                if self._buffer:
                    self._state = "content"
            else:
                content, self._buffer = content + self._buffer, ""
        return thinking, content

    def finish(self) -> tuple[str, str]:
        """What is still held once the output has ended."""
        rest, self._buffer = self._buffer, ""
        if self._state == "thinking":
            return self._thought_text(rest), ""
        return "", rest if self._state == "content" else rest.strip()

    def _thought_text(self, text: str) -> str:
        # Whitespace that opens the thinking block is layout, not thought.
        if not self._thought:
            text = text.lstrip()
            self._thought = bool(text)
        return text

