"""Creating models, as Ollama's ``/api/create`` does: from a stored model, uploaded GGUF blobs or an
uploaded Hugging Face BERT model directory (converted to GGUF).

A ``quantize`` request runs llama.cpp's quantizer on the model layer in a child process
(``herd.core.runner.quantize``), so a llama.cpp abort never takes core down.

Every layer is a blob written (or found) first; the manifest is written last, so a create that
fails or is interrupted leaves no model behind, only blobs the next pruning may remove.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import posixpath
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

import structlog

from herd.core.store.convert import ConversionError, convert_bert
from herd.core.store.gguf import GGUFError, GGUFInfo, NotGGUFError, human_number, read_gguf
from herd.core.store.manifest import (
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    InvalidDigest,
    Layer,
    Manifest,
    go_json_bytes,
    validate_digest,
)
from herd.core.store.names import ModelName
from herd.core.store.store import ModelStore, StoredModel
from herd.modelref import OLLAMA_CLOUD_URL, ModelRefError, parse_ref

log = structlog.get_logger(__name__)


class Progress(Protocol):
    """Reports one step; ``total``/``completed`` (bytes) only for steps that take a while, as quantizing."""

    def __call__(self, status: str, digest: str, total: int = 0, completed: int = 0) -> None: ...


# platform.machine() → Go's GOARCH, which Ollama's config blob records.
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
# The types a model can be quantized to, as Ollama names them (the request is upper-cased first) →
# the type llama.cpp is asked for; the short K names mean their medium variant, as in llama.cpp.
_QUANTIZE_TYPES = {
    **{name: name for name in "F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M".split()},
    **{name: name for name in "Q5_K_S Q5_K_M Q6_K".split()},
    "Q3_K": "Q3_K_M",
    "Q4_K": "Q4_K_M",
    "Q5_K": "Q5_K_M",
}
# llama.cpp quantizes only from unquantized weights; Ollama refuses the rest before trying.
_QUANTIZABLE_SOURCES = ("F16", "BF16", "F32")
_DEFAULT_REMOTE_PORT = 11434
# A host with a port (possibly empty, as Go's SplitHostPort allows): "h:1", "[::1]:1".
_HAS_PORT = re.compile(r"(\[[^\]]*\]|[^:\[\]]*):[0-9]*")
# Layers a create replaces when the request gives a value; everything else comes from the base.
_REPLACEABLE = (MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_SYSTEM, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MESSAGES, MEDIA_TYPE_PARAMS)


class CreateError(ValueError):
    """The request cannot make a model; the message is Ollama's where Ollama has one."""


@dataclass
class CreateSpec:
    """What to build; ``None`` keeps the base model's value."""

    name: str
    base: str = ""
    files: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    license: list[str] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] | None = None
    quantize: str = ""
    # A remote model (a stub): the host that serves ``base``, and Ollama's ``info`` for its config.
    remote_host: str = ""
    info: RemoteInfo = field(default_factory=lambda: RemoteInfo())


@dataclass
class RemoteInfo:
    """What a remote model's config records in place of facts read from weights."""

    capabilities: list[str] = field(default_factory=list)
    model_family: str = ""
    base_name: str = ""
    quantization_level: str = ""
    parameter_size: str = ""
    context_length: int = 0
    embedding_length: int = 0


def create_model(
    store: ModelStore, spec: CreateSpec, progress: Progress, check_template: Callable[[str], None]
) -> set[str]:
    """Builds ``spec`` into the store, reporting each step; raises CreateError, ModelNotFound, …

    ``check_template`` raises when a template does not parse (the store knows no template engine).
    Returns the digests of blobs removed because the model it replaced was their last user.
    """
    name = ModelName.parse(spec.name)
    remote = _remote_source(spec)
    if remote is not None:
        return _create_stub(store, name, spec, *remote, progress, check_template)
    quantize_to = quantize_type(spec.quantize) if spec.quantize else None
    if spec.base and not spec.files:
        base = store.get(spec.base)
        layers = list(base.manifest.layers)
        params = {**base.params, **spec.parameters}
        gguf_path = base.model_path
        parent = base.name.display_shortest()
    elif spec.files:
        layers, gguf_path = _layers_from_files(store, spec.files, progress)
        params = dict(spec.parameters)
        base, parent = None, ""
    else:
        raise CreateError("neither 'from' or 'files' was specified")
    if quantize_to is not None and gguf_path is not None:
        layers, gguf_path = _quantize_model_layer(store, layers, gguf_path, quantize_to, progress)
    if spec.adapters:
        # One adapter at a time, as Ollama: a new one replaces the base model's.
        adapter = _adapter_layer(store, spec.adapters, gguf_path, progress)
        layers = [layer for layer in layers if layer.media_type != MEDIA_TYPE_ADAPTER] + [adapter]
    layers = _replace_text_layers(store, layers, spec, params, progress, check_template)
    config = _config(store, gguf_path, base, layers, parent, file_type=quantize_to)
    return _write(store, name, config, layers, progress)


