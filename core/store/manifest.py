"""Manifests and digests in Ollama's on-disk format (``manifest/manifest.go``, ``manifest/layer.go``).

A digest is used as a file name, so it is validated against ``^sha256[:-][0-9a-fA-F]{64}$``
before any path is built from it: the check that closed Ollama's path-traversal CVE-2024-37032.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MEDIA_TYPE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_MODEL = "application/vnd.ollama.image.model"
MEDIA_TYPE_TEMPLATE = "application/vnd.ollama.image.template"
# Older manifests carry the template under this name; it is read as a template.
MEDIA_TYPE_PROMPT = "application/vnd.ollama.image.prompt"
MEDIA_TYPE_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_TYPE_PARAMS = "application/vnd.ollama.image.params"
MEDIA_TYPE_LICENSE = "application/vnd.ollama.image.license"
MEDIA_TYPE_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_TYPE_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_TYPE_ADAPTER = "application/vnd.ollama.image.adapter"

SCHEMA_VERSION = 2

_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")


class InvalidDigest(ValueError):
    """A digest that is not ``sha256:<64 hex>``; the message is Ollama's error text."""

    def __init__(self) -> None:
        super().__init__("invalid digest format")


class CorruptManifest(ValueError):
    """Manifest bytes that are not a valid Ollama manifest."""


def validate_digest(digest: str) -> str:
    """Return the digest as ``sha256:<lower-case hex>``; raise InvalidDigest for anything else."""
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise InvalidDigest()
    return f"sha256:{match.group(1).lower()}"


def blob_filename(digest: str) -> str:
    """The blob's file name under ``blobs/``: ``sha256-<hex>``."""
    return validate_digest(digest).replace(":", "-", 1)


def go_json_bytes(value: Any) -> bytes:
    """JSON as Go's ``json.Encoder`` writes it: compact, ``<>&`` escaped, newline-terminated.

    Matching Go byte for byte keeps digests of the same content equal to Ollama's.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return (text + "\n").encode("utf-8")


@dataclass(frozen=True)
class Layer:
    """One blob of a model: what it is, its digest and its size in bytes."""

    media_type: str
    digest: str
    size: int
    from_: str | None = None
    # Tensor layers of safetensors models name the tensor they hold.
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.from_:
            entry["from"] = self.from_
        if self.name:
            entry["name"] = self.name
        return entry

    @classmethod
    def from_json(cls, entry: Any) -> Layer:
        if not isinstance(entry, dict):
            raise CorruptManifest("layer is not an object")
        media_type, digest, size = entry.get("mediaType"), entry.get("digest"), entry.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise CorruptManifest("layer has no media type")
        if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
            raise CorruptManifest("layer has an invalid digest")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise CorruptManifest("layer has an invalid size")
        from_, name = entry.get("from"), entry.get("name")
        if from_ is not None and not isinstance(from_, str):
            raise CorruptManifest("layer has an invalid 'from'")
        if name is not None and not isinstance(name, str):
            raise CorruptManifest("layer has an invalid name")
        return cls(
            media_type=media_type, digest=validate_digest(digest), size=size, from_=from_ or None, name=name or None
        )


@dataclass(frozen=True)
class Manifest:
    """A model: its config blob and its layers, in order."""

    config: Layer
    layers: list[Layer] = field(default_factory=list)

    def to_json_bytes(self) -> bytes:
        """The manifest as Ollama writes it, keys in Ollama's order."""
        return go_json_bytes(
            {
                "schemaVersion": SCHEMA_VERSION,
                "mediaType": MEDIA_TYPE_MANIFEST,
                "config": self.config.to_json(),
                "layers": [layer.to_json() for layer in self.layers],
            }
        )

    @classmethod
    def from_json_bytes(cls, data: bytes) -> Manifest:
        """Parse manifest bytes; raise CorruptManifest on anything malformed."""
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CorruptManifest("manifest is not JSON") from None
        if not isinstance(document, dict):
            raise CorruptManifest("manifest is not an object")
        if document.get("schemaVersion") != SCHEMA_VERSION:
            raise CorruptManifest("manifest has an unsupported schema version")
        layers = document.get("layers")
        if not isinstance(layers, list):
            raise CorruptManifest("manifest has no layer list")
        return cls(config=Layer.from_json(document.get("config")), layers=[Layer.from_json(layer) for layer in layers])

    @property
    def size(self) -> int:
        """Bytes of all layers plus the config, as ``ollama list`` reports."""
        return self.config.size + sum(layer.size for layer in self.layers)

    def digests(self) -> set[str]:
        """The blobs this manifest needs: every layer's and the config's."""
        return {layer.digest for layer in (self.config, *self.layers)}

    def layers_of(self, media_type: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.media_type == media_type]
