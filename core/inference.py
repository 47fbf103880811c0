"""Generate, chat and embed: from a request to a stream of chunks.

Looks the model up, checks what it can do, renders the prompt, merges options, leases a runner
from the scheduler and turns the runner's stream into :class:`Chunk` objects. Knows nothing of
HTTP or of any JSON dialect.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from typing import AsyncIterator

import structlog

from herd.core.errors import CapabilityMissing, InvalidRequest, RemoteModel
from herd.core.models import ModelCatalog
from herd.core.options import ResolvedOptions, resolve
from herd.core.scheduler import Scheduler
from herd.core.store.store import StoredModel
from herd.core.structured import JSON_GRAMMAR, UnsupportedSchema, grammar_for_schema
from herd.core.templates.images import place_images, tag_images
from herd.core.templates.values import Message, Tool, Values
from herd.core.thinking import ThinkingParser, thinking_tags
from herd.core.tools import ParsedCall, ToolCallParser, tool_call_tag
from herd.gofmt import go_quote
from herd.runner.v1 import runner_pb2
from herd.v1 import common_pb2, inference_pb2

log = structlog.get_logger(__name__)

_STOP_REASONS = {runner_pb2.STOP_REASON_STOP: "stop", runner_pb2.STOP_REASON_LENGTH: "length"}
_THINK_LEVELS = ("low", "medium", "high", "max")
MAX_TOP_LOGPROBS = 20
_THINK_VALUES = ("true", "false", *_THINK_LEVELS)


@dataclass
class Metrics:
    total_duration_ns: int = 0
    load_duration_ns: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration_ns: int = 0
    eval_count: int = 0
    eval_duration_ns: int = 0

    def to_pb(self) -> common_pb2.Metrics:
        return common_pb2.Metrics(**self.__dict__)


@dataclass
class Chunk:
    """A piece of generated text, or (``done``) the end of the stream with its metrics."""

    text: str = ""
    done: bool = False
    done_reason: str = ""  # stop | length | load | unload
    metrics: Metrics | None = None
    context: list[int] = field(default_factory=list)
    thinking: str = ""
    tool_calls: list[ParsedCall] = field(default_factory=list)
    logprobs: list[common_pb2.TokenLogprob] = field(default_factory=list)

    def _done_fields(self) -> dict:
        if not self.done:
            return {}
        return {
            "done": True,
            "done_reason": _DONE_REASONS[self.done_reason],
            "metrics": self.metrics.to_pb() if self.metrics else None,
        }

    def to_generate_pb(self, model: str) -> inference_pb2.GenerateResponse:
        pb = inference_pb2.GenerateResponse(
            model=model,
            response=self.text,
            thinking=self.thinking,
            context=self.context,
            logprobs=self.logprobs,
            **self._done_fields(),
        )
        pb.created_at.GetCurrentTime()
        return pb

    def to_chat_pb(self, model: str) -> inference_pb2.ChatResponse:
        calls = [
            common_pb2.ToolCall(id=c.id, index=c.index, name=c.name, arguments_json=json.dumps(c.arguments))
            for c in self.tool_calls
        ]
        message = inference_pb2.Message(role="assistant", content=self.text, thinking=self.thinking, tool_calls=calls)
        pb = inference_pb2.ChatResponse(model=model, message=message, logprobs=self.logprobs, **self._done_fields())
        pb.created_at.GetCurrentTime()
        return pb


_DONE_REASONS = {
    "stop": common_pb2.DONE_REASON_STOP,
    "length": common_pb2.DONE_REASON_LENGTH,
    "load": common_pb2.DONE_REASON_LOAD,
    "unload": common_pb2.DONE_REASON_UNLOAD,
}


@dataclass
class GenerateParams:
    model: str
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] = field(default_factory=list)
    raw: bool = False
    format: str = ""
    think: str | None = None
    top_logprobs: int = -1  # -1: none; n >= 0: each token's and the n likeliest
    images: list[bytes] = field(default_factory=list)
    keep_alive_ns: int | None = None
    options: common_pb2.Options | None = None
    request_id: str = ""

    @classmethod
    def from_pb(cls, pb: inference_pb2.GenerateRequest, request_id: str) -> "GenerateParams":
        if pb.raw and (pb.HasField("template") or pb.HasField("system") or pb.context):
            raise InvalidRequest("raw mode does not support template, system, or context")
        return cls(
            model=pb.model,
            prompt=pb.prompt,
            suffix=pb.suffix,
            system=pb.system if pb.HasField("system") else None,
            template=pb.template if pb.HasField("template") else None,
            context=list(pb.context),
            raw=pb.raw,
            images=list(pb.images),
            **_generation_fields(pb, request_id),
        )


@dataclass
class ChatParams:
    model: str
    messages: list[Message]
    tools: list[Tool] = field(default_factory=list)
    format: str = ""
    think: str | None = None
    top_logprobs: int = -1  # -1: none; n >= 0: each token's and the n likeliest
    keep_alive_ns: int | None = None
    options: common_pb2.Options | None = None
    request_id: str = ""

    @classmethod
    def from_pb(cls, pb: inference_pb2.ChatRequest, request_id: str) -> "ChatParams":
        return cls(
            model=pb.model,
            messages=messages_from_pb(pb.messages),
            tools=tools_from_pb(pb.tools),
            **_generation_fields(pb, request_id),
        )


@dataclass
class EmbedParams:
    model: str
    inputs: list[str]
    truncate: bool = True
    dimensions: int = 0
    normalize: bool = True
    keep_alive_ns: int | None = None
    options: common_pb2.Options | None = None
    request_id: str = ""

    @classmethod
    def from_pb(cls, pb: inference_pb2.EmbedRequest, request_id: str) -> "EmbedParams":
        return cls(
            model=pb.model,
            inputs=list(pb.input),
            truncate=pb.truncate if pb.HasField("truncate") else True,
            dimensions=pb.dimensions,
            normalize=pb.normalize if pb.HasField("normalize") else True,
            keep_alive_ns=pb.keep_alive_ns if pb.HasField("keep_alive_ns") else None,
            options=pb.options,
            request_id=request_id,
        )


@dataclass
class Embeddings:
    vectors: list[list[float]]
    metrics: Metrics

    def to_pb(self, model: str) -> inference_pb2.EmbedResponse:
        return inference_pb2.EmbedResponse(
            model=model,
            embeddings=[inference_pb2.Embedding(values=v) for v in self.vectors],
            metrics=self.metrics.to_pb(),
        )


def _generation_fields(pb: inference_pb2.GenerateRequest | inference_pb2.ChatRequest, request_id: str) -> dict:
    """What GenerateParams and ChatParams read alike from their requests."""
    return {
        "format": pb.format,
        "think": think_from_pb(pb),
        "top_logprobs": top_logprobs_from_pb(pb),
        "keep_alive_ns": pb.keep_alive_ns if pb.HasField("keep_alive_ns") else None,
        "options": pb.options,
        "request_id": request_id,
    }


def think_from_pb(pb: inference_pb2.GenerateRequest | inference_pb2.ChatRequest) -> str | None:
    if not pb.HasField("think"):
        return None
    if pb.think not in _THINK_VALUES:
        raise InvalidRequest(
            f'invalid think value: {go_quote(pb.think)} (must be "high", "medium", "low", "max", true, or false)'
        )
    return pb.think


def top_logprobs_from_pb(pb: inference_pb2.GenerateRequest | inference_pb2.ChatRequest) -> int:
    if not 0 <= pb.top_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidRequest(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
    return pb.top_logprobs if pb.logprobs else -1


def _check_thinking(requested_name: str, capabilities: list[str], think: str | None) -> None:
    # Ollama refuses only a request that asks for thinking; "false" is fine for any model.
    if think not in (None, "false") and "thinking" not in capabilities:
        raise CapabilityMissing(f"{go_quote(requested_name)} does not support thinking")


def _check_vision(model: StoredModel, capabilities: list[str], has_images: bool) -> None:
    if has_images and "vision" not in capabilities:
        raise CapabilityMissing(f"{model.name} does not support vision")
    if has_images and not model.projector_paths:
        # A vision encoder inside the weights file (Ollama's own engine's format) is beyond llama.cpp.
        raise CapabilityMissing(f"{model.name} does not support vision: its vision encoder is not a projector layer")


def prompt_images(prompt: str, images: list[bytes]) -> tuple[str, list[runner_pb2.PromptImage]]:
    """The runner's prompt text and images from a rendered prompt with ``[img-N]`` tags."""
    if not images:
        return prompt, []
    text, placed = place_images(prompt, len(images))
    return text, [runner_pb2.PromptImage(data=images[image], offset=offset) for offset, image in placed]


