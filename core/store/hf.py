"""Pulling GGUF models straight from Hugging Face, as Ollama's ``hf.co/<user>/<repo>[:<quant>]`` names do.

The Hub is reached through ``huggingface_hub``, which honours ``HF_ENDPOINT`` and ``HF_TOKEN``. The
repository's file list picks one GGUF by its quantization tag; the file downloads into a private
cache directory inside the store, is validated as GGUF, hashed into ``blobs/`` (against the LFS
sha256 the Hub published, when it published one) and removed from the cache again. The model is
then built like any created model: no TEMPLATE layer unless the repository ships a ``template``
file, because at run time herd renders the GGUF's own ``tokenizer.chat_template``; ``system`` and
``params`` files in the repository become layers as they do on Ollama.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx2
import structlog
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from herd.core.store.create import CreateError, CreateSpec, create_model
from herd.core.store.gguf import GGUFError, read_gguf
from herd.core.store.names import InvalidModelName, ModelName
from herd.core.store.registry import ManifestNotFound, RegistryError
from herd.core.store.store import BlobUpload, DigestMismatch, ModelStore
from herd.core.templates.gotemplate import GoTemplate

log = structlog.get_logger(__name__)

Progress = Callable[[dict[str, Any]], None]

HF_HOSTS = frozenset({"hf.co", "huggingface.co"})
# Inside the store root, hidden so that nothing scanning the store mistakes it for models.
HF_CACHE_DIRNAME = ".hf-cache"
# When the repository has no Q4_K_M: the usual size/quality trade-offs first, then full precision.
_QUANT_PREFERENCE = (
    "Q4_K_M", "Q4_K_S", "Q4_K", "IQ4_NL", "IQ4_XS", "Q4_0", "Q4_1",
    "Q5_K_M", "Q5_K_S", "Q5_K", "Q5_0", "Q5_1", "Q6_K", "Q8_0",
    "Q3_K_L", "Q3_K_M", "Q3_K_S", "IQ3_M", "IQ3_XS", "Q2_K", "IQ2_M",
    "F16", "BF16", "F32",
)
# Shards of a split GGUF: a model is one content-addressed blob here, so these cannot be used.
_SPLIT_GGUF = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
# Repository files that become layers; each is a few hundred bytes of text.
_TEMPLATE_FILE, _SYSTEM_FILE, _PARAMS_FILE = "template", "system", "params"
_MAX_TEXT_FILE_BYTES = 1 << 20
_COPY_CHUNK = 1 << 20
# At most one progress line in this interval (besides the first and the last).
_PROGRESS_INTERVAL_S = 0.1


def is_hf_name(name: str) -> bool:
    """True for a model name whose host is Hugging Face (``hf.co/…`` or ``huggingface.co/…``)."""
    try:
        return ModelName.parse(name).host.lower() in HF_HOSTS
    except InvalidModelName:
        return False


def pull_hf_model(store: ModelStore, name: str, *, progress: Progress) -> None:
    """Downloads the GGUF that ``name`` selects from its Hugging Face repository into ``store``.

    Reports Ollama's progress lines. Raises InvalidModelName, ManifestNotFound (no such repository
    or no file for the tag), RegistryError; the manifest is written last, so a failed pull leaves
    no model behind.
    """
    model_name = ModelName.parse(name)
    repo_id = f"{model_name.namespace}/{model_name.model}"
    # huggingface_hub reads HF_ENDPOINT once, at import; the server's environment may set it later.
    endpoint = os.environ.get("HF_ENDPOINT") or None
    progress({"status": "pulling manifest"})
    repo = _list_repo(repo_id, endpoint)
    weights = _choose_gguf(repo.files, model_name.tag)
    cache_root = store.root / HF_CACHE_DIRNAME
    cache_root.mkdir(parents=True, exist_ok=True)
    # One cache directory per pull: it is removed whole afterwards, so nothing is left outside blobs/.
    cache_dir = Path(tempfile.mkdtemp(dir=cache_root, prefix="pull-"))
    try:
        # The small files first: a repository whose params are broken fails before the big download.
        layer_texts = _layer_files(repo, endpoint, cache_dir)
        parameters = _parse_params(layer_texts.get(_PARAMS_FILE))
        path = _download(repo, weights.path, endpoint, cache_dir, _DownloadProgress(progress, weights))
        progress({"status": "verifying sha256 digest"})
        digest = _store_gguf(store, path, weights)
    finally:
        # The cache root itself stays: removing it would race with a pull about to use it.
        shutil.rmtree(cache_dir, ignore_errors=True)
    spec = CreateSpec(
        name=model_name.display_shortest(),
        files={PurePosixPath(weights.path).name: digest},
        template=layer_texts.get(_TEMPLATE_FILE),
        system=layer_texts.get(_SYSTEM_FILE),
        parameters=parameters,
    )
    progress({"status": "writing manifest"})
    try:
        removed = create_model(store, spec, progress=lambda *update: None, check_template=GoTemplate)
    except CreateError as exc:
        raise RegistryError(str(exc)) from None
    if removed:
        progress({"status": "removing unused layers"})
    log.info("hf_model_pulled", model=spec.name, repo=repo_id, file=weights.path, digest=digest)
    progress({"status": "success"})


@dataclass(frozen=True)
class _RepoFile:
    """One file of the repository: its path, size and, for LFS files, the sha256 the Hub published."""

    path: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class _Repo:
    id: str
    commit: str | None
    files: tuple[_RepoFile, ...]


def _list_repo(repo_id: str, endpoint: str | None) -> _Repo:
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, files_metadata=True)
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as exc:
        # GatedRepoError is a RepositoryNotFoundError too, but the repository exists.
        if isinstance(exc, GatedRepoError):
            raise RegistryError("pull model manifest: access to the repository is restricted") from None
        raise ManifestNotFound() from None
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as exc:
        raise _hub_error("list_repo", repo_id, exc) from None
    files = tuple(
        _RepoFile(
            path=sibling.rfilename,
            size=sibling.lfs.size if sibling.lfs is not None else sibling.size,
            sha256=sibling.lfs.sha256.lower() if sibling.lfs is not None else None,
        )
        for sibling in info.siblings or ()
    )
    return _Repo(id=repo_id, commit=info.sha, files=files)


def _choose_gguf(files: tuple[_RepoFile, ...], tag: str) -> _RepoFile:
    """The GGUF that the tag names: a quantization (``q8_0``), a file name, or ``latest`` for Q4_K_M."""
    # Vision projectors and split shards are GGUF too, but neither is a model on its own.
    candidates = sorted(
        (
            file
            for file in files
            if file.path.lower().endswith(".gguf")
            and not PurePosixPath(file.path).name.lower().startswith("mmproj")
            and _SPLIT_GGUF.search(file.path) is None
        ),
        key=lambda file: file.path.lower(),
    )
    if not candidates:
        if any(_SPLIT_GGUF.search(file.path) for file in files):
            raise RegistryError("pull model manifest: split GGUF files are not supported")
        raise RegistryError("pull model manifest: repository is not GGUF or is not compatible with llama.cpp")
    if tag.lower().endswith(".gguf"):
        by_name = [file for file in candidates if PurePosixPath(file.path).name.lower() == tag.lower()]
        if by_name:
            return by_name[0]
        raise ManifestNotFound()
    if tag.lower() != "latest":
        tagged = _with_quant(candidates, tag)
        if tagged:
            return tagged[0]
        raise ManifestNotFound()
    for quant in _QUANT_PREFERENCE:
        preferred = _with_quant(candidates, quant)
        if preferred:
            return preferred[0]
    return candidates[0]


def _with_quant(files: list[_RepoFile], quant: str) -> list[_RepoFile]:
    # The quant must stand alone in the name: "Q4_K" is not "Q4_K_M", "Q4_XS" is not "IQ4_XS".
    pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9_])", re.IGNORECASE)
    return [file for file in files if pattern.search(PurePosixPath(file.path).name)]


def _download(
    repo: _Repo, filename: str, endpoint: str | None, cache_dir: Path, hook: _DownloadProgress | None = None
) -> Path:
    try:
        path = hf_hub_download(
            repo.id,
            filename,
            revision=repo.commit,
            cache_dir=cache_dir,
            endpoint=endpoint,
            tqdm_class=functools.partial(_ProgressBar, hook) if hook is not None else None,
        )
    except (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError):
        # The file list named the file, so the repository changed since it was listed.
        raise ManifestNotFound() from None
    except (HfHubHTTPError, httpx2.HTTPError, OSError, ValueError) as exc:
        raise _hub_error("download", f"{repo.id}/{filename}", exc) from None
    if hook is not None:
        hook.finish()
    return Path(path)


def _store_gguf(store: ModelStore, path: Path, weights: _RepoFile) -> str:
    """Validate the download as GGUF and copy it into blobs/; returns its digest."""
    try:
        read_gguf(path)
    except GGUFError:
        log.warning("hf_file_rejected", file=weights.path, reason="not GGUF")
        raise RegistryError("pull model manifest: file is not in GGUF format") from None
    expected = f"sha256:{weights.sha256}" if weights.sha256 else None
    try:
        # The expected digest is checked before the blob gets its name: a corrupt download stores nothing.
        upload = BlobUpload(store, expected)
    except ValueError:  # the Hub published something that is not a sha256
        upload = BlobUpload(store)
    try:
        with open(path, "rb") as source:
            for chunk in iter(lambda: source.read(_COPY_CHUNK), b""):
                upload.write(chunk)
        upload.commit()
    except DigestMismatch:
        log.warning("hf_file_rejected", file=weights.path, reason="digest mismatch")
        raise RegistryError("digest mismatch, file must be downloaded again") from None
    except BaseException:
        upload.abort()
        raise
    return upload.digest


def _layer_files(repo: _Repo, endpoint: str | None, cache_dir: Path) -> dict[str, str]:
    """The repository's ``template``, ``system`` and ``params`` files, where it has them."""
    present = {file.path: file for file in repo.files}
    texts = {}
    for filename in (_TEMPLATE_FILE, _SYSTEM_FILE, _PARAMS_FILE):
        file = present.get(filename)
        if file is None:
            continue
        if file.size is not None and file.size > _MAX_TEXT_FILE_BYTES:
            raise RegistryError(f"pull model manifest: the repository's {filename} file is too large")
        with open(_download(repo, filename, endpoint, cache_dir), "rb") as file:
            data = file.read(_MAX_TEXT_FILE_BYTES + 1)
        if len(data) > _MAX_TEXT_FILE_BYTES:
            raise RegistryError(f"pull model manifest: the repository's {filename} file is too large")
        texts[filename] = data.decode("utf-8", "replace")
    return texts


