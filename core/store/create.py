"""Creating models, as Ollama's ``/api/create`` does: from a stored model, uploaded GGUF blobs or an
uploaded Hugging Face BERT model directory (converted to GGUF).

Every layer is a blob written (or found) first; the manifest is written last, so a create that
fails or is interrupted leaves no model behind, only blobs the next pruning may remove.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import structlog

from herd.core.store.convert import ConversionError, convert_bert
from herd.core.store.gguf import GGUFError, human_number, read_gguf
from herd.core.store.manifest import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
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

log = structlog.get_logger(__name__)

Progress = Callable[[str, str], None]  # (status, digest)

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


def create_model(store: ModelStore, spec: CreateSpec, progress: Progress, check_template: Callable[[str], None]) -> None:
    """Builds ``spec`` into the store, reporting each step; raises CreateError, ModelNotFound, …

    ``check_template`` raises when a template does not parse (the store knows no template engine).
    """
    name = ModelName.parse(spec.name)
    if spec.adapters:
        raise CreateError("adapters are not supported yet")
    if spec.quantize:
        raise CreateError("quantization is not supported yet")
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
    config = _config(store, gguf_path, base, layers, parent)
    progress("writing manifest", "")
    store.write_manifest(name, Manifest(config=config, layers=layers))
    log.info("model_created", model=name.display_shortest(), layers=len(layers))
    progress("success", "")


def _layers_from_files(store: ModelStore, files: dict[str, str], progress: Progress) -> tuple[list[Layer], Any]:
    for filename, digest in files.items():
        path = PurePosixPath(filename)
        if path.is_absolute() or ".." in path.parts or "\\" in filename:
            raise CreateError("file path must be relative")
        try:
            validate_digest(digest)
        except InvalidDigest:
            raise CreateError("invalid digest format") from None
    ggufs = [(f, d) for f, d in files.items() if f.lower().endswith(".gguf")]
    if not ggufs:
        if "config.json" in files and any(f.lower().endswith(".safetensors") for f in files):
            return _layers_from_safetensors(store, files, progress)
        if any(f.lower().endswith(".safetensors") for f in files):
            raise CreateError("config.json is missing")
        raise CreateError("no files provided to convert")
    if len(ggufs) > 1:
        raise CreateError("only one GGUF file is supported")
    _, digest = ggufs[0]
    path = store.blob_path(digest)
    if not path.is_file():
        raise CreateError(f'blob "{validate_digest(digest)}" not found')
    progress("parsing GGUF", "")
    try:
        read_gguf(path)
    except GGUFError:
        raise CreateError("supplied file was not in GGUF format") from None
    layer = Layer(media_type=MEDIA_TYPE_MODEL, digest=validate_digest(digest), size=path.stat().st_size)
    return [layer], path


def _layers_from_safetensors(
    store: ModelStore, files: dict[str, str], progress: Progress
) -> tuple[list[Layer], Path]:
    """Converts an uploaded Hugging Face model directory into a GGUF blob, the model layer of the new model."""
    paths = {}
    for filename, digest in files.items():
        path = store.blob_path(digest)
        if not path.is_file():
            raise CreateError(f'blob "{validate_digest(digest)}" not found')
        paths[filename] = path
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


def _config(store: ModelStore, gguf_path, base: StoredModel | None, layers: list[Layer], parent: str) -> Layer:
    """Ollama's ConfigV2, from the base model's config or the GGUF header."""
    if base is not None and base.config:
        config = dict(base.config)
    else:
        info = read_gguf(gguf_path)
        config = {
            "model_format": "gguf",
            "model_family": info.architecture,
            "model_families": [info.architecture],
            "model_type": human_number(info.parameter_count),
            "file_type": info.file_type_name,
        }
    config.update({
        "architecture": _GOARCH.get(platform.machine().lower(), platform.machine().lower()),
        "os": "linux" if sys.platform.startswith("linux") else sys.platform,
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
    })
    if parent:
        config["parent_model"] = parent
    digest, size = store.add_blob_bytes(go_json_bytes(config))
    return Layer(media_type=MEDIA_TYPE_CONFIG, digest=digest, size=size)
