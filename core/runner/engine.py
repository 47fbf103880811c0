"""The decode loop: one llama.cpp context, several sequences advancing together.

With ``vision.py`` (images, through libmtmd), the only module that imports ``llama_cpp``. One
engine thread owns the context; a ``llama_decode`` carries one token for each sequence that is
generating plus chunks of prompts being admitted, so a new request never stalls running streams
for a whole long prompt. On a CPU a prompt's last chunk gets a step of its own between two such
steps (see ``_prompts_alone``). An image in a prompt is decoded on its own between steps.
Callers hand work in with :meth:`Engine.submit` from any thread and receive text through the
sequence's ``emit`` callback, which the engine calls from its own thread.

The ctypes calls into llama.cpp release the GIL, so the gRPC event loop keeps serving while a
batch decodes.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import llama_cpp  # before anything that imports numpy: the other order crashed a model load (performance.md)
import numpy as np
import structlog

from herd.core.runner.vision import ImageEmbedding, ImageError, Projector

log = structlog.get_logger(__name__)

_GGML_LOG_LEVEL_ERROR = 4


@llama_cpp.llama_log_callback
def _forward_llama_log(level: int, text: bytes, _user_data) -> None:
    # llama.cpp narrates every load at info level; only its errors are worth a log line.
    if level == _GGML_LOG_LEVEL_ERROR:
        log.error("llama_cpp", message=text.decode("utf-8", "replace").strip())


def _init_backend() -> None:
    llama_cpp.llama_log_set(_forward_llama_log, None)
    llama_cpp.llama_backend_init()


class EngineError(Exception):
    """A request the engine cannot run; the message is safe to show to clients."""


class InvalidGrammar(EngineError):
    """llama.cpp could not parse a request's grammar."""


@dataclass(frozen=True)
class EngineConfig:
    """How to load the model; changing any of these needs a new engine."""

    model_path: str
    n_ctx: int = 4096  # per sequence
    n_parallel: int = 4
    n_batch: int = 512
    n_threads: int = 0  # 0: one per CPU
    n_gpu_layers: int = -1  # -1: all when the build can offload, else none
    main_gpu: int = 0
    use_mmap: bool = True
    lora_paths: tuple[str, ...] = ()  # GGUF LoRA adapters, applied at full scale
    projector_path: str = ""  # a multimodal projector (mmproj GGUF): the model then reads images


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each token; core has already merged every default in."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repeat_last_n: int
    repeat_penalty: float
    presence_penalty: float
    frequency_penalty: float
    seed: int


class StopReason:
    STOP = "stop"
    LENGTH = "length"


@dataclass
class SequenceResult:
    """The final report of a sequence."""

    stop_reason: str
    prompt_eval_count: int
    prompt_eval_duration_ns: int
    eval_count: int
    eval_duration_ns: int
    context: list[int]


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log probability under the model's raw distribution."""

    token: str
    logprob: float
    bytes: bytes
    top_logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass
class Sequence:
    """One request in the batch. ``emit(text, result, logprobs)`` gets text pieces, then the result.

    An image takes ``n_pos`` positions of ``prompt_tokens``, each holding the image's (negative)
    pseudo-token, and is listed in ``images``; the projector evaluates it during prefill.

    ``emit`` is called from the engine thread with ``result=None`` for each piece of text and
    once with the final :class:`SequenceResult` (and any remaining text); it must not block.
    ``logprobs`` holds the entries of the tokens sampled since the previous call.
    """

    prompt_tokens: list[int]
    num_predict: int
    stop: list[str]
    sampling: SamplingParams
    emit: Callable[[str, SequenceResult | None, list[TokenLogprob]], None]
    fail: Callable[[str], None]
    request_id: str = ""
    grammar: str = ""  # GBNF, root rule "root"; empty for none
    top_logprobs: int = -1  # -1: no log probabilities; n >= 0: each token's and the n most likely
    images: list[ImageEmbedding] = field(default_factory=list)  # in prompt order
    cancelled: bool = False

    # Engine-side state.
    slot: int = -1
    n_past: int = 0  # tokens of this sequence already in the KV cache
    pending_token: int = -1  # sampled, not yet decoded
    generated: list[int] = field(default_factory=list)
    prompt_eval_count: int = 0
    sampler: object = None
    grammar_sampler: object = None  # kept out of ``sampler``: checked against the pick, see _sample
    penalties: RepetitionPenalties | None = None  # kept out of ``sampler`` too: see RepetitionPenalties
    decoder: object = None
    held_text: str = ""
    unsent_logprobs: list[TokenLogprob] = field(default_factory=list)
    t_admit: float = 0.0
    t_first: float = 0.0

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Slot:
    """A KV-cache sequence id and the tokens it holds, reusable as a prompt prefix."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    last_used: float = 0.0


@dataclass
class _ParkedPrefix:
    """An idle slot's KV cells, copied to host RAM with the tokens they hold."""

    tokens: list[int]
    state: ctypes.Array