def _replace_text_layers(
    store: ModelStore,
    layers: list[Layer],
    spec: CreateSpec,
    params: dict[str, Any],
    progress: Progress,
    check_template: Callable[[str], None],
) -> list[Layer]:
    """``layers`` with the template, system, license, messages and params the request gives."""
    if spec.template is not None:
        try:
            check_template(spec.template)
        except Exception as exc:  # whatever the template engine raises for a template it rejects
            raise CreateError(f"template error: {exc}") from None
    replacements = {
        MEDIA_TYPE_TEMPLATE: [spec.template.encode()] if spec.template is not None else None,
        MEDIA_TYPE_SYSTEM: [spec.system.encode()] if spec.system is not None else None,
        MEDIA_TYPE_LICENSE: [text.encode() for text in spec.license] if spec.license is not None else None,
        MEDIA_TYPE_MESSAGES: [go_json_bytes(spec.messages)] if spec.messages is not None else None,
        MEDIA_TYPE_PARAMS: [go_json_bytes(dict(sorted(params.items())))] if params or spec.parameters else None,
    }
    for media_type in _REPLACEABLE:
        contents = replacements[media_type]
        if contents is None:
            continue
        layers = [layer for layer in layers if layer.media_type != media_type]
        for content in contents:
            layers.append(_add_layer(store, media_type, content, progress))
    for layer in layers:
        if layer.media_type not in _REPLACEABLE or replacements[layer.media_type] is None:
            progress(f"using existing layer {layer.digest}", layer.digest)
    return layers


def _write(store: ModelStore, name: ModelName, config: Layer, layers: list[Layer], progress: Progress) -> set[str]:
    progress("writing manifest", "")
    removed = store.write_manifest(name, Manifest(config=config, layers=layers))
    log.info("model_created", model=name.display_shortest(), layers=len(layers))
    progress("success", "")
    return removed


def _remote_source(spec: CreateSpec) -> tuple[str, str] | None:
    """(remote host URL, remote model) when ``spec`` makes a stub: ``from`` a cloud name (served by
    the cloud upstream unless ``remote_host`` says otherwise) or any ``from`` with a ``remote_host``."""
    if not spec.base:
        return None
    try:
        ref = parse_ref(spec.base)
    except ModelRefError:
        raise CreateError("invalid model name") from None
    host = spec.remote_host or (OLLAMA_CLOUD_URL if ref.is_cloud else "")
    return (remote_url(host), ref.base) if host else None


def remote_url(raw: str) -> str:
    """A remote host as Ollama's ``remoteURL`` spells it: ``ollama.com`` is ``https://ollama.com:443``,
    a bare host gets ``http://`` and port 11434, a bare path is on ``localhost:11434``.
    CreateError ``bad remote`` when it is no URL."""
    if raw.startswith("/"):
        return f"http://localhost:{_DEFAULT_REMOTE_PORT}{_clean_path(raw)}"
    if "://" not in raw:
        raw = "http://" + raw
    if raw == "http://ollama.com":
        raw = OLLAMA_CLOUD_URL
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in raw):
        raise CreateError("bad remote")
    try:
        url = urlsplit(raw)
        url.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise CreateError("bad remote") from None
    if not url.scheme:
        raise CreateError("bad remote")
    userinfo, at, host = url.netloc.rpartition("@")
    host = host or "localhost"
    if not _HAS_PORT.fullmatch(host):
        host = f"{host}:{_DEFAULT_REMOTE_PORT}"
    path = _clean_path(url.path) if url.path else ""
    return (
        f"{url.scheme.lower()}://{userinfo}{at}{host}{'' if path == '/' else path}"
        + (f"?{url.query}" if url.query else "")
        + (f"#{url.fragment}" if url.fragment else "")
    )


