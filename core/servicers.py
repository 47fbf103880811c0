"""gRPC servicers for herd.v1: proto in, domain call, proto out. No decisions here."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from datetime import datetime

import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from herd.core.errors import InvalidRequest, status_for, trailers_for
from herd.core.inference import ChatParams, EmbedParams, GenerateParams, Inference, json_object
from herd.core.limits import RequestLimits
from herd.core.models import ModelCatalog
from herd.core.options import resolve
from herd.core.scheduler import Scheduler
from herd.core.store.create import CreateSpec, RemoteInfo, create_model
from herd.core.store.hf import is_hf_name, pull_hf_model
from herd.core.store.modelfile import DEFAULT_TEMPLATE, format_parameters, render_modelfile
from herd.core.store.names import InvalidModelName, ModelName
from herd.core.store.registry import pull_model, push_model
from herd.core.store.store import BlobUpload, ModelNotFound, StoredModel
from herd.core.templates.prompt import GoPromptTemplate
from herd.logs import request_id_from_metadata
from herd.v1 import common_pb2, inference_pb2_grpc, models_pb2, models_pb2_grpc

log = structlog.get_logger(__name__)


def _bind_request(context) -> str:
    request_id = request_id_from_metadata(context.invocation_metadata())
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id


async def _abort(context, exc: Exception):
    code, message = status_for(exc)
    if code == grpc.StatusCode.INTERNAL and message == "internal error":
        log.exception("request_failed")
    else:
        log.info("request_rejected", code=code.name, error=message)
    await context.abort(code, message, trailing_metadata=trailers_for(exc))


def unary(method):
    """Maps domain errors of a unary RPC to statuses."""

    @functools.wraps(method)
    async def wrapper(self, request, context):
        _bind_request(context)
        started = time.perf_counter_ns()
        try:
            reply = await method(self, request, context)
        except Exception as exc:  # every failure leaves as a status, never a traceback
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort(context, exc)
        log.info("rpc", method=method.__name__, ns=time.perf_counter_ns() - started)
        return reply

    return wrapper


def streaming(method):
    """Maps domain errors of a server-streaming RPC to statuses."""

    @functools.wraps(method)
    async def wrapper(self, request, context):
        _bind_request(context)
        started = time.perf_counter_ns()
        try:
            async for message in method(self, request, context):
                yield message
            log.info("rpc", method=method.__name__, ns=time.perf_counter_ns() - started)
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort(context, exc)

    return wrapper


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    def __init__(self, inference: Inference, limits: RequestLimits = RequestLimits()):
        self.inference = inference
        self.limits = limits

    @streaming
    async def Generate(self, request, context):
        self.limits.check_generate(request)
        params = GenerateParams.from_pb(request, request_id_from_metadata(context.invocation_metadata()))
        async for chunk in self.inference.generate(params):
            yield chunk.to_generate_pb(request.model)

    @streaming
    async def Chat(self, request, context):
        self.limits.check_chat(request)
        params = ChatParams.from_pb(request, request_id_from_metadata(context.invocation_metadata()))
        async for chunk in self.inference.chat(params):
            yield chunk.to_chat_pb(request.model)

    @unary
    async def Embed(self, request, context):
        self.limits.check_embed(request)
        params = EmbedParams.from_pb(request, request_id_from_metadata(context.invocation_metadata()))
        embeddings = await self.inference.embed(params)
        return embeddings.to_pb(request.model)


def _parse_or_reject(name: str, message: str) -> None:
    try:
        ModelName.parse(name)
    except InvalidModelName:
        raise InvalidRequest(message) from None


async def _in_thread_with_progress(work):
    """Runs ``work(progress)`` in a thread, yielding each ``progress(update)`` dict as it happens."""
    loop = asyncio.get_running_loop()
    updates: asyncio.Queue = asyncio.Queue()
    done = object()

    def progress(update: dict) -> None:
        loop.call_soon_threadsafe(updates.put_nowait, update)

    task = asyncio.ensure_future(asyncio.to_thread(work, progress))
    task.add_done_callback(lambda _: updates.put_nowait(done))
    while (update := await updates.get()) is not done:
        yield update
    task.result()  # re-raises the work's error


def _timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _details_pb(model: StoredModel, lengths: bool = False) -> common_pb2.ModelDetails:
    """``details``; with ``lengths``, the context and embedding lengths a remote model's config
    records, which Ollama lists in ``/api/tags`` (not in ``/api/show``)."""
    details = common_pb2.ModelDetails(**dataclasses.asdict(model.details()))
    if lengths:
        details.context_length = model.configured_context_length
        details.embedding_length = model.configured_embedding_length
    return details


def _running_pb(scheduler: Scheduler) -> list[models_pb2.RunningModel]:
    running = []
    for loaded in scheduler.running():
        pb = models_pb2.RunningModel(
            name=loaded.model.short_name,
            size=loaded.size,
            size_vram=loaded.runner.info.vram_bytes,
            digest=loaded.model.digest,
            details=_details_pb(loaded.model),
            context_length=loaded.context_length,
        )
        if loaded.expires_at is not None:
            pb.expires_at.FromDatetime(loaded.expires_at)
        running.append(pb)
    return running


def scheduler_stats(scheduler: Scheduler) -> models_pb2.StatsResponse:
    """What the Stats RPC and core's Prometheus exporter report."""
    return models_pb2.StatsResponse(
        queued_requests=scheduler.queued(),
        running=_running_pb(scheduler),
        runner_restarts=scheduler.runner_restarts(),
    )


