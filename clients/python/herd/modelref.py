"""Cloud and local source suffixes on model names, parsed as Ollama's ``internal/modelref`` does.

``x:cloud``, ``x:8b-cloud`` and ``x:8b:cloud`` name a model served by the cloud upstream (base name
``x``, ``x:8b``, ``x:8b``); ``x:local`` names the local ``x``. The suffix alone decides: no
manifest is consulted, so a ``-cloud`` name is sent upstream even when a local model has it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from herd.gofmt import go_quote

CONFLICTING_SOURCE_SUFFIX = "use either :local or :cloud, not both"
# Trailing metadata of core's FAILED_PRECONDITION for a generate or chat on a remote model (a stub):
# the gateway forwards such a request to the stub's host.
REMOTE_MODEL_METADATA = "herd-remote-model"
MODEL_REQUIRED = "model is required"
# Where cloud names go unless OLLAMA_CLOUD_BASE_URL says otherwise, and a stub's host by default.
OLLAMA_CLOUD_URL = "https://ollama.com:443"

_CLOUD_SUFFIX = "-cloud"


class ModelSource(enum.Enum):
    UNSPECIFIED = "unspecified"
    LOCAL = "local"
    CLOUD = "cloud"


class ModelRefError(ValueError):
    """A name whose source cannot be told; the message is Ollama's."""


@dataclass(frozen=True)
class ModelRef:
    original: str
    base: str
    source: ModelSource

    @property
    def is_cloud(self) -> bool:
        return self.source is ModelSource.CLOUD


def _split_source_suffix(raw: str) -> tuple[str, ModelSource, bool]:
    colon = raw.rfind(":")
    if colon >= 0:
        suffix_raw = raw[colon + 1 :].strip()
        suffix = suffix_raw.lower()
        if suffix == "cloud":
            return raw[:colon], ModelSource.CLOUD, True
        if suffix == "local":
            return raw[:colon], ModelSource.LOCAL, True
        if "/" not in suffix_raw and suffix.endswith(_CLOUD_SUFFIX):
            return raw[: colon + 1] + suffix_raw[: -len(_CLOUD_SUFFIX)], ModelSource.CLOUD, True
    return raw, ModelSource.UNSPECIFIED, False


def parse_ref(raw: str) -> ModelRef:
    """The name's base and source; :class:`ModelRefError` for an empty name or two suffixes."""
    raw = raw.strip()
    if not raw:
        raise ModelRefError(MODEL_REQUIRED)
    base, source, explicit = _split_source_suffix(raw)
    if explicit and _split_source_suffix(base)[2]:
        raise ModelRefError(f"{CONFLICTING_SOURCE_SUFFIX}: {go_quote(raw)}")
    return ModelRef(raw, base, source)


def has_explicit_tag(name: str) -> bool:
    """A tag after the last ``/`` (a registry's ``host:port`` is not one)."""
    return name.rfind(":") > name.rfind("/")


def normalize_pull_name(raw: str) -> str:
    """The name ``pull`` asks the registry for: a cloud name in the legacy stub spelling
    (``x:8b:cloud`` → ``x:8b-cloud``, ``x:cloud`` stays), any other name its base."""
    ref = parse_ref(raw)
    if not ref.is_cloud:
        return ref.base
    return ref.base + ("-cloud" if has_explicit_tag(ref.base) else ":cloud")
