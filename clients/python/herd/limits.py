"""Limits on what one request holds, shared by gateway and core: the defaults and each refusal's words.

Core enforces them for every client; the gateway checks the message count again before it
translates a body, so that a million messages are refused before they become a million protos.
"""

from __future__ import annotations

# A prompt is refused above this many bytes before it is tokenized: a 1M-token context is ~4 MiB of text.
DEFAULT_MAX_PROMPT_BYTES = 16 << 20
DEFAULT_MAX_MESSAGES = 10_000


def too_many_messages(count: int, limit: int) -> str:
    return f"too many messages: {count}, the limit is {limit} (HERD_MAX_MESSAGES)"


def prompt_too_long(size: int, limit: int) -> str:
    return f"prompt too long: {size} bytes, the limit is {limit} (HERD_MAX_PROMPT_BYTES)"
