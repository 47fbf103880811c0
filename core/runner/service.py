"""The runner process: one model in an :class:`Engine`, served as ``herd.runner.v1.Runner``.

Started by core (``python -m herd.core.runner.service --socket … --model …``) and reached over a
unix socket. The engine thread hands text to the event loop with ``call_soon_threadsafe``; each
gRPC message carries all the text that piled up since the last one, so a slow reader costs one
message per batch of tokens, not one per token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from dataclasses import fields

import grpc
import structlog

from herd.core.runner.engine import (
    Engine,
    EngineConfig,
    EngineError,
    InvalidGrammar,
    SamplingParams,
    Sequence,
    SequenceResult,
    TokenLogprob,
)
from herd.core.runner.vision import ImageEmbedding, ImageError
from herd.logs import configure_logging, request_id_from_metadata
from herd.runner.v1 import runner_pb2, runner_pb2_grpc
from herd.v1 import common_pb2

log = structlog.get_logger(__name__)

_STOP_REASONS = {"stop": runner_pb2.STOP_REASON_STOP, "length": runner_pb2.STOP_REASON_LENGTH}


def sampling_from_pb(pb: runner_pb2.Sampling) -> SamplingParams:
    return SamplingParams(**{f.name: getattr(pb, f.name) for f in fields(SamplingParams)})


def fit_prompt(
    tokens: list[int], n_ctx: int, num_keep: int = 4, images: list[ImageEmbedding] | None = None
) -> tuple[list[int], list[ImageEmbedding]]:
    """Cuts a prompt that would not leave room to generate, keeping its start and its end.

    As llama.cpp's context shift does, the first ``num_keep`` tokens stay and half the window
    is kept from the end, so the model still sees the instructions and the latest turn. An
    image (its positions in ``tokens``) is kept or cut whole; the images kept are returned.
    """
    images = images or []
    if len(tokens) < n_ctx:
        return tokens, images
    keep_head = min(num_keep, n_ctx // 4)
    cut_start, cut_end = keep_head, len(tokens) - (n_ctx // 2 - keep_head)
    for image in images:
        if image.start < cut_start < image.end:
            cut_start = image.start
        if image.start < cut_end < image.end:
            cut_end = image.end
    kept = []
    for image in images:
        if image.end <= cut_start:
            kept.append(image)
        elif image.start >= cut_end:
            image.start -= cut_end - cut_start
            kept.append(image)
    return tokens[:cut_start] + tokens[cut_end:], kept


def prompt_texts(prompt: str, images) -> list[str]:
    """The prompt's text around its images: one more piece than images; ValueError for bad offsets."""
    data = prompt.encode()
    texts, start = [], 0
    for image in images:
        if not start <= image.offset <= len(data):
            raise ValueError("image offsets must be in prompt order and inside the prompt")
        texts.append(data[start: image.offset].decode())  # UnicodeDecodeError is a ValueError
        start = image.offset
    texts.append(data[start:].decode())
    return texts