def _parse_params(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        params = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        params = None
    if not isinstance(params, dict):
        raise RegistryError("pull model manifest: the repository's params file is not a JSON object")
    return params


def _hub_error(step: str, what: str, exc: BaseException) -> RegistryError:
    """A failed request or download; the details (URLs, local paths, OS errors) go to the log only."""
    # hf_hub_download reports a failed metadata request as a missing local file, caused by the real error.
    cause = exc.__cause__ if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ is not None else exc
    status = getattr(getattr(cause, "response", None), "status_code", None)
    log.warning("hf_request_failed", step=step, target=what, status=status, error=str(exc))
    if status is not None:
        return RegistryError(f"pull model manifest: Hugging Face answered {status}")
    if isinstance(cause, (httpx2.HTTPError, OfflineModeIsEnabled, LocalEntryNotFoundError)):
        return RegistryError("pull model manifest: Hugging Face could not be reached")
    return RegistryError("download from Hugging Face failed")


class _DownloadProgress:
    """Ollama's ``pulling <digest>`` line for the GGUF, sent at most once per interval except the last."""

    def __init__(self, progress: Progress, file: _RepoFile) -> None:
        self._progress = progress
        if file.sha256:
            self._line: dict[str, Any] = {"status": f"pulling {file.sha256[:12]}", "digest": f"sha256:{file.sha256}"}
        else:
            # Without a published digest the line still needs a stable short id; the name's hash is one.
            self._line = {"status": f"pulling {hashlib.sha256(file.path.encode()).hexdigest()[:12]}"}
        self._total = file.size or 0
        self._completed = 0
        self._last_sent: float | None = None

    def start(self, total: int | None, initial: int) -> None:
        self._total = self._total or total or 0
        self._completed = initial
        self._send()

    def advance(self, n: int) -> None:
        self._completed += n
        now = time.monotonic()
        if self._last_sent is None or now - self._last_sent >= _PROGRESS_INTERVAL_S:
            self._send()

    def finish(self) -> None:
        self._completed = max(self._completed, self._total)
        self._send()

    def _send(self) -> None:
        self._last_sent = time.monotonic()
        self._progress({**self._line, "total": self._total, "completed": self._completed})


class _ProgressBar:
    """What huggingface_hub's ``tqdm_class`` hook is called with, forwarding bytes to a _DownloadProgress.

    huggingface_hub builds it with tqdm's keyword arguments, enters it, and calls ``update(n)`` per
    chunk (with a negative ``n`` when a resumed download has to start over).
    """

    def __init__(self, hook: _DownloadProgress, *, total: int | None = None, initial: int = 0, **_: Any) -> None:
        self._hook = hook
        hook.start(total, initial)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self._hook.advance(n)
