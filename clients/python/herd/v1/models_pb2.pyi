import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from herd.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("name", "modified_at", "size", "digest", "details", "capabilities", "remote_model", "remote_host")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    REMOTE_MODEL_FIELD_NUMBER: _ClassVar[int]
    REMOTE_HOST_FIELD_NUMBER: _ClassVar[int]
    name: str
    modified_at: _timestamp_pb2.Timestamp
    size: int
    digest: str
    details: _common_pb2.ModelDetails
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    remote_model: str
    remote_host: str
    def __init__(self, name: _Optional[str] = ..., modified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., size: _Optional[int] = ..., digest: _Optional[str] = ..., details: _Optional[_Union[_common_pb2.ModelDetails, _Mapping]] = ..., capabilities: _Optional[_Iterable[str]] = ..., remote_model: _Optional[str] = ..., remote_host: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSummary]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSummary, _Mapping]]] = ...) -> None: ...

class ShowModelRequest(_message.Message):
    __slots__ = ("model", "verbose", "system", "options")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERBOSE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    verbose: bool
    system: str
    options: _common_pb2.Options
    def __init__(self, model: _Optional[str] = ..., verbose: _Optional[bool] = ..., system: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.Options, _Mapping]] = ...) -> None: ...

class ModelMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class ShowModelResponse(_message.Message):
    __slots__ = ("license", "modelfile", "parameters", "template", "system", "details", "messages", "model_info_json", "capabilities", "modified_at", "name", "projector_info_json", "remote_model", "remote_host", "parameters_json")
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    MODELFILE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECTOR_INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    REMOTE_MODEL_FIELD_NUMBER: _ClassVar[int]
    REMOTE_HOST_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    license: str
    modelfile: str
    parameters: str
    template: str
    system: str
    details: _common_pb2.ModelDetails
    messages: _containers.RepeatedCompositeFieldContainer[ModelMessage]
    model_info_json: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    modified_at: _timestamp_pb2.Timestamp
    name: str
    projector_info_json: str
    remote_model: str
    remote_host: str
    parameters_json: str
    def __init__(self, license: _Optional[str] = ..., modelfile: _Optional[str] = ..., parameters: _Optional[str] = ..., template: _Optional[str] = ..., system: _Optional[str] = ..., details: _Optional[_Union[_common_pb2.ModelDetails, _Mapping]] = ..., messages: _Optional[_Iterable[_Union[ModelMessage, _Mapping]]] = ..., model_info_json: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., modified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., name: _Optional[str] = ..., projector_info_json: _Optional[str] = ..., remote_model: _Optional[str] = ..., remote_host: _Optional[str] = ..., parameters_json: _Optional[str] = ...) -> None: ...

class ListRunningRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunningModel(_message.Message):
    __slots__ = ("name", "size", "size_vram", "digest", "details", "expires_at", "context_length")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIZE_VRAM_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    size_vram: int
    digest: str
    details: _common_pb2.ModelDetails
    expires_at: _timestamp_pb2.Timestamp
    context_length: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., size_vram: _Optional[int] = ..., digest: _Optional[str] = ..., details: _Optional[_Union[_common_pb2.ModelDetails, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., context_length: _Optional[int] = ...) -> None: ...

class ListRunningResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[RunningModel]
    def __init__(self, models: _Optional[_Iterable[_Union[RunningModel, _Mapping]]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("queued_requests", "running", "runner_restarts")
    class RunnerRestartsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    QUEUED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    RUNNER_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    queued_requests: int
    running: _containers.RepeatedCompositeFieldContainer[RunningModel]
    runner_restarts: _containers.ScalarMap[str, int]
    def __init__(self, queued_requests: _Optional[int] = ..., running: _Optional[_Iterable[_Union[RunningModel, _Mapping]]] = ..., runner_restarts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("model", "keep_alive_ns", "options")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_NS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    keep_alive_ns: int
    options: _common_pb2.Options
    def __init__(self, model: _Optional[str] = ..., keep_alive_ns: _Optional[int] = ..., options: _Optional[_Union[_common_pb2.Options, _Mapping]] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("model", "load_duration_ns")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOAD_DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    model: str
    load_duration_ns: int
    def __init__(self, model: _Optional[str] = ..., load_duration_ns: _Optional[int] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CopyModelRequest(_message.Message):
    __slots__ = ("source", "destination")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    source: str
    destination: str
    def __init__(self, source: _Optional[str] = ..., destination: _Optional[str] = ...) -> None: ...

class CopyModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ("model", "files", "adapters", "template", "system", "license", "parameters_json", "messages", "quantize", "remote_host", "info")
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AdaptersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    QUANTIZE_FIELD_NUMBER: _ClassVar[int]
    REMOTE_HOST_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    model: str
    files: _containers.ScalarMap[str, str]
    adapters: _containers.ScalarMap[str, str]
    template: str
    system: str
    license: _containers.RepeatedScalarFieldContainer[str]
    parameters_json: str
    messages: _containers.RepeatedCompositeFieldContainer[ModelMessage]
    quantize: str
    remote_host: str
    info: CreateModelInfo
    def __init__(self, model: _Optional[str] = ..., files: _Optional[_Mapping[str, str]] = ..., adapters: _Optional[_Mapping[str, str]] = ..., template: _Optional[str] = ..., system: _Optional[str] = ..., license: _Optional[_Iterable[str]] = ..., parameters_json: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ModelMessage, _Mapping]]] = ..., quantize: _Optional[str] = ..., remote_host: _Optional[str] = ..., info: _Optional[_Union[CreateModelInfo, _Mapping]] = ..., **kwargs) -> None: ...

class CreateModelInfo(_message.Message):
    __slots__ = ("capabilities", "model_family", "base_name", "quantization_level", "parameter_size", "context_length", "embedding_length")
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FAMILY_FIELD_NUMBER: _ClassVar[int]
    BASE_NAME_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_LENGTH_FIELD_NUMBER: _ClassVar[int]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    model_family: str
    base_name: str
    quantization_level: str
    parameter_size: str
    context_length: int
    embedding_length: int
    def __init__(self, capabilities: _Optional[_Iterable[str]] = ..., model_family: _Optional[str] = ..., base_name: _Optional[str] = ..., quantization_level: _Optional[str] = ..., parameter_size: _Optional[str] = ..., context_length: _Optional[int] = ..., embedding_length: _Optional[int] = ...) -> None: ...

class ProgressUpdate(_message.Message):
    __slots__ = ("status", "digest", "total", "completed")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    status: str
    digest: str
    total: int
    completed: int
    def __init__(self, status: _Optional[str] = ..., digest: _Optional[str] = ..., total: _Optional[int] = ..., completed: _Optional[int] = ...) -> None: ...

class HasBlobRequest(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: str
    def __init__(self, digest: _Optional[str] = ...) -> None: ...

class HasBlobResponse(_message.Message):
    __slots__ = ("exists",)
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    def __init__(self, exists: _Optional[bool] = ...) -> None: ...

class PutBlobRequest(_message.Message):
    __slots__ = ("digest", "data")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    digest: str
    data: bytes
    def __init__(self, digest: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PutBlobResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class PullModelRequest(_message.Message):
    __slots__ = ("model", "insecure")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INSECURE_FIELD_NUMBER: _ClassVar[int]
    model: str
    insecure: bool
    def __init__(self, model: _Optional[str] = ..., insecure: _Optional[bool] = ...) -> None: ...

class PushModelRequest(_message.Message):
    __slots__ = ("model", "insecure")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INSECURE_FIELD_NUMBER: _ClassVar[int]
    model: str
    insecure: bool
    def __init__(self, model: _Optional[str] = ..., insecure: _Optional[bool] = ...) -> None: ...