class RepetitionPenalties:
    """llama.cpp's penalties sampler, applied to the logits of the tokens in its window only.

    llama.cpp's own looks every token of the vocabulary up in its counts, once per sequence per
    step: in this decode loop on 2 cores, sampling a token with it took 1.25 ms instead of 0.35
    for Gemma 3's 262k entries (7 % of a one-stream step), 0.26 instead of 0.09 for SmolLM2's 49k.
    The window holds at most ``last_n`` tokens, so this does the same float32 arithmetic on those
    alone, in the context's logits, before the sampler chain: 0.44 and 0.21 ms.
    """

    def __init__(self, last_n: int, repeat: float, frequency: float, presence: float):
        self._window: deque[int] = deque(maxlen=last_n)
        self._counts: dict[int, int] = {}
        self._repeat, self._frequency, self._presence = np.float32(repeat), np.float32(frequency), np.float32(presence)

    def accept(self, token: int) -> None:
        """Adds a sampled token to the window, dropping the oldest when it is full."""
        self._counts[token] = self._counts.get(token, 0) + 1
        if len(self._window) == self._window.maxlen:
            oldest = self._window[0]
            self._counts[oldest] -= 1
            if not self._counts[oldest]:
                del self._counts[oldest]
        self._window.append(token)

    def apply(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Penalises ``logits`` in place; returns the token ids and their logits before, to restore."""
        if not self._counts:
            return None
        ids = np.fromiter(self._counts.keys(), dtype=np.int64, count=len(self._counts))
        counts = np.fromiter(self._counts.values(), dtype=np.float32, count=len(self._counts))
        before = logits[ids]
        penalised = np.where(before <= 0, before * self._repeat, before / self._repeat)
        penalised -= counts * self._frequency + self._presence  # every token counted is present
        logits[ids] = penalised
        return ids, before


# Shorter prefixes are cheaper to evaluate again than to copy.
_MIN_PARKED_TOKENS = 32
# Host RAM for parked prefixes, oldest dropped first.
PARKED_PREFIX_BUDGET_BYTES = 512 << 20
# On a CPU, the decode steps between two prompt steps while sequences are generating. A burst of
# new requests then slows the running streams to two tokens per prompt, not one. And clients in
# closed loops spread out: with one, each one's first token came a decode step after the previous
# one's, so their next requests met in turn at every prompt step (each waited for a whole prompt and
# a decode step before its own: TTFT p50 at 16 streams 310-330 ms, scripts/bench.py).
DECODE_STEPS_BETWEEN_PROMPTS = 2


@dataclass
class _EmbedTask:
    inputs: list[str]
    truncate: bool
    done: Callable[[list[list[float]] | None, int, str | None], None]


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def image_boundary(keep: int, images: list[ImageEmbedding]) -> int:
    """``keep`` cached positions, moved back to the start of an image it would cut in two."""
    for image in images:
        if image.start < keep < image.end:
            return image.start
    return keep


def text_end(seq: Sequence) -> int:
    """Where the prompt text being prefilled stops: the next image, or the prompt's end."""
    return next((image.start for image in seq.images if image.start >= seq.n_past), len(seq.prompt_tokens))


def hold_back_length(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that could be the start of a stop sequence."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


class Engine:
    """Owns one model and context; one per runner process."""

    def __init__(self, config: EngineConfig):
        _init_backend()
        self.config = config
        self._cond = threading.Condition()
        self._waiting: deque[Sequence] = deque()
        self._embed_tasks: deque[_EmbedTask] = deque()
        self._embedded_last = False  # whether the loop's last turn was an embedding
        self._active: list[Sequence] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        self.load_duration_ns = 0
        self._embed_ctx = None
        self._load()

    # ---------------------------------------------------------------- loading

    def _load(self) -> None:
        cfg = self.config
        started = time.perf_counter_ns()
        mparams = llama_cpp.llama_model_default_params()
        gpu_layers = cfg.n_gpu_layers
        if gpu_layers < 0:
            gpu_layers = 999 if llama_cpp.llama_supports_gpu_offload() else 0
        mparams.n_gpu_layers = gpu_layers
        mparams.main_gpu = cfg.main_gpu
        mparams.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if cfg.use_mmap else llama_cpp.LLAMA_LOAD_MODE_NONE
        model = llama_cpp.llama_model_load_from_file(cfg.model_path.encode(), mparams)
        if not model:
            raise EngineError("unable to load model")
        self.model = model
        # llama.cpp frees adapters together with their model.
        self._adapters = self._load_adapters(cfg.lora_paths)
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(model)
        self.n_embd = llama_cpp.llama_model_n_embd(model)
        self.n_threads = cfg.n_threads or os.cpu_count() or 1
        self.n_ctx_seq = max(16, cfg.n_ctx)
        self.n_parallel = max(1, cfg.n_parallel)

        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = self.n_ctx_seq * self.n_parallel
        cparams.n_batch = cfg.n_batch
        cparams.n_ubatch = min(cfg.n_batch, 512)
        cparams.n_seq_max = self.n_parallel
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads
        cparams.kv_unified = True
        cparams.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise EngineError("unable to create a context for the model")
        self._apply_adapters(ctx)
        self.ctx = ctx
        self.projector = self._load_projector(cfg.projector_path, gpu_layers > 0)
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.n_batch = cfg.n_batch
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._slots = [_Slot(seq_id=i) for i in range(self.n_parallel)]
        self._parked: list[_ParkedPrefix] = []
        self._parked_bytes = 0
        self._parked_budget = PARKED_PREFIX_BUDGET_BYTES
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.vram_bytes = int(llama_cpp.llama_model_size(model)) if gpu_layers > 0 else 0
        # On a CPU a step costs about its token count, so the order of work decides who waits, not
        # how long the work takes. A prompt's last chunk, whose logits give its first token, is
        # decoded in a step of its own: the newcomer's first token then waits for its own prompt
        # only, not also for one token of every running stream, and those streams get their next
        # token when they would have in a shared step. While sequences are generating, such steps
        # come DECODE_STEPS_BETWEEN_PROMPTS decode steps apart. A GPU takes extra tokens in a step
        # almost for free, so there every prompt shares the decode step.
        self._prompts_alone = gpu_layers == 0
        self._decode_steps_since_prompt = DECODE_STEPS_BETWEEN_PROMPTS
        self.load_duration_ns = time.perf_counter_ns() - started
        self._piece_buf = ctypes.create_string_buffer(256)
        # One candidate buffer serves every grammar-constrained pick (the engine thread samples one
        # at a time); made on the first, as most runners never see a grammar.
        self._candidate_buffer = None
        log.info(
            "engine_loaded",
            n_ctx=self.n_ctx_seq,
            n_parallel=self.n_parallel,
            n_threads=self.n_threads,
            gpu_layers=gpu_layers,
            load_ns=self.load_duration_ns,
        )

    def _load_adapters(self, paths: tuple[str, ...]) -> list:
        adapters = []
        for path in paths:
            adapter = llama_cpp.llama_adapter_lora_init(self.model, path.encode())
            if not adapter:
                llama_cpp.llama_model_free(self.model)
                raise EngineError("unable to load the LoRA adapter")
            adapters.append(adapter)
        return adapters

    def _load_projector(self, path: str, use_gpu: bool) -> Projector | None:
        if not path:
            return None
        try:
            return Projector(path, self.model, self.n_threads, use_gpu, _forward_llama_log)
        except ImageError as exc:
            llama_cpp.llama_free(self.ctx)
            llama_cpp.llama_model_free(self.model)
            raise EngineError(str(exc)) from None

    def _apply_adapters(self, ctx) -> None:
        """Puts this model's LoRA adapters on ``ctx`` at scale 1, as Ollama applies an ADAPTER."""
        if not self._adapters:
            return
        count = len(self._adapters)
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * count)(*self._adapters)
        scales = (ctypes.c_float * count)(*([1.0] * count))
        if llama_cpp.llama_set_adapters_lora(ctx, adapters, count, scales) != 0:
            raise EngineError("unable to apply the LoRA adapter")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="herd-engine", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        llama_cpp.llama_batch_free(self._batch)
        if self._embed_ctx:
            llama_cpp.llama_free(self._embed_ctx)
        if self.projector is not None:
            self.projector.close()
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)

    # ---------------------------------------------------------------- tokens

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_bos, True)
        if n < 0:
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_bos, True)
        return list(buf[:n])

    def _piece(self, token: int) -> bytes:
        buf = self._piece_buf
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    # ---------------------------------------------------------------- requests

    def submit(self, seq: Sequence) -> None:
        """Queues ``seq``; raises EngineError for an empty prompt, a grammar llama.cpp rejects, or shutdown."""
        if not seq.prompt_tokens:
            raise EngineError("prompt is empty")
        # Built here, so a bad grammar or sampling setting fails its own request, not a decode step.
        if seq.grammar:
            seq.grammar_sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, seq.grammar.encode(), b"root")
            if not seq.grammar_sampler:  # llama.cpp printed why; using a NULL sampler would crash
                raise InvalidGrammar("invalid grammar")
        seq.sampler = self._make_sampler(seq.sampling)
        seq.penalties = self._make_penalties(seq.sampling, seq.prompt_tokens)
        with self._cond:
            if self._closing:
                self._free_sampler(seq)
                raise EngineError("runner is shutting down")
            self._waiting.append(seq)
            self._cond.notify()

    @staticmethod
    def _free_sampler(seq: Sequence) -> None:
        for name in ("sampler", "grammar_sampler"):
            if getattr(seq, name) is not None:
                llama_cpp.llama_sampler_free(getattr(seq, name))
                setattr(seq, name, None)

    def submit_embed(
        self, inputs: list[str], truncate: bool, done: Callable[[list[list[float]] | None, int, str | None], None]
    ) -> None:
        """Queues an embedding of ``inputs``; ``done(vectors, token_count, error)`` is called from the engine thread."""
        with self._cond:
            self._embed_tasks.append(_EmbedTask(inputs=list(inputs), truncate=truncate, done=done))
            self._cond.notify()

    # ---------------------------------------------------------------- the loop

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._closing or self._waiting or self._active or self._embed_tasks):
                    self._cond.wait()
                if self._closing:
                    break
                # Embeddings take turns with decode steps: waiting for an idle moment starved them
                # for as long as generations kept arriving, and two in a row would stall the streams.
                embed_turn = self._embed_tasks and not ((self._active or self._waiting) and self._embedded_last)
                embed_task = self._embed_tasks.popleft() if embed_turn else None
                self._embedded_last = embed_task is not None
            try:
                if embed_task is not None:
                    self._run_embed(embed_task)
                    continue
                with self._cond:
                    self._admit_locked()
                self._step()
            except Exception:  # a failed step fails its batch, never the runner: this thread must live
                log.exception("decode_failed")
                self._fail_active("llama.cpp decode failed")
        for seq in self._active + list(self._waiting):
            seq.fail("runner is shutting down")

    def _fail_active(self, message: str) -> None:
        for seq in list(self._active):
            self._fail_sequence(seq, message)

    def _fail_sequence(self, seq: Sequence, message: str) -> None:
        """Ends one active sequence with an error; its slot starts afresh, as after a failed step."""
        self._active.remove(seq)
        # What the failed step left in the cache is unknown.
        llama_cpp.llama_memory_seq_rm(self.mem, seq.slot, -1, -1)
        self._slots[seq.slot].tokens = []
        self._release(seq)
        seq.fail(message)

    def _admit_locked(self) -> None:
        """Moves waiting sequences into free slots, reusing the longest cached prefix."""
        while self._waiting:
            free = [s for s in self._slots if not s.busy]
            if not free:
                return
            seq = self._waiting.popleft()
            if seq.cancelled:
                self._free_sampler(seq)
                continue
            try:
                self._admit(seq, free)
            except Exception:  # one sequence that cannot start must not take the others with it
                log.exception("admit_failed", request_id=seq.request_id)
                self._free_sampler(seq)
                seq.fail("llama.cpp could not start the sequence")

    def _admit(self, seq: Sequence, free: list[_Slot]) -> None:
        """Puts ``seq`` in the free slot holding most of its prompt, and makes it active."""
        slot = self._slot_for(seq.prompt_tokens, free)
        keep = common_prefix_length(slot.tokens, seq.prompt_tokens)
        keep = min(keep, len(seq.prompt_tokens) - 1)  # the last prompt token must be decoded for logits
        keep = image_boundary(keep, seq.images)
        llama_cpp.llama_memory_seq_rm(self.mem, slot.seq_id, keep, -1)
        del slot.tokens[keep:]
        # Cells of idle slots would sit in every attention of the unified cache from now on.
        for other in free:
            if other is not slot:
                self._park(other)
        seq.slot = slot.seq_id
        seq.n_past = keep
        seq.prompt_eval_count = len(seq.prompt_tokens) - keep
        seq.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        seq.t_admit = time.perf_counter_ns()
        slot.busy = True
        self._active.append(seq)

    def _slot_for(self, prompt: list[int], free: list[_Slot]) -> _Slot:
        """The free slot holding the longest prefix of ``prompt``, restored from host RAM if parked there."""
        slot = max(free, key=lambda s: (common_prefix_length(s.tokens, prompt), -s.last_used))
        in_slot = common_prefix_length(slot.tokens, prompt)
        parked = max(self._parked, key=lambda p: common_prefix_length(p.tokens, prompt), default=None)
        if parked is None or common_prefix_length(parked.tokens, prompt) <= in_slot:
            if in_slot < len(slot.tokens) // 2:
                # Sharing only a little (a system prompt, a BOS) is no reason to destroy the
                # rest of another conversation: it goes to host RAM first, as llama-server does.
                self._park(slot)
            return slot
        # A parked prefix wins: bring it back into the least useful free slot.
        slot = min(free, key=lambda s: (common_prefix_length(s.tokens, prompt), s.last_used))
        self._park(slot)
        self._parked.remove(parked)
        self._parked_bytes -= len(parked.state)
        if llama_cpp.llama_state_seq_set_data(self.ctx, parked.state, len(parked.state), slot.seq_id):
            slot.tokens = parked.tokens
        else:
            llama_cpp.llama_memory_seq_rm(self.mem, slot.seq_id, -1, -1)
        return slot

    def _park(self, slot: _Slot) -> None:
        """Moves an idle slot's cells to host RAM, so they cost no attention until reused."""
        if not slot.tokens:
            return
        if len(slot.tokens) >= _MIN_PARKED_TOKENS:
            size = llama_cpp.llama_state_seq_get_size(self.ctx, slot.seq_id)
            if size <= self._parked_budget:
                state = (ctypes.c_uint8 * size)()
                llama_cpp.llama_state_seq_get_data(self.ctx, state, size, slot.seq_id)
                self._parked.append(_ParkedPrefix(tokens=slot.tokens, state=state))
                self._parked_bytes += size
                while self._parked_bytes > self._parked_budget:
                    self._parked_bytes -= len(self._parked.pop(0).state)
        llama_cpp.llama_memory_seq_rm(self.mem, slot.seq_id, -1, -1)
        slot.tokens = []

    def _make_penalties(self, p: SamplingParams, prompt: list[int]) -> RepetitionPenalties | None:
        """The penalties that come first in the chain, as in llama.cpp's; None when they change nothing.

        As in Ollama's runners (llama-server and its own), the window starts with the prompt's last
        tokens, so an answer that repeats the question is penalised from its first token.
        """
        last_n = self.n_ctx_seq if p.repeat_last_n < 0 else p.repeat_last_n
        if not last_n or (p.repeat_penalty == 1.0 and p.presence_penalty == 0.0 and p.frequency_penalty == 0.0):
            return None
        penalties = RepetitionPenalties(last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty)
        for token in [token for token in prompt if token >= 0][-last_n:]:  # an image's positions are not tokens
            penalties.accept(token)
        return penalties

    def _make_sampler(self, p: SamplingParams):
        """The chain after the penalties: greedy, or top-k, typical, top-p, min-p, temperature and a seeded draw."""
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        if p.temperature <= 0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
            return chain
        if p.top_k > 0:
            add(chain, llama_cpp.llama_sampler_init_top_k(p.top_k))
        if 0 < p.typical_p < 1.0:
            add(chain, llama_cpp.llama_sampler_init_typical(p.typical_p, 1))
        if 0 < p.top_p < 1.0:
            add(chain, llama_cpp.llama_sampler_init_top_p(p.top_p, 1))
        if p.min_p > 0:
            add(chain, llama_cpp.llama_sampler_init_min_p(p.min_p, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(p.temperature))
        seed = llama_cpp.LLAMA_DEFAULT_SEED if p.seed < 0 else p.seed & 0xFFFFFFFF
        add(chain, llama_cpp.llama_sampler_init_dist(seed))
        return chain

    def _step(self) -> None:
        # Sequences cancelled by their caller leave before the batch is built.
        for seq in [s for s in self._active if s.cancelled]:
            self._active.remove(seq)
            self._release(seq)
        # An image is encoded and decoded on its own, when its sequence's prefill reaches it.
        for seq in [s for s in self._active if s.images and s.pending_token < 0]:
            self._prefill_images(seq)
        if not self._active:
            return
        batch = self._batch
        n = 0
        outputs: list[tuple[Sequence, int]] = []
        prefilled: list[tuple[Sequence, int]] = []
        generating = [seq for seq in self._active if seq.pending_token >= 0]
        prefilling = [seq for seq in self._active if seq.pending_token < 0]
        prompt_alone = (self._prompts_alone and prefilling and self._ends_in_one_step(prefilling[0])
                        and (not generating or self._decode_steps_since_prompt >= DECODE_STEPS_BETWEEN_PROMPTS))
        self._decode_steps_since_prompt = 0 if prompt_alone else self._decode_steps_since_prompt + 1
        if prompt_alone:
            n = self._put_prompt(prefilling[0], self.n_batch, 0, outputs, prefilled)
        else:
            # Every generating sequence advances one token per step ...
            for seq in generating:
                self._put(batch, n, seq.pending_token, seq.n_past, seq.slot, True)
                outputs.append((seq, n))
                n += 1
            # ... and prompt chunks, in admission order, fill what is left of the batch: on a GPU
            # every prompt's; on a CPU the first one's, and never its last chunk (see above).
            if not self._prompts_alone:
                for seq in prefilling:
                    if n < self.n_batch:
                        n = self._put_prompt(seq, self.n_batch - n, n, outputs, prefilled)
            elif prefilling and n < self.n_batch and not self._ends_in_one_step(prefilling[0]):
                seq = prefilling[0]
                end = text_end(seq)
                if end == len(seq.prompt_tokens):
                    end -= self.n_batch  # leaves a last chunk that fits a step of its own
                n = self._put_prompt(seq, min(end - seq.n_past, self.n_batch - n), n, outputs, prefilled)
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc != 0:
            raise EngineError(f"llama_decode returned {rc}")
        now = time.perf_counter_ns()
        for seq, count in prefilled:
            slot = self._slots[seq.slot]
            slot.tokens.extend(seq.prompt_tokens[seq.n_past: seq.n_past + count])
            seq.n_past += count
        for seq, index in outputs:
            if seq.pending_token >= 0:  # that token is now in the cache
                self._slots[seq.slot].tokens.append(seq.pending_token)
                seq.n_past += 1
            else:
                seq.t_first = now
            token = self._sample(seq, index)
            if seq.top_logprobs >= 0 and not llama_cpp.llama_vocab_is_eog(self.vocab, token):
                seq.unsent_logprobs.append(self._logprob(index, token, seq.top_logprobs))
            self._advance(seq, token, now)

    def _prefill_images(self, seq: Sequence) -> None:
        """Evaluates the images that start where ``seq``'s prefill stands; a failed one fails ``seq``."""
        for image in seq.images:
            if image.start != seq.n_past:
                continue
            try:
                self.projector.evaluate(self.ctx, image, seq.slot, self.n_batch)
            except ImageError as exc:
                self._fail_sequence(seq, str(exc))
                return
            image.free()
            self._slots[seq.slot].tokens.extend(seq.prompt_tokens[image.start: image.end])
            seq.n_past = image.end

    def _sample(self, seq: Sequence, index: int) -> int:
        """The next token for ``seq`` from output ``index`` of the last decode."""
        if seq.penalties is None:
            return self._pick(seq, index)
        logits = self._logits(index)
        penalised = seq.penalties.apply(logits)
        token = self._pick(seq, index)
        if penalised is not None:  # log probabilities are of the model's own distribution
            ids, before = penalised
            logits[ids] = before
        seq.penalties.accept(token)
        return token

    def _pick(self, seq: Sequence, index: int) -> int:
        """The token that ``seq``'s sampler chain and grammar pick from the logits at output ``index``."""
        if seq.grammar_sampler is None:
            return llama_cpp.llama_sampler_sample(seq.sampler, self.ctx, index)
        # As llama.cpp's own common sampler: the grammar costs a pass over the whole vocabulary
        # (262k entries for Gemma), so pick freely first and check only the pick; the full pass
        # runs only when the grammar refuses it.
        candidates = self._candidates(index)
        llama_cpp.llama_sampler_apply(seq.sampler, ctypes.byref(candidates))
        token = candidates.data[candidates.selected].id
        if not self._grammar_allows(seq.grammar_sampler, token):
            candidates = self._candidates(index)
            llama_cpp.llama_sampler_apply(seq.grammar_sampler, ctypes.byref(candidates))
            llama_cpp.llama_sampler_apply(seq.sampler, ctypes.byref(candidates))
            token = candidates.data[candidates.selected].id
        llama_cpp.llama_sampler_accept(seq.grammar_sampler, token)
        llama_cpp.llama_sampler_accept(seq.sampler, token)
        return token

    def _candidates(self, index: int) -> llama_cpp.llama_token_data_array:
        """Every token with its logit at output ``index``, in the engine's one reusable buffer."""
        if self._candidate_buffer is None:
            self._candidate_buffer = (llama_cpp.llama_token_data * self.n_vocab)()
            self._candidate_view = np.ctypeslib.as_array(self._candidate_buffer)
            self._token_ids = np.arange(self.n_vocab, dtype=np.int32)
        self._candidate_view["logit"] = self._logits(index)
        self._candidate_view["p"] = 0.0
        self._candidate_view["id"] = self._token_ids
        return llama_cpp.llama_token_data_array(
            data=self._candidate_buffer, size=self.n_vocab, selected=-1, sorted=False
        )

    def _logits(self, index: int) -> np.ndarray:
        """The context's own logits at output ``index`` of the last decode (a view: writes reach the samplers)."""
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))

    @staticmethod
    def _grammar_allows(grammar, token: int) -> bool:
        single = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        candidates = llama_cpp.llama_token_data_array(data=single, size=1, selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(candidates))
        return single[0].logit != float("-inf")

    def _ends_in_one_step(self, seq: Sequence) -> bool:
        """Whether the rest of ``seq``'s prompt is its last chunk: no image ahead, and it fits a batch."""
        return text_end(seq) == len(seq.prompt_tokens) and len(seq.prompt_tokens) - seq.n_past <= self.n_batch

    def _put_prompt(self, seq: Sequence, limit: int, n: int, outputs: list[tuple[Sequence, int]],
                    prefilled: list[tuple[Sequence, int]]) -> int:
        """Puts up to ``limit`` of ``seq``'s unevaluated prompt text in the batch at ``n``; returns the new ``n``."""
        take = seq.prompt_tokens[seq.n_past: min(text_end(seq), seq.n_past + limit)]
        for i, tok in enumerate(take):
            last = seq.n_past + i == len(seq.prompt_tokens) - 1
            self._put(self._batch, n, tok, seq.n_past + i, seq.slot, last)
            if last:
                outputs.append((seq, n))
            n += 1
        prefilled.append((seq, len(take)))
        return n

    @staticmethod
    def _put(batch, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq_id
        batch.logits[i] = logits

    def _advance(self, seq: Sequence, token: int, now: int) -> None:
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            self._finish(seq, StopReason.STOP, now, seq.held_text)
            return
        seq.generated.append(token)
        text = seq.held_text + seq.decoder.decode(self._piece(token))
        if seq.stop:
            for stop in seq.stop:
                at = text.find(stop)
                if at >= 0:
                    self._finish(seq, StopReason.STOP, now, text[:at])
                    return
            held = hold_back_length(text, seq.stop)
        else:
            held = 0
        # A partial UTF-8 character stays inside the incremental decoder until complete.
        emit_text, seq.held_text = (text[: len(text) - held], text[len(text) - held:]) if held else (text, "")
        if len(seq.generated) >= seq.num_predict >= 0 or seq.n_past + 1 >= self.n_ctx_seq:
            self._finish(seq, StopReason.LENGTH, now, emit_text + seq.held_text)
            return
        seq.pending_token = token
        if emit_text:
            seq.emit(emit_text, None, self._take_logprobs(seq))

    @staticmethod
    def _take_logprobs(seq: Sequence) -> list[TokenLogprob]:
        taken, seq.unsent_logprobs = seq.unsent_logprobs, []
        return taken

    def _logprob(self, index: int, token: int, top: int) -> TokenLogprob:
        """``token``'s log probability at output ``index`` of the last decode, and the ``top`` likeliest."""
        logits = self._logits(index)
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak).sum()))
        best: list[TokenLogprob] = []
        if top > 0:
            candidates = np.argpartition(-logits, top)[:top]
            for candidate in candidates[np.argsort(-logits[candidates], kind="stable")]:
                best.append(self._token_logprob(int(candidate), float(logits[candidate]) - log_total))
        chosen = self._token_logprob(token, float(logits[token]) - log_total)
        return TokenLogprob(chosen.token, chosen.logprob, chosen.bytes, best)

    def _token_logprob(self, token: int, logprob: float) -> TokenLogprob:
        piece = self._piece(token)
        return TokenLogprob(piece.decode("utf-8", errors="replace"), logprob, piece)

    def _finish(self, seq: Sequence, reason: str, now: int, text: str) -> None:
        """Ends a sequence; ``text`` is everything not yet emitted that belongs to the output."""
        self._active.remove(seq)
        tail = seq.decoder.decode(b"", final=True) if reason == StopReason.LENGTH else ""
        result = SequenceResult(
            stop_reason=reason,
            prompt_eval_count=seq.prompt_eval_count,
            prompt_eval_duration_ns=max(0, seq.t_first - seq.t_admit),
            eval_count=len(seq.generated),
            eval_duration_ns=max(0, now - seq.t_first),
            context=[token for token in seq.prompt_tokens if token >= 0] + seq.generated,  # images are not tokens
        )
        self._release(seq)
        seq.emit(text + tail, result, self._take_logprobs(seq))

    def _release(self, seq: Sequence) -> None:
        slot = self._slots[seq.slot]
        slot.busy = False
        slot.last_used = time.monotonic()
        self._free_sampler(seq)
        if self._active:
            self._park(slot)  # the sequences still decoding should not attend over it

    # ---------------------------------------------------------------- embeddings

    def _embedding_context(self):
        if self._embed_ctx is None:
            cparams = llama_cpp.llama_context_default_params()
            cparams.n_ctx = self.n_ctx_seq
            cparams.n_batch = self.n_ctx_seq
            cparams.n_ubatch = self.n_ctx_seq
            cparams.n_seq_max = min(64, llama_cpp.llama_max_parallel_sequences())
            cparams.n_threads = self.n_threads
            cparams.n_threads_batch = self.n_threads
            cparams.embeddings = True
            cparams.kv_unified = True
            cparams.no_perf = True
            if cparams.pooling_type == llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED:
                cparams.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
            ctx = llama_cpp.llama_init_from_model(self.model, cparams)
            if not ctx:
                raise EngineError("unable to create an embedding context")
            self._apply_adapters(ctx)
            self._embed_ctx = ctx
            self._embed_seq_max = cparams.n_seq_max
        return self._embed_ctx

    def _run_embed(self, task: _EmbedTask) -> None:
        try:
            vectors, count = self._embed(task.inputs, task.truncate)
        except EngineError as exc:
            task.done(None, 0, str(exc))
        except Exception:
            log.exception("embed_failed")
            task.done(None, 0, "llama.cpp embedding failed")
        else:
            task.done(vectors, count, None)

    def _embed(self, inputs: list[str], truncate: bool) -> tuple[list[list[float]], int]:
        ctx = self._embedding_context()
        limit = self.n_ctx_seq
        tokenized = []
        for text in inputs:
            tokens = self.tokenize(text, self.add_bos)
            if len(tokens) > limit:
                if not truncate:
                    raise EngineError("the input length exceeds the context length")
                tokens = tokens[:limit]
            tokenized.append(tokens or [llama_cpp.llama_vocab_bos(self.vocab)])
        mem = llama_cpp.llama_get_memory(ctx)
        batch = llama_cpp.llama_batch_init(limit, 0, 1)
        vectors: list[list[float]] = [[] for _ in inputs]
        try:
            start = 0
            while start < len(tokenized):
                # Fill one decode with as many whole inputs as fit.
                group = []
                used = 0
                while (start + len(group) < len(tokenized) and len(group) < self._embed_seq_max
                       and used + len(tokenized[start + len(group)]) <= limit):
                    used += len(tokenized[start + len(group)])
                    group.append(start + len(group))
                llama_cpp.llama_memory_clear(mem, True)
                n = 0
                for seq_id, index in enumerate(group):
                    for pos, tok in enumerate(tokenized[index]):
                        self._put(batch, n, tok, pos, seq_id, True)
                        n += 1
                batch.n_tokens = n
                rc = llama_cpp.llama_decode(ctx, batch)
                if rc != 0:
                    raise EngineError(f"llama_decode returned {rc}")
                for seq_id, index in enumerate(group):
                    ptr = llama_cpp.llama_get_embeddings_seq(ctx, seq_id)
                    if not ptr:
                        raise EngineError("the model returned no embedding")
                    vectors[index] = ptr[: self.n_embd]
                start += len(group)
        finally:
            llama_cpp.llama_batch_free(batch)
        return vectors, sum(len(t) for t in tokenized)
