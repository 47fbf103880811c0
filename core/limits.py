"""Limits on what one inference request may hold, checked on the proto before any work is done.

They sit in core so that gRPC clients meet them as HTTP clients do. Defaults (``core/settings.py``)
leave room for million-token contexts and long conversations; each refusal names its limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from herd.core.errors import InvalidRequest
from herd.core.settings import CoreSettings
from herd.limits import DEFAULT_MAX_MESSAGES, DEFAULT_MAX_PROMPT_BYTES, prompt_too_long, too_many_messages
from herd.v1 import inference_pb2


def utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class RequestLimits:
    max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES
    max_messages: int = DEFAULT_MAX_MESSAGES

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> RequestLimits:
        return cls(max_prompt_bytes=settings.max_prompt_bytes, max_messages=settings.max_messages)

    def _check_prompt(self, size: int) -> None:
        # Before tokenization: a huge prompt would cost seconds and gigabytes only to be refused.
        if size > self.max_prompt_bytes:
            raise InvalidRequest(prompt_too_long(size, self.max_prompt_bytes))

    def check_generate(self, pb: inference_pb2.GenerateRequest) -> None:
        self._check_prompt(utf8_length(pb.prompt) + utf8_length(pb.suffix) + utf8_length(pb.system))

    def check_chat(self, pb: inference_pb2.ChatRequest) -> None:
        if len(pb.messages) > self.max_messages:
            raise InvalidRequest(too_many_messages(len(pb.messages), self.max_messages))
        self._check_prompt(sum(utf8_length(m.content) + utf8_length(m.thinking) for m in pb.messages))

    def check_embed(self, pb: inference_pb2.EmbedRequest) -> None:
        # Each input is tokenized on its own, so each has the limit: big batches stay possible.
        for text in pb.input:
            self._check_prompt(utf8_length(text))