def _clean_path(path: str) -> str:
    """Go's ``path.Clean`` for an absolute path."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _create_stub(
    store: ModelStore,
    name: ModelName,
    spec: CreateSpec,
    remote_host: str,
    remote_model: str,
    progress: Progress,
    check_template: Callable[[str], None],
) -> set[str]:
    """A remote model: no weights, nothing downloaded; its config names the host and the model there."""
    layers = _replace_text_layers(store, [], spec, dict(spec.parameters), progress, check_template)
    info = spec.info
    # Ollama's ConfigV2 as it encodes it, empty fields left out where its tags say omitempty.
    config: dict[str, Any] = {
        "model_format": "",
        "model_family": info.model_family,
        "model_families": [info.model_family] if info.model_family else None,
        "model_type": info.parameter_size,
        "file_type": info.quantization_level,
        "remote_host": remote_host,
        "remote_model": remote_model,
    }
    optional = {
        "capabilities": info.capabilities,
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
        "base_name": info.base_name,
    }
    config.update({key: value for key, value in optional.items() if value})
    config.update(_platform())
    digest, size = store.add_blob_bytes(go_json_bytes(config))
    log.info("remote_model_created", model=name.display_shortest(), remote_host=remote_host, remote_model=remote_model)
    return _write(store, name, Layer(media_type=MEDIA_TYPE_CONFIG, digest=digest, size=size), layers, progress)


def _platform() -> dict[str, str]:
    """The ``architecture`` and ``os`` every config records: Go's GOARCH and GOOS names."""
    machine = platform.machine().lower()
    return {
        "architecture": _GOARCH.get(machine, machine),
        "os": "linux" if sys.platform.startswith("linux") else sys.platform,
    }


def _check_file_names(files: dict[str, str]) -> None:
    for filename, digest in files.items():
        path = PurePosixPath(filename)
        if path.is_absolute() or ".." in path.parts or "\\" in filename:
            raise CreateError("file path must be relative")
        try:
            validate_digest(digest)
        except InvalidDigest:
            raise CreateError("invalid digest format") from None


def _stored_blob(store: ModelStore, digest: str) -> Path:
    path = store.blob_path(digest)
    if not path.is_file():
        raise CreateError(f'blob "{validate_digest(digest)}" not found')
    return path


def _uploaded_gguf(store: ModelStore, digest: str, progress: Progress) -> tuple[Path, GGUFInfo]:
    """An uploaded blob and its GGUF header; CreateError when it is missing or no GGUF."""
    path = _stored_blob(store, digest)
    progress("parsing GGUF", "")
    try:
        return path, read_gguf(path)
    except NotGGUFError:
        raise CreateError("supplied file was not in GGUF format") from None
    except GGUFError as exc:
        # The reason is safe to show (it never names the file) and tells the user what is wrong.
        raise CreateError(f"invalid model file: {exc}") from None


def _layers_from_files(store: ModelStore, files: dict[str, str], progress: Progress) -> tuple[list[Layer], Any]:
    _check_file_names(files)
    ggufs = [(f, d) for f, d in files.items() if f.lower().endswith(".gguf")]
    if not ggufs:
        if "config.json" in files and any(f.lower().endswith(".safetensors") for f in files):
            return _layers_from_safetensors(store, files, progress)
        if any(f.lower().endswith(".safetensors") for f in files):
            raise CreateError("config.json is missing")
        raise CreateError("no files provided to convert")
    # As Ollama: files in name order, a multimodal projector among them becomes a projector layer.
    layers: list[Layer] = []
    model_path = None
    for _, digest in sorted(ggufs):
        path, info = _uploaded_gguf(store, digest, progress)
        if is_projector(info):
            media_type = MEDIA_TYPE_PROJECTOR
        elif model_path is None:
            media_type, model_path = MEDIA_TYPE_MODEL, path
        else:
            raise CreateError("only one GGUF file is supported")
        layers.append(Layer(media_type=media_type, digest=validate_digest(digest), size=path.stat().st_size))
    if model_path is None:
        raise CreateError("a projector needs a model GGUF to go with it")
    return layers, model_path


def is_projector(info: GGUFInfo) -> bool:
    """Whether a GGUF is a multimodal projector (mmproj) rather than a model (Ollama's ``isProjectorGGUF``)."""
    if info.metadata.get("general.type") in ("projector", "mmproj"):
        return True
    if info.architecture_value("block_count"):
        return False
    # A standalone vision model: vision blocks and no text blocks.
    vision_blocks = info.architecture_value("vision.block_count")
    if isinstance(vision_blocks, int) and vision_blocks > 0:
        return True
    encoders = info.architecture_value("has_vision_encoder") or info.architecture_value("has_audio_encoder")
    return info.architecture == "clip" and encoders is True


