"""The gRPC core, called as other-language clients and a service mesh would call it."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from herd.v1 import common_pb2, inference_pb2, inference_pb2_grpc, models_pb2, models_pb2_grpc
from tests.conftest import BASE_MODEL, CHAT_MODEL

pytestmark = pytest.mark.integration


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(server.grpc_address) as ch:
        yield ch


def test_health_reports_serving(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "herd.v1.Inference", "herd.v1.Models"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=service)).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_alone_is_enough_to_stream_generate(channel):
    """A client with no stubs discovers Inference.Generate and streams from it."""
    database = ProtoReflectionDescriptorDatabase(channel)
    assert "herd.v1.Inference" in database.get_services()
    pool = descriptor_pool.DescriptorPool(database)
    method = pool.FindServiceByName("herd.v1.Inference").FindMethodByName("Generate")
    assert method.server_streaming
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    request = request_cls(model=BASE_MODEL, prompt="Hello", raw=True)
    request.options.num_predict = 8
    call = channel.unary_stream(
        "/herd.v1.Inference/Generate",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    replies = list(call(request, timeout=120))
    assert replies[-1].done and replies[-1].metrics.eval_count == 8
    assert "".join(r.response for r in replies)


def test_generated_stubs_stream_chat(channel):
    stub = inference_pb2_grpc.InferenceStub(channel)
    request = inference_pb2.ChatRequest(
        model=CHAT_MODEL,
        messages=[inference_pb2.Message(role="user", content="What is the capital of France?")],
        options=common_pb2.Options(temperature=0, num_predict=16),
    )
    replies = list(stub.Chat(request, timeout=120))
    assert replies[-1].done and replies[-1].done_reason == common_pb2.DONE_REASON_STOP
    assert "Paris" in "".join(r.message.content for r in replies)


def test_unknown_model_is_not_found(channel):
    stub = inference_pb2_grpc.InferenceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(inference_pb2.GenerateRequest(model="nope", prompt="x"), timeout=30))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        models_pb2_grpc.ModelsStub(channel).Show(models_pb2.ShowModelRequest(model="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_bad_arguments_are_invalid_argument(channel):
    stub = inference_pb2_grpc.InferenceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(inference_pb2.GenerateRequest(model="bad name!", prompt="x"), timeout=30))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(inference_pb2.GenerateRequest(model=CHAT_MODEL, prompt="x", options=common_pb2.Options(num_ctx=-5)), timeout=30))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_deadline_exceeded_and_cancel_stop_generation(channel):
    stub = inference_pb2_grpc.InferenceStub(channel)
    long = inference_pb2.GenerateRequest(model=BASE_MODEL, prompt="Once upon a time", raw=True, options=common_pb2.Options(num_predict=5000))
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(long, timeout=1.0))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    call = stub.Generate(long, timeout=120)
    next(call)
    call.cancel()
    # The cancelled sequences left the batch: a fresh request completes normally.
    short = inference_pb2.GenerateRequest(model=BASE_MODEL, prompt="Hi", raw=True, options=common_pb2.Options(num_predict=4))
    assert list(stub.Generate(short, timeout=60))[-1].metrics.eval_count == 4


def test_models_load_list_running_unload(channel):
    models = models_pb2_grpc.ModelsStub(channel)
    loaded = models.Load(models_pb2.LoadModelRequest(model=CHAT_MODEL), timeout=120)
    assert loaded.model == CHAT_MODEL
    assert CHAT_MODEL in [m.name for m in models.ListRunning(models_pb2.ListRunningRequest()).models]
    stats = models.Stats(models_pb2.StatsRequest())
    assert CHAT_MODEL in [m.name for m in stats.running] and stats.queued_requests == 0
    models.Unload(models_pb2.UnloadModelRequest(model=CHAT_MODEL), timeout=60)
    assert CHAT_MODEL not in [m.name for m in models.ListRunning(models_pb2.ListRunningRequest()).models]
    assert CHAT_MODEL not in [m.name for m in models.Stats(models_pb2.StatsRequest()).running]
    listed = [m.name for m in models.List(models_pb2.ListModelsRequest()).models]
    assert CHAT_MODEL in listed and BASE_MODEL in listed


def test_embed_over_grpc(channel):
    reply = inference_pb2_grpc.InferenceStub(channel).Embed(
        inference_pb2.EmbedRequest(model=CHAT_MODEL, input=["a", "b"]), timeout=120
    )
    assert len(reply.embeddings) == 2 and len(reply.embeddings[0].values) == 576
