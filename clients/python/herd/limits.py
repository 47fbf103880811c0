"""Limits on what one request holds, shared by gateway and core: the defaults and each refusal's words.

Core enforces them for every client; the gateway checks the message count again before it
translates a body, so that a million messages are refused before they become a million protos.
"""

from __future__ import annotations

from typing import Mapping

import structlog

log = structlog.get_logger(__name__)

# A prompt is refused above this many bytes before it is tokenized: a 1M-token context is ~4 MiB of text.
DEFAULT_MAX_PROMPT_BYTES = 16 << 20
DEFAULT_MAX_MESSAGES = 10_000


def too_many_messages(count: int, limit: int) -> str:
    return f"too many messages: {count}, the limit is {limit} (HERD_MAX_MESSAGES)"


def prompt_too_long(size: int, limit: int) -> str:
    return f"prompt too long: {size} bytes, the limit is {limit} (HERD_MAX_PROMPT_BYTES)"


def limit_from_env(environ: Mapping[str, str], key: str, default: int) -> int:
    """A positive whole number from ``key`` (quotes and spaces stripped, as Ollama's variables are);
    anything else is logged and ``default`` kept, in gateway and core alike."""
    text = environ.get(key, "").strip().strip("\"'").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) == 0:
        log.warning("invalid_setting", variable=key, value=text, default=default)
        return default
    return int(text)