class Mailbox:
    """Text from the engine thread to one request's handler on the event loop.

    The engine appends without touching the event loop unless the handler is parked waiting:
    waking the loop for every token would cost a system call and a GIL hand-over per token
    while the decode threads want both cores.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._text: list[str] = []
        self._logprobs: list[TokenLogprob] = []
        self._result: SequenceResult | None = None
        self._error: str | None = None
        self._waiter: asyncio.Future | None = None
        self._woken_by_text = True  # False while the handler waits for the end only

    @property
    def finished(self) -> bool:
        return self._result is not None or self._error is not None

    def put(self, text: str, result: SequenceResult | None, logprobs: list[TokenLogprob]) -> None:
        """Engine thread: more text (with its tokens' log probabilities), and the final result when ``result`` is set."""
        with self._lock:
            if text:
                self._text.append(text)
            self._logprobs += logprobs
            self._result = result
            waiter = self._take_waiter() if result is not None or self._woken_by_text else None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    def fail(self, message: str) -> None:
        with self._lock:
            self._error = message
            waiter = self._take_waiter()
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    def _take_waiter(self) -> asyncio.Future | None:
        waiter, self._waiter = self._waiter, None
        return waiter

    async def wait(self) -> None:
        """Returns once there is text, a result or an error to take."""
        with self._lock:
            if self._text or self.finished:
                return
            waiter = self._park(woken_by_text=True)
        await waiter

    async def wait_for_end(self, timeout: float) -> None:
        """Returns after ``timeout`` seconds, or as soon as the result or an error is there."""
        with self._lock:
            if self.finished:
                return
            waiter = self._park(woken_by_text=False)
        timer = self._loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None

    def _park(self, woken_by_text: bool) -> asyncio.Future:
        self._waiter = self._loop.create_future()
        self._woken_by_text = woken_by_text
        return self._waiter

    def take(self) -> tuple[str, list[TokenLogprob], SequenceResult | None, str | None]:
        with self._lock:
            text = "".join(self._text)
            self._text.clear()
            logprobs, self._logprobs = self._logprobs, []
            return text, logprobs, self._result, self._error


def _logprob_pb(entry: TokenLogprob) -> common_pb2.TokenLogprob:
    return common_pb2.TokenLogprob(
        token=entry.token,
        logprob=entry.logprob,
        bytes=entry.bytes,
        top_logprobs=[_logprob_pb(top) for top in entry.top_logprobs],
    )


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


# On CPU, all streams of a runner together send at most about this many messages a second: each
# message costs CPU in runner, core, gateway and client, taken from the decode threads, which
# stall at their barrier whenever one of them is preempted (on 2 cores, 80 messages a second at
# 4 streams cost 10-25 % of the batch's speed; scripts/bench.py). A stream still gets a message
# at least every ``streams / MESSAGES_PER_SECOND`` seconds, and its first text at once.
MESSAGES_PER_SECOND = 40
GIL_SWITCH_INTERVAL_S = 0.0005


class RunnerService(runner_pb2_grpc.RunnerServicer):
    def __init__(self, engine: Engine, stream_interval_s: float):
        self.engine = engine
        self.stream_interval_s = stream_interval_s
        self._streams = 0  # Generate calls in flight

    def _send_interval(self) -> float:
        """Time between two messages of one stream (0: one message per token)."""
        if not self.stream_interval_s or self.engine.vram_bytes:  # offloaded: the cores are not the bottleneck
            return self.stream_interval_s
        return max(self.stream_interval_s, self._streams / MESSAGES_PER_SECOND)

    def _next_send(self, now: float) -> float:
        """When a stream that has just sent may send again: the next tick of a clock every stream shares.

        Messages that leave together wake runner, core, gateway and client once for all of them;
        the same messages spread over the interval cost each process a wake-up apiece, which is
        most of a message's cost (the monotonic clock is the same in every runner process).
        """
        interval = self._send_interval()
        return (now // interval + 1) * interval if interval else now

    async def Info(self, request, context):
        e = self.engine
        return runner_pb2.InfoResponse(
            n_ctx=e.n_ctx_seq,
            n_ctx_train=e.n_ctx_train,
            n_parallel=e.n_parallel,
            n_embd=e.n_embd,
            vram_bytes=e.vram_bytes,
            load_duration_ns=e.load_duration_ns,
        )

    async def Generate(self, request: runner_pb2.GenerateRequest, context):
        request_id = request_id_from_metadata(context.invocation_metadata())
        mailbox = Mailbox(asyncio.get_running_loop())
        try:
            tokens, images = await self._prompt(request)
        except ValueError as exc:  # an image that cannot be used, or a context or offsets that do not fit
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not tokens:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "prompt is empty")
        tokens, images = fit_prompt(tokens, self.engine.n_ctx_seq, images=images)
        if images and images[-1].end == len(tokens):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the prompt must not end with an image")
        seq = Sequence(
            prompt_tokens=tokens,
            images=images,
            num_predict=request.num_predict,
            stop=list(request.stop),
            sampling=sampling_from_pb(request.sampling),
            emit=mailbox.put,
            fail=mailbox.fail,
            request_id=request_id,
            grammar=request.grammar,
            top_logprobs=request.top_logprobs if request.logprobs else -1,
        )
        try:
            self.engine.submit(seq)
        except InvalidGrammar as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except EngineError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        loop = asyncio.get_running_loop()
        next_send = 0.0
        self._streams += 1
        try:
            while True:
                # Every message costs CPU in three processes that share the cores with decoding,
                # so after a message the tokens that follow wait for the next tick. The first
                # piece and the end go out at once: a client told late that its answer is
                # complete sends its next request late.
                delay = next_send - loop.time()
                if delay > 0:
                    await mailbox.wait_for_end(delay)
                await mailbox.wait()
                text, logprobs, result, error = mailbox.take()
                if error is not None:
                    await context.abort(grpc.StatusCode.INTERNAL, error)
                logprobs_pb = [_logprob_pb(entry) for entry in logprobs]
                if result is None:
                    next_send = self._next_send(loop.time())
                    yield runner_pb2.GenerateResponse(text=text, logprobs=logprobs_pb)
                    continue
                log.info(
                    "sequence_done",
                    request_id=request_id,
                    stop_reason=result.stop_reason,
                    prompt_eval_count=result.prompt_eval_count,
                    eval_count=result.eval_count,
                    eval_ns=result.eval_duration_ns,
                )
                yield runner_pb2.GenerateResponse(
                    text=text,
                    done=True,
                    stop_reason=_STOP_REASONS[result.stop_reason],
                    prompt_eval_count=result.prompt_eval_count,
                    prompt_eval_duration_ns=result.prompt_eval_duration_ns,
                    eval_count=result.eval_count,
                    eval_duration_ns=result.eval_duration_ns,
                    context=result.context if request.return_context else (),
                    logprobs=logprobs_pb,
                )
                return
        finally:
            # Cancelled or finished: either way the sequence leaves the batch at the next step.
            if not mailbox.finished:
                log.info("sequence_cancelled", request_id=request_id, eval_count=len(seq.generated))
            seq.cancel()
            self._streams -= 1

    async def _prompt(self, request: runner_pb2.GenerateRequest) -> tuple[list[int], list[ImageEmbedding]]:
        """The prompt's tokens, each image's positions holding its pseudo-token, and the images."""
        engine = self.engine
        tokens = list(request.prefix_tokens)
        # An image's positions hold negative pseudo-tokens: a context must not pose as one.
        if any(not 0 <= token < engine.n_vocab for token in tokens):
            raise ValueError("context holds an invalid token")
        add_bos = request.add_bos and engine.add_bos
        if not request.images:
            return tokens + engine.tokenize(request.prompt, add_bos), []
        if engine.projector is None:
            raise ImageError("this model does not support images")
        images: list[ImageEmbedding] = []
        for i, text in enumerate(prompt_texts(request.prompt, request.images)):
            tokens += engine.tokenize(text, add_bos and i == 0)
            if i == len(request.images):
                break
            # Decoding and preprocessing a picture takes a while: off the event loop.
            for piece in await asyncio.to_thread(engine.projector.pieces, request.images[i].data):
                if isinstance(piece, ImageEmbedding):
                    piece.start = len(tokens)
                    tokens += [piece.token] * piece.n_pos
                    images.append(piece)
                else:
                    tokens += piece
        return tokens, images

    async def Embed(self, request: runner_pb2.EmbedRequest, context):
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()

        def done(vectors, count, error):
            loop.call_soon_threadsafe(answer.set_result, (vectors, count, error))

        self.engine.submit_embed(list(request.input), request.truncate, done)
        vectors, count, error = await answer
        if error is not None:
            code = grpc.StatusCode.INVALID_ARGUMENT if "exceeds the context" in error else grpc.StatusCode.INTERNAL
            await context.abort(code, error)
        return runner_pb2.EmbedResponse(
            vectors=[runner_pb2.Vector(values=v) for v in vectors], prompt_eval_count=count
        )


async def serve(socket_path: str, config: EngineConfig, stream_interval_s: float) -> None:
    try:
        engine = Engine(config)
    except EngineError as exc:
        log.error("runner_load_failed", error=str(exc))
        sys.exit(3)
    engine.start()
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    runner_pb2_grpc.add_RunnerServicer_to_server(RunnerService(engine, stream_interval_s), server)
    server.add_insecure_port(f"unix://{socket_path}")
    await server.start()
    log.info("runner_serving")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Core owns this process: when core dies, the pipe on stdin closes and the runner exits.
    def on_stdin() -> None:
        if not os.read(sys.stdin.fileno(), 1024):
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await stop.wait()
    await server.stop(grace=1)
    engine.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="herd-runner")
    parser.add_argument("--socket", required=True, help="unix socket to serve on")
    parser.add_argument("--engine", required=True, help="EngineConfig fields as a JSON object")
    parser.add_argument("--stream-interval-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    configure_logging("runner")
    # The engine thread needs the GIL for a moment after every llama_decode; with the default
    # 5 ms switch interval it could wait that long behind the event loop, a fifth of a 4-stream step.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    config = EngineConfig(**json.loads(args.engine))
    asyncio.run(serve(args.socket, config, args.stream_interval_ms / 1000))


if __name__ == "__main__":
    main()