def grammar_for_format(format_text: str) -> str:
    """The runner's grammar for a request's ``format``: none, any JSON object, or a JSON Schema's."""
    if not format_text:
        return ""
    if format_text == "json":
        return JSON_GRAMMAR
    try:
        schema = json.loads(format_text)
    except ValueError:
        schema = None
    if not isinstance(schema, dict):
        raise InvalidRequest(
            f'invalid format: {go_quote(format_text)}; expected "json" or a valid JSON Schema object'
        )
    try:
        return grammar_for_schema(schema)
    except UnsupportedSchema as exc:
        raise InvalidRequest(str(exc)) from None


def _sampling_pb(opts: ResolvedOptions) -> runner_pb2.Sampling:
    # The runner's Sampling message names its fields after the options they come from.
    return runner_pb2.Sampling(**{f.name: getattr(opts, f.name) for f in runner_pb2.Sampling.DESCRIPTOR.fields})


@dataclass(frozen=True)
class _Thinking:
    """Whether a request thinks, and what its template is told about it."""

    enabled: bool
    level: str
    requested: bool

    @classmethod
    def of(cls, capabilities: list[str], think: str | None) -> _Thinking:
        # A thinking model thinks unless told not to, as in Ollama.
        enabled = "thinking" in capabilities and think != "false"
        return cls(enabled, think if think in _THINK_LEVELS else "", think is not None)

    def values(self) -> dict:
        return {"think": self.enabled, "think_level": self.level, "is_think_set": self.requested}

    def parser(self, template_source: str, prompt: str) -> ThinkingParser:
        return ThinkingParser(*thinking_tags(template_source), prompt=prompt)