def _adapter_layer(store: ModelStore, adapters: dict[str, str], model_path: Path | None, progress: Progress) -> Layer:
    """The layer for a GGUF LoRA adapter, checked against the weights it will be applied to."""
    _check_file_names(adapters)
    if len(adapters) > 1:
        raise CreateError("only one adapter is currently supported")
    ((filename, digest),) = adapters.items()
    if filename.lower().endswith(".safetensors"):
        raise CreateError("only GGUF adapters are supported: convert the adapter to GGUF first")
    if not filename.lower().endswith(".gguf"):
        raise CreateError("unknown type")
    path, adapter = _uploaded_gguf(store, digest, progress)
    if adapter.metadata.get("general.type") != "adapter" or adapter.metadata.get("adapter.type") != "lora":
        raise CreateError("the adapter file is not a LoRA adapter")
    if model_path is None:
        raise CreateError("an adapter needs a model to apply to")
    _check_adapter_fits(adapter, read_gguf(model_path))
    return Layer(media_type=MEDIA_TYPE_ADAPTER, digest=validate_digest(digest), size=path.stat().st_size)


def _check_adapter_fits(adapter: GGUFInfo, model: GGUFInfo) -> None:
    """What llama.cpp checks when it loads an adapter, checked at create time instead of at the first chat."""
    if adapter.architecture != model.architecture:
        raise CreateError(f"the adapter is for {adapter.architecture} models, not {model.architecture}")
    weights = {tensor.name: tensor.shape for tensor in model.tensors}
    pairs = {tensor.name: tensor.shape for tensor in adapter.tensors}
    for name, a_shape in pairs.items():
        target = name.removesuffix(".lora_a").removesuffix(".lora_b")
        if target + ".lora_a" not in pairs or target + ".lora_b" not in pairs:
            raise CreateError(f"the adapter has half of a LoRA pair: {target}")
        if not name.endswith(".lora_a") or target == "token_embd.weight":  # llama.cpp lays embeddings out otherwise
            continue
        b_shape = pairs.get(target + ".lora_b")
        shape = weights.get(target)
        # GGUF shapes list the row length first: A is (n_in, rank), B is (rank, n_out), the weight (n_in, n_out).
        if b_shape is None or shape is None or (a_shape[0], b_shape[1], a_shape[1]) != (shape[0], shape[1], b_shape[0]):
            raise CreateError(f"the adapter does not fit the model: {target}")


def _layers_from_safetensors(
    store: ModelStore, files: dict[str, str], progress: Progress
) -> tuple[list[Layer], Path]:
    """Converts an uploaded Hugging Face model directory into a GGUF blob, the model layer of the new model."""
    paths = {filename: _stored_blob(store, digest) for filename, digest in files.items()}
    progress("converting model", "")
    store.blobs_dir.mkdir(parents=True, exist_ok=True)
    # Inside blobs/ with a dot name: the store's listing skips it and pruning removes one a crash left behind.
    descriptor, temp_name = tempfile.mkstemp(dir=store.blobs_dir, prefix=".tmp-convert-")
    os.close(descriptor)
    temp_path = Path(temp_name)
    try:
        convert_bert(paths, temp_path)
        read_gguf(temp_path)
        digest, size = store.add_blob_from_file(temp_path)
    except ConversionError as exc:
        raise CreateError(str(exc)) from None
    except GGUFError:
        log.exception("converted_gguf_invalid")
        raise CreateError("the converted model is not a valid GGUF") from None
    finally:
        temp_path.unlink(missing_ok=True)
    return [Layer(media_type=MEDIA_TYPE_MODEL, digest=digest, size=size)], store.blob_path(digest)


def _add_layer(store: ModelStore, media_type: str, content: bytes, progress: Progress) -> Layer:
    existed = _blob_exists(store, content)
    digest, size = store.add_blob_bytes(content)
    progress(f"{'using existing' if existed else 'creating new'} layer {digest}", digest)
    return Layer(media_type=media_type, digest=digest, size=size)


def _blob_exists(store: ModelStore, content: bytes) -> bool:
    return store.blob_path("sha256:" + hashlib.sha256(content).hexdigest()).is_file()


