"""The model store: Ollama's ``$OLLAMA_MODELS`` layout of manifests and content-addressed blobs.

``manifests/<host>/<namespace>/<model>/<tag>`` hold JSON manifests; ``blobs/sha256-<hex>`` hold
the layers. Writes are crash-safe where Ollama's are not: a blob is hashed into a temporary file
and only renamed to its content address once the digest is known, and a manifest (the commit
point that makes a model visible) is written last, through a temporary file and ``os.replace``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import structlog

from herd.core.store.gguf import GGUFInfo, human_number, read_gguf
from herd.core.store.manifest import (
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    CorruptManifest,
    Manifest,
    blob_filename,
    validate_digest,
)
from herd.core.store.names import InvalidModelName, ModelName

log = structlog.get_logger(__name__)

# Manifests are a few hundred bytes; even a safetensors model with thousands of tensor layers
# stays far below this.
MAX_MANIFEST_BYTES = 16 << 20
# Template, system, params, license and messages layers are text meant for a prompt.
MAX_TEXT_LAYER_BYTES = 16 << 20
_COPY_CHUNK = 1 << 20
# Parsed GGUF headers kept in memory; a header with a large vocabulary is tens of MB of objects.
_GGUF_CACHE_ENTRIES = 4
_TEMP_PREFIX = ".tmp-"
# Interrupted downloads (core/store/registry.py) resume from these; pruning drops them after a week.
PARTIAL_PREFIX = ".partial-"
PARTIAL_DOWNLOAD_GRACE_S = 7 * 24 * 3600


class ModelNotFound(LookupError):
    """No model of that name is in the store; ``name`` is the name as the caller gave it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class DigestMismatch(ValueError):
    """Uploaded bytes do not hash to the digest they were sent under."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f'digest mismatch, expected "{expected}", got "{actual}"')


class CorruptModel(ValueError):
    """A stored model's layer is missing or unreadable. The message never names a path."""


@dataclass(frozen=True)
class ModelDetails:
    """Facts about the weights, as Ollama's ``details`` object reports them."""

    parent_model: str
    format: str
    family: str
    families: tuple[str, ...]
    parameter_size: str
    quantization_level: str