async def _split_thinking(chunks: AsyncIterator[Chunk], parser: ThinkingParser) -> AsyncIterator[Chunk]:
    """Moves the model's reasoning out of the text into ``thinking``."""
    async for chunk in chunks:
        thinking, text = parser.feed(chunk.text)
        if chunk.done:
            more_thinking, more_text = parser.finish()
            thinking, text = thinking + more_thinking, text + more_text
        if thinking or text or chunk.logprobs or chunk.done:
            yield replace(chunk, text=text, thinking=thinking)


async def _split_tool_calls(chunks: AsyncIterator[Chunk], parser: ToolCallParser) -> AsyncIterator[Chunk]:
    """Moves tool calls out of the text into ``tool_calls``, each call whole in the chunk that completes it."""
    async for chunk in chunks:
        text, calls = parser.feed(chunk.text)
        if chunk.done:
            text += parser.finish()
        if text or calls or chunk.logprobs or chunk.done:
            yield replace(chunk, text=text, tool_calls=calls)


def normalize(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else vector


class Inference:
    def __init__(self, catalog: ModelCatalog, scheduler: Scheduler):
        self.catalog = catalog
        self.scheduler = scheduler

    # ------------------------------------------------------------------ generate

    def _local_model(self, name: str) -> StoredModel:
        """The model to run here; RemoteModel for a stub, whose requests the gateway forwards."""
        model = self.catalog.get(name)
        if model.is_remote:
            raise RemoteModel(name)
        return model

    async def generate(self, p: GenerateParams) -> AsyncIterator[Chunk]:
        started = time.perf_counter_ns()
        model = self._local_model(p.model)
        capabilities = self.catalog.capabilities(model)
        _check_thinking(p.model, capabilities, p.think)
        if not p.prompt and not p.suffix:
            yield await self._load_or_unload(model, p.options, p.keep_alive_ns)
            return
        if "completion" not in capabilities:
            raise CapabilityMissing(f'"{p.model}" does not support generate')
        if p.suffix and "insert" not in capabilities:
            raise CapabilityMissing(f"{model.name} does not support insert")
        _check_vision(model, capabilities, bool(p.images))
        grammar = grammar_for_format(p.format)
        thinking = _Thinking.of(capabilities, p.think)
        if p.raw:
            prompt = p.prompt
        else:
            prompt = self._render_generate(model, p, thinking)
        prompt, images = prompt_images(prompt, p.images)
        opts = resolve(model.params, p.options)
        request = runner_pb2.GenerateRequest(
            prompt=prompt,
            images=images,
            prefix_tokens=p.context,
            num_predict=opts.num_predict,
            stop=opts.stop,
            sampling=_sampling_pb(opts),
            return_context=not p.raw,
            add_bos=not p.context,
            grammar=grammar,
            logprobs=p.top_logprobs >= 0,
            top_logprobs=max(0, p.top_logprobs),
        )
        chunks = self._run(model, opts, p.keep_alive_ns, request, p.request_id, started)
        if thinking.enabled and not p.raw:
            chunks = _split_thinking(chunks, thinking.parser(p.template or model.template or "", prompt))
        async for chunk in chunks:
            yield chunk

    def _render_generate(self, model: StoredModel, p: GenerateParams, thinking: _Thinking) -> str:
        template = self.catalog.template(model, override=p.template)
        if p.suffix:
            return template.render(Values(messages=[], prompt=p.prompt, suffix=p.suffix, **thinking.values()))
        messages = []
        system = p.system if p.system is not None else model.system
        if system:
            messages.append(Message(Role="system", Content=system))
        if not p.context:
            messages.extend(Message.from_dict(m) for m in model.messages)
        messages.append(Message(Role="user", Content=p.prompt, Images=p.images))
        messages, _ = tag_images(messages)
        return template.render(Values(messages=messages, **thinking.values()))

    # ------------------------------------------------------------------ chat

    async def chat(self, p: ChatParams) -> AsyncIterator[Chunk]:
        started = time.perf_counter_ns()
        model = self._local_model(p.model)
        capabilities = self.catalog.capabilities(model)
        _check_thinking(p.model, capabilities, p.think)
        if not p.messages:
            yield await self._load_or_unload(model, p.options, p.keep_alive_ns)
            return
        if "completion" not in capabilities:
            raise CapabilityMissing(f'"{p.model}" does not support chat')
        if p.tools and "tools" not in capabilities:
            raise CapabilityMissing(f"{model.name} does not support tools")
        _check_vision(model, capabilities, any(message.Images for message in p.messages))
        grammar = grammar_for_format(p.format)
        thinking = _Thinking.of(capabilities, p.think)
        messages = []
        if model.system and p.messages[0].Role != "system":
            messages.append(Message(Role="system", Content=model.system))
        messages.extend(Message.from_dict(m) for m in model.messages)
        messages.extend(p.messages)
        messages, images = tag_images(messages)
        prompt = self.catalog.template(model).render(Values(messages=messages, tools=p.tools, **thinking.values()))
        prompt, placed = prompt_images(prompt, images)
        opts = resolve(model.params, p.options)
        request = runner_pb2.GenerateRequest(
            prompt=prompt,
            images=placed,
            num_predict=opts.num_predict,
            stop=opts.stop,
            sampling=_sampling_pb(opts),
            add_bos=True,
            grammar=grammar,
            logprobs=p.top_logprobs >= 0,
            top_logprobs=max(0, p.top_logprobs),
        )
        chunks = self._run(model, opts, p.keep_alive_ns, request, p.request_id, started)
        if thinking.enabled:
            chunks = _split_thinking(chunks, thinking.parser(model.template or "", prompt))
        if p.tools:
            parser = ToolCallParser(tool_call_tag(model.template or ""), [tool.Function.Name for tool in p.tools])
            chunks = _split_tool_calls(chunks, parser)
        async for chunk in chunks:
            yield chunk

    # ------------------------------------------------------------------ shared

    async def _load_or_unload(self, model: StoredModel, options, keep_alive_ns: int | None) -> Chunk:
        started = time.perf_counter_ns()
        if keep_alive_ns == 0:
            await self.scheduler.unload(model.short_name)
            return Chunk(done=True, done_reason="unload")
        opts = resolve(model.params, options)
        load_ns = await self.scheduler.load(model, opts.runner, keep_alive_ns)
        metrics = Metrics(total_duration_ns=time.perf_counter_ns() - started, load_duration_ns=load_ns)
        return Chunk(done=True, done_reason="load", metrics=metrics)

    async def _run(self, model, opts: ResolvedOptions, keep_alive_ns, request, request_id: str, started: int):
        async with self.scheduler.lease(model, opts.runner, keep_alive_ns) as (loaded, load_ns):
            async for message in loaded.runner.generate(request, request_id):
                if not message.done:
                    yield Chunk(text=message.text, logprobs=list(message.logprobs))
                    continue
                if message.text or message.logprobs:
                    yield Chunk(text=message.text, logprobs=list(message.logprobs))
                metrics = Metrics(
                    total_duration_ns=time.perf_counter_ns() - started,
                    load_duration_ns=load_ns,
                    prompt_eval_count=message.prompt_eval_count,
                    prompt_eval_duration_ns=message.prompt_eval_duration_ns,
                    eval_count=message.eval_count,
                    eval_duration_ns=message.eval_duration_ns,
                )
                yield Chunk(
                    done=True,
                    done_reason=_STOP_REASONS.get(message.stop_reason, "stop"),
                    metrics=metrics,
                    context=list(message.context),
                )

    # ------------------------------------------------------------------ embed

    async def embed(self, p: EmbedParams) -> Embeddings:
        started = time.perf_counter_ns()
        model = self._local_model(p.model)
        opts = resolve(model.params, p.options)
        if not p.inputs:
            load_ns = await self.scheduler.load(model, opts.runner, p.keep_alive_ns)
            return Embeddings([], Metrics(total_duration_ns=time.perf_counter_ns() - started, load_duration_ns=load_ns))
        async with self.scheduler.lease(model, opts.runner, p.keep_alive_ns) as (loaded, load_ns):
            reply = await loaded.runner.embed(
                runner_pb2.EmbedRequest(input=p.inputs, truncate=p.truncate), p.request_id
            )
        vectors = []
        for pb in reply.vectors:
            vector = list(pb.values)
            if not all(math.isfinite(v) for v in vector):
                raise InvalidRequest("embedding contains NaN or Inf values")
            if p.normalize:
                vector = normalize(vector)
                if 0 < p.dimensions < len(vector):
                    vector = normalize(vector[: p.dimensions])
            vectors.append(vector)
        metrics = Metrics(
            total_duration_ns=time.perf_counter_ns() - started,
            load_duration_ns=load_ns,
            prompt_eval_count=reply.prompt_eval_count,
        )
        return Embeddings(vectors, metrics)


def json_object(text: str, what: str) -> dict:
    """``text`` as a JSON object; InvalidRequest names ``what`` otherwise."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        raise InvalidRequest(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return value


def tools_from_pb(tools) -> list[Tool]:
    try:
        return _tools_from_pb(tools)
    except ValueError as exc:  # a malformed schema is the caller's mistake
        raise InvalidRequest(f"invalid tool: {exc}") from None


def messages_from_pb(messages) -> list[Message]:
    try:
        return _messages_from_pb(messages)
    except ValueError as exc:
        raise InvalidRequest(f"invalid message: {exc}") from None


def _tools_from_pb(tools) -> list[Tool]:
    return [
        Tool.from_dict({
            "type": t.type or "function",
            "function": {
                "name": t.function.name,
                "description": t.function.description,
                "parameters": json_object(t.function.parameters_json, "tool parameters"),
            },
        })
        for t in tools
    ]


def _messages_from_pb(messages) -> list[Message]:
    return [
        Message.from_dict({
            "role": m.role,
            "content": m.content,
            "thinking": m.thinking,
            "images": list(m.images),
            "tool_calls": [
                {"id": c.id, "function": {"index": c.index, "name": c.name, "arguments": json_object(c.arguments_json, "tool call arguments")}}
                for c in m.tool_calls
            ],
            "tool_name": m.tool_name,
            "tool_call_id": m.tool_call_id,
        })
        for m in messages
    ]