def _config(
    store: ModelStore, gguf_path, base: StoredModel | None, layers: list[Layer], parent: str, file_type: str | None
) -> Layer:
    """Ollama's ConfigV2, from the base model's config or the GGUF header; ``file_type`` after a quantization."""
    if base is not None and base.config:
        config = dict(base.config)
        if file_type is not None:
            config["file_type"] = file_type
    else:
        info = read_gguf(gguf_path)
        config = {
            "model_format": "gguf",
            "model_family": info.architecture,
            "model_families": [info.architecture],
            "model_type": human_number(info.parameter_count),
            "file_type": info.file_type_name,
        }
    config.update({**_platform(), "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]}})
    if parent:
        config["parent_model"] = parent
    digest, size = store.add_blob_bytes(go_json_bytes(config))
    return Layer(media_type=MEDIA_TYPE_CONFIG, digest=digest, size=size)


def quantize_type(requested: str) -> str:
    """The llama.cpp type name for a request's ``quantize`` (``q4_K_M`` → ``Q4_K_M``); raises CreateError."""
    wanted = requested.upper()
    if wanted not in _QUANTIZE_TYPES:
        supported = ", ".join(dict.fromkeys(_QUANTIZE_TYPES.values()))
        raise CreateError(f"unsupported quantization type {wanted} - supported types are {supported}")
    return _QUANTIZE_TYPES[wanted]


def _quantize_model_layer(
    store: ModelStore, layers: list[Layer], gguf_path: Path, target: str, progress: Progress
) -> tuple[list[Layer], Path]:
    """Replaces the weights layer (the last model layer, as Ollama loads it) by its quantization to ``target``."""
    try:
        source = read_gguf(gguf_path).file_type_name
    except GGUFError:
        raise CreateError("supplied file was not in GGUF format") from None
    if source not in _QUANTIZABLE_SOURCES:
        raise CreateError("quantization is only supported for F16, BF16 and F32 models")
    if source == target:
        return layers, gguf_path
    store.blobs_dir.mkdir(parents=True, exist_ok=True)
    # Inside blobs/ with a dot name: the store's listing skips it and pruning removes one a crash left behind.
    descriptor, temp_name = tempfile.mkstemp(dir=store.blobs_dir, prefix=".tmp-quantize-")
    os.close(descriptor)
    temp_path = Path(temp_name)
    try:
        _run_quantizer(gguf_path, temp_path, target, f"quantizing {source} model to {target}", progress)
        progress("verifying conversion", "")
        try:
            quantized = read_gguf(temp_path).file_type_name
        except GGUFError:
            log.exception("quantized_gguf_invalid", target=target)
            raise CreateError(f"quantizing the model to {target} did not produce a valid GGUF") from None
        if quantized != target:
            log.error("quantized_file_type_mismatch", target=target, file_type=quantized)
            raise CreateError(f"quantizing the model to {target} produced {quantized} instead")
        digest, size = store.add_blob_from_file(temp_path)
    finally:
        temp_path.unlink(missing_ok=True)
    log.info("model_quantized", source=source, target=target, digest=digest, size=size)
    last_model = max(i for i, layer in enumerate(layers) if layer.media_type == MEDIA_TYPE_MODEL)
    layers = list(layers)
    layers[last_model] = Layer(media_type=MEDIA_TYPE_MODEL, digest=digest, size=size)
    return layers, store.blob_path(digest)


def _run_quantizer(source: Path, output: Path, target: str, status: str, progress: Progress) -> None:
    """Runs ``herd.core.runner.quantize`` and turns its per-tensor lines into byte progress, as Ollama reports it."""
    total = source.stat().st_size
    progress(status, "", total=total, completed=0)
    command = [sys.executable, "-m", "herd.core.runner.quantize"]
    command += ["--input", str(source), "--output", str(output), "--type", target]
    # llama.cpp narrates every tensor on stderr: a file, not a pipe, so a big model cannot fill it and stall.
    with tempfile.TemporaryFile() as narration:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=narration, text=True
        )
        try:
            for line in process.stdout:
                tensor, tensors = _tensor_progress(line)
                if tensors:
                    progress(status, "", total=total, completed=total * tensor // tensors)
            returncode = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
        if returncode != 0:
            narration.seek(0)
            tail = narration.read()[-4000:].decode("utf-8", "replace")
            log.error("quantize_failed", target=target, returncode=returncode, stderr=tail)
            raise CreateError(f"llama.cpp could not quantize the model to {target}")


def _tensor_progress(line: str) -> tuple[int, int]:
    """(tensor, tensors) from one of the quantizer's progress lines; (0, 0) for anything else."""
    try:
        report = json.loads(line)
        return int(report["tensor"]), int(report["tensors"])
    except (ValueError, KeyError, TypeError):
        return 0, 0