class ModelStore:
    """Models under one ``OLLAMA_MODELS`` root; ``blobs/`` and ``manifests/`` are created on first write."""

    def __init__(self, root: Path, remove_replaced_layers: bool = True) -> None:
        self.root = Path(root)
        # OLLAMA_NOPRUNE keeps the blobs a replaced manifest no longer needs.
        self.remove_replaced_layers = remove_replaced_layers
        self.blobs_dir = self.root / "blobs"
        self.manifests_dir = self.root / "manifests"
        self._gguf_cache: OrderedDict[str, GGUFInfo] = OrderedDict()
        self._gguf_cache_lock = threading.Lock()
        # Blobs an unfinished pull has stored or will store; no manifest names them yet.
        self._pinned: Counter[str] = Counter()
        self._pinned_lock = threading.Lock()

    def list_models(self) -> list[StoredModel]:
        """Every readable model, newest manifest first; unreadable manifests are logged and skipped."""
        models = []
        for path in self._manifest_files():
            relative = path.relative_to(self.manifests_dir).parts
            try:
                name = ModelName(*relative)
                models.append(self._load(name, path))
            except InvalidModelName:
                log.warning("manifest_skipped", reason="invalid name", manifest="/".join(relative))
            except (CorruptManifest, OSError) as exc:
                log.warning("manifest_skipped", reason=str(exc), manifest="/".join(relative))
        models.sort(key=lambda model: model.modified_at, reverse=True)
        return models

    def get(self, name: str) -> StoredModel:
        """The model called ``name``, matched case-insensitively as Ollama does.

        Raises InvalidModelName, ModelNotFound, or CorruptManifest when its manifest is unreadable.
        """
        wanted = ModelName.parse(name)
        found = self._existing_path(wanted)
        if found is None:
            raise ModelNotFound(name)
        existing_name, path = found
        try:
            return self._load(existing_name, path)
        except FileNotFoundError:
            raise ModelNotFound(name) from None
        except OSError as exc:
            log.warning("manifest_unreadable", model=str(existing_name), error=str(exc))
            raise CorruptManifest("manifest cannot be read") from None

    def is_empty(self) -> bool:
        """True when the store holds no readable model."""
        return not self.list_models()

    def blob_path(self, digest: str) -> Path:
        """Where a blob lives; raises InvalidDigest before any path is built from a bad digest."""
        return self.blobs_dir / blob_filename(digest)

    def add_blob_from_file(self, src: Path) -> tuple[str, int]:
        """Copy a file into the store; returns its ``sha256:<hex>`` digest and size."""
        with open(src, "rb") as source:
            return self._add_blob(iter(lambda: source.read(_COPY_CHUNK), b""))

    def add_blob_bytes(self, data: bytes) -> tuple[str, int]:
        """Store bytes as a blob; returns its ``sha256:<hex>`` digest and size."""
        return self._add_blob(iter((data,)))

    def copy(self, source: str, destination: str) -> None:
        """Gives ``source``'s manifest a second name (both share every blob)."""
        model = self.get(source)
        self.write_manifest(ModelName.parse(destination), model.manifest)

    def delete(self, name: str) -> None:
        """Removes a model, then every blob of it that no other manifest names."""
        model = self.get(name)
        path = model.name.manifest_path(self.root)
        path.unlink()
        for parent in path.parents:
            if parent == self.manifests_dir:
                break
            try:
                parent.rmdir()
            except OSError:
                break
        log.info("manifest_removed", model=str(model.name))
        self._remove_unreferenced(model.manifest.digests())

    @contextmanager
    def pinned(self, digests: Iterable[str]) -> Iterator[None]:
        """Keeps ``digests``' blobs from being removed as unused by this process until the block ends."""
        held = list(digests)
        with self._pinned_lock:
            self._pinned.update(held)
        try:
            yield
        finally:
            with self._pinned_lock:
                self._pinned.subtract(held)
                self._pinned += Counter()  # drops the counts that reached zero

    def _is_pinned(self, digest: str) -> bool:
        with self._pinned_lock:
            return self._pinned[digest] > 0

    def prune(self, grace_s: float) -> int:
        """Removes blobs no manifest names and abandoned temporary files, if older than ``grace_s``.

        The grace period spares uploads whose manifest is still to come. Nothing is removed when
        any manifest cannot be read: that model's blobs would look unused. Returns the count removed.
        """
        referenced = self._referenced_digests()
        if referenced is None:
            log.warning("prune_skipped", reason="an unreadable manifest may still need its blobs")
            return 0
        cutoff = time.time() - grace_s
        # A partial download is worth resuming for a while longer than an orphan is worth keeping.
        partial_cutoff = time.time() - PARTIAL_DOWNLOAD_GRACE_S
        removed = 0
        for path in self.blobs_dir.glob("*") if self.blobs_dir.is_dir() else ():
            name = path.name
            digest = name.replace("-", ":", 1)
            is_orphan = name.startswith("sha256-") and digest not in referenced and not self._is_pinned(digest)
            try:
                mtime = path.stat().st_mtime
                if (
                    ((is_orphan or name.startswith(_TEMP_PREFIX)) and mtime < cutoff)
                    or (name.startswith(PARTIAL_PREFIX) and mtime < partial_cutoff)
                ):
                    path.unlink()
                    removed += 1
            except OSError as exc:
                log.warning("prune_failed", blob=name, error=exc.strerror)
        for path in self.manifests_dir.glob(f"*/*/*/{_TEMP_PREFIX}*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError as exc:
                log.warning("prune_failed", manifest=path.name, error=exc.strerror)
        log.info("blobs_pruned", removed=removed)
        return removed

    def _manifest_files(self) -> Iterator[Path]:
        # pathlib's "*" matches hidden names too: those are manifest writes a crash cut short.
        for path in self.manifests_dir.glob("*/*/*/*"):
            if not path.name.startswith(".") and not path.is_dir():
                yield path

    def _referenced_digests(self) -> set[str] | None:
        """Every digest a manifest names, or None when some manifest cannot be read."""
        digests: set[str] = set()
        for path in self._manifest_files():
            try:
                manifest = self._load(ModelName(*path.relative_to(self.manifests_dir).parts), path).manifest
            except (InvalidModelName, CorruptManifest, OSError):
                return None
            digests |= manifest.digests()
        return digests

    def _remove_unreferenced(self, digests: set[str]) -> set[str]:
        """Removes those of ``digests``' blobs that no manifest names; returns the ones removed."""
        referenced = self._referenced_digests()
        if referenced is None:
            log.warning("blobs_kept", reason="an unreadable manifest may still need them")
            return set()
        unused = {digest for digest in digests - referenced if not self._is_pinned(digest)}
        for digest in unused:
            self.blob_path(digest).unlink(missing_ok=True)
        return unused

    def write_manifest(self, name: ModelName, manifest: Manifest) -> set[str]:
        """Make a model visible by writing its manifest; every blob it names must already be stored.

        When it replaces a manifest, the old one's blobs that nothing uses any more are removed (unless
        ``remove_replaced_layers`` is off); returns their digests.
        """
        for layer in (manifest.config, *manifest.layers):
            if not self.blob_path(layer.digest).is_file():
                raise CorruptManifest(f"manifest references a missing blob {layer.digest}")
        path = name.manifest_path(self.root)
        try:
            replaced = self._load(name, path).manifest.digests() - manifest.digests()
        except (CorruptManifest, OSError):  # none yet, or one past reading: nothing to clean up after
            replaced = set()
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, manifest.to_json_bytes())
        log.info("manifest_written", model=str(name), layers=len(manifest.layers))
        if not (replaced and self.remove_replaced_layers):
            return set()
        removed = self._remove_unreferenced(replaced)
        log.info("replaced_layers_removed", model=str(name), removed=len(removed))
        return removed

    def gguf(self, digest: str) -> GGUFInfo:
        """The parsed header of a GGUF blob; blobs are immutable, so headers are cached by digest."""
        with self._gguf_cache_lock:
            cached = self._gguf_cache.get(digest)
            if cached is not None:
                self._gguf_cache.move_to_end(digest)
                return cached
        info = read_gguf(self.blob_path(digest))
        with self._gguf_cache_lock:
            self._gguf_cache[digest] = info
            while len(self._gguf_cache) > _GGUF_CACHE_ENTRIES:
                self._gguf_cache.popitem(last=False)
        return info

    def _existing_path(self, wanted: ModelName) -> tuple[ModelName, Path] | None:
        """Find the manifest whose name equals ``wanted`` ignoring case, keeping the on-disk case."""
        exact = wanted.manifest_path(self.root)
        if exact.is_file():
            return wanted, exact
        directory = self.manifests_dir
        parts = []
        for part in (wanted.host, wanted.namespace, wanted.model, wanted.tag):
            try:
                entries = [entry.name for entry in os.scandir(directory)]
            except (FileNotFoundError, NotADirectoryError):
                return None
            match = next((entry for entry in entries if entry.lower() == part.lower()), None)
            if match is None:
                return None
            parts.append(match)
            directory = directory / match
        if not directory.is_file():
            return None
        return ModelName(*parts), directory

    def _load(self, name: ModelName, path: Path) -> StoredModel:
        with open(path, "rb") as file:
            file_stat = os.fstat(file.fileno())
            if not stat.S_ISREG(file_stat.st_mode):
                raise CorruptManifest("manifest is not a regular file")
            data = file.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise CorruptManifest("manifest is too large")
        return StoredModel(
            store=self,
            name=name,
            manifest=Manifest.from_json_bytes(data),
            digest=hashlib.sha256(data).hexdigest(),
            modified_at=datetime.fromtimestamp(file_stat.st_mtime, tz=timezone.utc),
        )

    def _add_blob(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        upload = BlobUpload(self)
        try:
            for chunk in chunks:
                upload.write(chunk)
        except BaseException:
            upload.abort()
            raise
        upload.commit()
        return upload.digest, upload.size


class BlobUpload:
    """Bytes on their way into the store: hashed as they are written to a hidden temporary file,
    which gets its content-addressed name only once the digest is known (and, when one was
    given, checked). ``commit`` returns True when the blob is new; ``abort`` leaves nothing.
    """

    def __init__(self, store: ModelStore, expected: str | None = None) -> None:
        self._store = store
        self._expected = validate_digest(expected) if expected is not None else None
        store.blobs_dir.mkdir(parents=True, exist_ok=True)
        descriptor, self._temp_name = tempfile.mkstemp(dir=store.blobs_dir, prefix=_TEMP_PREFIX)
        self._file = os.fdopen(descriptor, "wb")
        self._hasher = hashlib.sha256()
        self.size = 0
        self.digest = ""

    def write(self, chunk: bytes) -> None:
        self._hasher.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)

    def commit(self) -> bool:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.digest = f"sha256:{self._hasher.hexdigest()}"
            if self._expected is not None and self.digest != self._expected:
                raise DigestMismatch(self._expected, self.digest)
            final = self._store.blob_path(self.digest)
            if final.is_file():
                log.debug("blob_reused", digest=self.digest)
                return False
            os.chmod(self._temp_name, 0o644)
            os.replace(self._temp_name, final)
            fsync_directory(self._store.blobs_dir)
            log.debug("blob_added", digest=self.digest, size=self.size)
            return True
        finally:
            self.abort()

    def abort(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # flushing bytes about to be deleted fails on a full disk; the file still goes
        if os.path.exists(self._temp_name):
            os.unlink(self._temp_name)


class StoredModel:
    """A read-only view of one stored model; layers are read when first asked for, then kept."""

    def __init__(
        self, store: ModelStore, name: ModelName, manifest: Manifest, digest: str, modified_at: datetime
    ) -> None:
        self._store = store
        self._name = name
        self._manifest = manifest
        self._digest = digest
        self._modified_at = modified_at

    def __repr__(self) -> str:
        return f"StoredModel({self.short_name!r}, digest={self._digest[:12]!r})"

    @property
    def name(self) -> ModelName:
        return self._name

    @property
    def short_name(self) -> str:
        """The name as ``ollama list`` shows it, e.g. ``smollm2:135m``."""
        return self._name.display_shortest()

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def digest(self) -> str:
        """sha256 hex of the manifest bytes, without prefix."""
        return self._digest

    @property
    def size(self) -> int:
        """Bytes of all layers and the config."""
        return self._manifest.size

    @property
    def modified_at(self) -> datetime:
        """The manifest file's mtime, in UTC."""
        return self._modified_at

    @cached_property
    def model_path(self) -> Path | None:
        """The GGUF blob, or None for a model without a weights layer."""
        layers = self._manifest.layers_of(MEDIA_TYPE_MODEL)
        # As in Ollama, the last model layer wins.
        return self._store.blob_path(layers[-1].digest) if layers else None

    @cached_property
    def adapter_paths(self) -> list[Path]:
        """LoRA adapters (GGUF) applied over the weights."""
        return [self._store.blob_path(layer.digest) for layer in self._manifest.layers_of(MEDIA_TYPE_ADAPTER)]

    @cached_property
    def projector_paths(self) -> list[Path]:
        return [self._store.blob_path(layer.digest) for layer in self._manifest.layers_of(MEDIA_TYPE_PROJECTOR)]

    @cached_property
    def template(self) -> str | None:
        """The Go template text, or None when the model has no template layer."""
        layers = self._manifest.layers_of(MEDIA_TYPE_TEMPLATE) or self._manifest.layers_of(MEDIA_TYPE_PROMPT)
        return self._read_text(layers[-1].digest) if layers else None

    @cached_property
    def system(self) -> str | None:
        layers = self._manifest.layers_of(MEDIA_TYPE_SYSTEM)
        return self._read_text(layers[-1].digest) if layers else None

    @cached_property
    def params(self) -> dict[str, Any]:
        """The params layer: default options such as ``{"stop": [...], "temperature": 1}``."""
        layers = self._manifest.layers_of(MEDIA_TYPE_PARAMS)
        if not layers:
            return {}
        params = self._read_json(layers[-1].digest)
        if not isinstance(params, dict):
            raise CorruptModel("params layer is not a JSON object")
        return params

    @cached_property
    def license(self) -> list[str]:
        return [self._read_text(layer.digest) for layer in self._manifest.layers_of(MEDIA_TYPE_LICENSE)]

    @cached_property
    def messages(self) -> list[dict[str, str]]:
        """Stored conversation turns, ``[{"role": ..., "content": ...}]``."""
        layers = self._manifest.layers_of(MEDIA_TYPE_MESSAGES)
        if not layers:
            return []
        messages = self._read_json(layers[-1].digest)
        if not isinstance(messages, list) or not all(
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content", ""), str)
            for message in messages
        ):
            raise CorruptModel("messages layer is not a list of messages")
        return [{"role": message["role"], "content": message.get("content", "")} for message in messages]

    @cached_property
    def config(self) -> dict[str, Any]:
        """The config blob (Ollama's ConfigV2): model_format, model_family, model_type, file_type…"""
        config = self._read_json(self._manifest.config.digest)
        if not isinstance(config, dict):
            raise CorruptModel("config blob is not a JSON object")
        return config

    @property
    def remote_host(self) -> str:
        """The base URL of the host serving a remote model (a stub); "" for a local model."""
        return self._config_text("remote_host")

    @property
    def remote_model(self) -> str:
        """The model's name on its remote host; "" for a local model."""
        return self._config_text("remote_model")

    @property
    def is_remote(self) -> bool:
        """A stub: a manifest without weights whose requests its remote host answers."""
        return bool(self.remote_host and self.remote_model)

    def _config_text(self, key: str) -> str:
        value = self.config.get(key)
        return value if isinstance(value, str) else ""

    def _config_strings(self, key: str) -> list[str]:
        value = self.config.get(key)
        return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []

    def _config_count(self, key: str) -> int:
        value = self.config.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    @property
    def configured_context_length(self) -> int:
        """``context_length`` as a remote model's config records it; 0 when it does not."""
        return self._config_count("context_length")

    @property
    def configured_embedding_length(self) -> int:
        """``embedding_length`` as a remote model's config records it; 0 when it does not."""
        return self._config_count("embedding_length")

    def gguf(self) -> GGUFInfo:
        """The weights' GGUF header; raises GGUFError for a bad file, CorruptModel without weights."""
        layers = self._manifest.layers_of(MEDIA_TYPE_MODEL)
        if not layers:
            raise CorruptModel("model has no weights layer")
        return self._store.gguf(layers[-1].digest)

    def details(self) -> ModelDetails:
        """``details`` from the config blob; fields it lacks are read from the GGUF header."""
        families = tuple(self._config_strings("model_families"))
        model_format = self._config_text("model_format")
        family = self._config_text("model_family")
        parameter_size = self._config_text("model_type")
        quantization = self._config_text("file_type")
        if self.model_path is not None and (not family or not parameter_size or quantization in ("", "unknown")):
            info = self.gguf()
            model_format = model_format or "gguf"
            family = family or info.architecture
            families = families or (info.architecture,)
            parameter_size = parameter_size or human_number(info.parameter_count)
            if quantization in ("", "unknown"):
                quantization = info.file_type_name
        layers = self._manifest.layers_of(MEDIA_TYPE_MODEL)
        return ModelDetails(
            parent_model=(layers[-1].from_ or "") if layers else "",
            format=model_format,
            family=family,
            families=families,
            parameter_size=parameter_size,
            quantization_level=quantization,
        )

    @property
    def context_length(self) -> int | None:
        """``<arch>.context_length`` from the GGUF header, or None."""
        return self._gguf_int("context_length")

    @property
    def embedding_length(self) -> int | None:
        """``<arch>.embedding_length`` from the GGUF header, or None."""
        return self._gguf_int("embedding_length")

    def capabilities(self, template_variables: set[str]) -> list[str]:
        """What the model can do, in Ollama's order and by Ollama's rules.

        ``template_variables`` are the variables the model's template refers to (``tools``,
        ``suffix``…), which the template engine knows and the store does not.
        """
        variables = {variable.lower() for variable in template_variables}
        # Those the config names first: a remote model has no weights to tell them.
        capabilities = self._config_strings("capabilities")
        info = self.gguf() if self.model_path is not None else None
        if info is not None:
            capabilities.append("embedding" if info.architecture_value("pooling_type") is not None else "completion")
        if self.projector_paths or (info is not None and info.architecture_value("vision.block_count") is not None):
            capabilities.append("vision")
        if "tools" in variables:
            capabilities.append("tools")
        if "suffix" in variables:
            capabilities.append("insert")
        if "thinking" in variables or "think" in variables:
            capabilities.append("thinking")
        return list(dict.fromkeys(capabilities))

    def model_info(self, verbose: bool) -> dict[str, Any]:
        """The weights' GGUF metadata for ``/api/show``; for a remote model, what its config records
        (nothing without a ``model_family``), as Ollama shows a stub."""
        if not self.is_remote:
            return _show_info(self.gguf(), verbose)
        family = self._config_text("model_family")
        if not family:
            return {}
        info: dict[str, Any] = {"general.architecture": family}
        if base_name := self._config_text("base_name"):
            info["general.basename"] = base_name
        if self.configured_context_length:
            info[f"{family}.context_length"] = self.configured_context_length
        if self.configured_embedding_length:
            info[f"{family}.embedding_length"] = self.configured_embedding_length
        return info

    def projector_info(self, verbose: bool) -> dict[str, Any] | None:
        """The first projector's GGUF metadata, as ``model_info``; None without a projector."""
        layers = self._manifest.layers_of(MEDIA_TYPE_PROJECTOR)
        return _show_info(self._store.gguf(layers[0].digest), verbose) if layers else None

    def _gguf_int(self, key: str) -> int | None:
        if self.model_path is None:
            return None
        value = self.gguf().architecture_value(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _read_blob(self, digest: str) -> bytes:
        try:
            with open(self._store.blob_path(digest), "rb") as file:
                data = file.read(MAX_TEXT_LAYER_BYTES + 1)
        except OSError as exc:
            log.warning("layer_unreadable", model=str(self._name), digest=digest, error=str(exc))
            raise CorruptModel(f"layer {digest} of model '{self.short_name}' cannot be read") from None
        if len(data) > MAX_TEXT_LAYER_BYTES:
            raise CorruptModel(f"layer {digest} of model '{self.short_name}' is too large")
        return data

    def _read_text(self, digest: str) -> str:
        return self._read_blob(digest).decode("utf-8", "replace")

    def _read_json(self, digest: str) -> Any:
        try:
            return json.loads(self._read_blob(digest))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CorruptModel(f"layer {digest} of model '{self.short_name}' is not JSON") from None


def _show_info(info: GGUFInfo, verbose: bool) -> dict[str, Any]:
    """A GGUF's metadata for ``/api/show``: without ``verbose``, arrays longer than 5 become ``[]``."""
    shown: dict[str, Any] = {}
    for key, value in info.metadata.items():
        if key in ("general.name", "tokenizer.chat_template"):
            continue
        if isinstance(value, list) and not verbose and len(value) > 5:
            value = []
        shown[key] = _json_safe(value)
    shown["general.parameter_count"] = info.parameter_count
    return shown


def _json_safe(value: Any) -> Any:
    """NaN and infinities, which JSON cannot carry, become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list) and any(isinstance(item, float) and not math.isfinite(item) for item in value):
        return [_json_safe(item) for item in value]
    return value


def _write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same directory, fsync, then rename over the target."""
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
    try:
        with os.fdopen(descriptor, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Persist a rename: the directory entry must reach the disk, not only the file."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