class ModelsServicer(models_pb2_grpc.ModelsServicer):
    def __init__(self, catalog: ModelCatalog, scheduler: Scheduler):
        self.catalog = catalog
        self.scheduler = scheduler

    @unary
    async def List(self, request, context):
        return models_pb2.ListModelsResponse(models=[
            models_pb2.ModelSummary(
                name=m.short_name,
                modified_at=_timestamp(m.modified_at),
                size=m.size,
                digest=m.digest,
                details=_details_pb(m, lengths=True),
                capabilities=self.catalog.capabilities(m),
                remote_model=m.remote_model,
                remote_host=m.remote_host,
            )
            for m in self.catalog.list()
        ])

    @unary
    async def Show(self, request, context):
        try:
            model = self.catalog.get(request.model)
        except ModelNotFound:
            # Show names the normalised model, as Ollama does.
            raise ModelNotFound(ModelName.parse(request.model).display_shortest()) from None
        system = request.system if request.HasField("system") else None
        extra = {d.name: (list(v.values) if d.name == "stop" else v) for d, v in request.options.ListFields()}
        params = {**model.params, **extra}
        projector = model.projector_info(verbose=request.verbose)
        return models_pb2.ShowModelResponse(
            name=model.short_name,
            license="\n".join(model.license),
            modelfile=render_modelfile(model, system_override=system, extra_params=extra),
            parameters=format_parameters(params),
            template=model.template or DEFAULT_TEMPLATE,
            system=system if system is not None else (model.system or ""),
            details=_details_pb(model),
            messages=[models_pb2.ModelMessage(role=m.get("role", ""), content=m.get("content", "")) for m in model.messages],
            model_info_json=json.dumps(model.model_info(verbose=request.verbose)),
            projector_info_json=json.dumps(projector) if projector is not None else "",
            capabilities=self.catalog.capabilities(model),
            modified_at=_timestamp(model.modified_at),
            remote_model=model.remote_model,
            remote_host=model.remote_host,
            parameters_json=json.dumps(model.params),
        )

    @unary
    async def ListRunning(self, request, context):
        return models_pb2.ListRunningResponse(models=_running_pb(self.scheduler))

    @unary
    async def Stats(self, request, context):
        return scheduler_stats(self.scheduler)

    @unary
    async def Load(self, request, context):
        model = self.catalog.get(request.model)
        opts = resolve(model.params, request.options)
        keep_alive = request.keep_alive_ns if request.HasField("keep_alive_ns") else None
        load_ns = await self.scheduler.load(model, opts.runner, keep_alive)
        return models_pb2.LoadModelResponse(model=model.short_name, load_duration_ns=load_ns)

    @unary
    async def Copy(self, request, context):
        _parse_or_reject(request.source, f'source "{request.source}" is invalid')
        _parse_or_reject(request.destination, f'destination "{request.destination}" is invalid')
        await asyncio.to_thread(self.catalog.store.copy, request.source, request.destination)
        return models_pb2.CopyModelResponse()

    @unary
    async def Delete(self, request, context):
        _parse_or_reject(request.model, f'name "{request.model}" is invalid')
        model = self.catalog.get(request.model)
        await self.scheduler.unload(model.short_name)
        await asyncio.to_thread(self.catalog.store.delete, request.model)
        return models_pb2.DeleteModelResponse()

    @streaming
    async def Create(self, request, context):
        spec = CreateSpec(
            name=request.model,
            base=getattr(request, "from"),
            files=dict(request.files),
            adapters=dict(request.adapters),
            template=request.template if request.HasField("template") else None,
            system=request.system if request.HasField("system") else None,
            license=list(request.license) or None,
            parameters=json_object(request.parameters_json, "parameters"),
            messages=[{"role": m.role, "content": m.content} for m in request.messages] or None,
            quantize=request.quantize,
            remote_host=request.remote_host,
            info=RemoteInfo(
                capabilities=list(request.info.capabilities),
                model_family=request.info.model_family,
                base_name=request.info.base_name,
                quantization_level=request.info.quantization_level,
                parameter_size=request.info.parameter_size,
                context_length=request.info.context_length,
                embedding_length=request.info.embedding_length,
            ),
        )
        async for update in _in_thread_with_progress(
            lambda progress: create_model(
                self.catalog.store,
                spec,
                lambda status, digest, total=0, completed=0: progress(
                    {"status": status, "digest": digest, "total": total, "completed": completed}
                ),
                check_template=GoPromptTemplate,  # parses it and caps its size
            )
        ):
            yield models_pb2.ProgressUpdate(**update)

    @streaming
    async def Pull(self, request, context):
        # hf.co/<user>/<repo>[:quant] comes from the Hugging Face Hub, everything else from a registry.
        pull = pull_hf_model if is_hf_name(request.model) else functools.partial(pull_model, insecure=request.insecure)
        async for update in self._transfer(pull, request.model):
            yield update

    @streaming
    async def Push(self, request, context):
        async for update in self._transfer(functools.partial(push_model, insecure=request.insecure), request.model):
            yield update

    async def _transfer(self, transfer, model: str):
        """A pull or push in a thread; its Ollama-style progress lines become ProgressUpdates."""
        fields = models_pb2.ProgressUpdate.DESCRIPTOR.fields_by_name
        async for line in _in_thread_with_progress(
            lambda progress: transfer(self.catalog.store, model, progress=progress)
        ):
            yield models_pb2.ProgressUpdate(**{k: v for k, v in line.items() if k in fields})

    @unary
    async def HasBlob(self, request, context):
        return models_pb2.HasBlobResponse(exists=self.catalog.store.blob_path(request.digest).is_file())

    @unary
    async def PutBlob(self, request_iterator, context):
        upload = None
        failed: OSError | None = None
        try:
            async for chunk in request_iterator:
                if upload is None:
                    upload = BlobUpload(self.catalog.store, expected=chunk.digest)
                if chunk.data and failed is None:
                    try:
                        await asyncio.to_thread(upload.write, chunk.data)
                    except OSError as exc:
                        # Aborting while the client still sends reaches it as gRPC's own "Internal error
                        # from Core", so the rest is read and dropped and the status goes out after it.
                        failed = exc
                        upload.abort()
            if failed is not None:
                raise failed
            if upload is None:
                raise InvalidRequest("no blob was sent")
            created = await asyncio.to_thread(upload.commit)
        except BaseException:
            if upload is not None:
                upload.abort()
            raise
        return models_pb2.PutBlobResponse(created=created)

    @unary
    async def Unload(self, request, context):
        model = self.catalog.get(request.model)
        await self.scheduler.unload(model.short_name)
        return models_pb2.UnloadModelResponse()
