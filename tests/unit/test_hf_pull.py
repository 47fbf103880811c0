"""Pulling ``hf.co/<user>/<repo>[:<quant>]`` through huggingface_hub, against a local stand-in Hub."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from herd.core.store.hf import is_hf_name, pull_hf_model
from herd.core.store.manifest import MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_SYSTEM, MEDIA_TYPE_TEMPLATE
from herd.core.store.registry import ManifestNotFound, RegistryError
from herd.core.store.store import ModelNotFound, ModelStore
from tests.hf_server import (
    Hub,
    hf_hub,  # noqa: F401 (a fixture)
    hf_hub_server,  # noqa: F401 (a fixture)
    point_huggingface_hub_at,
    running_hub,
    smollm2_gguf,
)
from tests.registry_server import statuses


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def smol_sha256() -> str:
    return file_sha256(smollm2_gguf())


def pull(store: ModelStore, name: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    pull_hf_model(store, name, progress=lines.append)
    return lines


def store_entries(store: ModelStore) -> set[str]:
    return {path.name for path in store.root.iterdir()}


@pytest.mark.parametrize("name", ["hf.co/u/r", "huggingface.co/u/r:Q8_0", "HF.CO/u/r", "https://hf.co/u/r:latest"])
def test_hugging_face_hosts_are_recognised(name: str) -> None:
    assert is_hf_name(name)


@pytest.mark.parametrize(
    "name", ["smollm2:135m", "library/llama3", "registry.ollama.ai/u/r", "example.com/u/r", "bad name"]
)
def test_other_names_are_not_hugging_face(name: str) -> None:
    assert not is_hf_name(name)


def test_pull_without_tag_takes_q4_k_m(tmp_path: Path, hf_hub: Hub, smol_sha256: str) -> None:  # noqa: F811
    store = ModelStore(tmp_path)

    lines = pull(store, "hf.co/test/smol")

    assert statuses(lines) == [
        "pulling manifest",
        f"pulling {smol_sha256[:12]}",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    per_file = [line for line in lines if line["status"] == f"pulling {smol_sha256[:12]}"]
    size = smollm2_gguf().stat().st_size
    assert all(line["digest"] == f"sha256:{smol_sha256}" and line["total"] == size for line in per_file)
    assert per_file[-1]["completed"] == size
    assert [line["completed"] for line in per_file] == sorted(line["completed"] for line in per_file)
    # The Q4_K_M file was the one downloaded, the Q8_0 one never asked for.
    downloads = [path for method, path in hf_hub.requests if method == "GET" and "/resolve/" in path]
    assert len(downloads) == 1 and downloads[0].endswith("/SmolLM2-135M-Instruct-Q4_K_M.gguf")

    model = store.get("hf.co/test/smol:latest")
    assert model.manifest.layers_of(MEDIA_TYPE_MODEL)[0].digest == f"sha256:{smol_sha256}"
    assert file_sha256(model.model_path) == smol_sha256
    # No TEMPLATE layer: the GGUF's own chat template is rendered at run time.
    assert model.manifest.layers_of(MEDIA_TYPE_TEMPLATE) == []
    assert model.gguf().metadata.get("tokenizer.chat_template")
    listed = {m.short_name: m for m in store.list_models()}
    assert list(listed) == ["hf.co/test/smol:latest"]
    assert listed["hf.co/test/smol:latest"].details().family == "llama"
    # Nothing left beside the store's own directories but an empty download cache.
    assert store_entries(store) == {"blobs", "manifests", ".hf-cache"}
    assert list((tmp_path / ".hf-cache").iterdir()) == []
    assert not any(path.name.startswith(".") for path in store.blobs_dir.iterdir())


def test_pull_with_quant_tag_takes_that_file_case_insensitively(
    tmp_path: Path,
    hf_hub: Hub,  # noqa: F811
    smol_sha256: str,
) -> None:
    store = ModelStore(tmp_path)

    lines = pull(store, "hf.co/test/smol:q8_0")

    assert statuses(lines)[-1] == "success"
    downloads = [path for method, path in hf_hub.requests if method == "GET" and "/resolve/" in path]
    assert len(downloads) == 1 and downloads[0].endswith("/SmolLM2-135M-Instruct-Q8_0.gguf")
    model = store.get("hf.co/test/smol:q8_0")
    assert model.short_name == "hf.co/test/smol:q8_0"
    assert model.manifest.layers_of(MEDIA_TYPE_MODEL)[0].digest == f"sha256:{smol_sha256}"
    assert (tmp_path / "manifests" / "hf.co" / "test" / "smol" / "q8_0").is_file()


def test_pull_with_a_file_name_as_tag(tmp_path: Path, hf_hub: Hub) -> None:  # noqa: F811
    store = ModelStore(tmp_path)

    pull(store, "huggingface.co/test/smol:SmolLM2-135M-Instruct-Q8_0.gguf")

    downloads = [path for method, path in hf_hub.requests if method == "GET" and "/resolve/" in path]
    assert downloads[0].endswith("/SmolLM2-135M-Instruct-Q8_0.gguf")
    assert store.get("huggingface.co/test/smol:SmolLM2-135M-Instruct-Q8_0.gguf").model_path is not None


def test_missing_repository_is_ollamas_not_found_and_stores_nothing(tmp_path: Path, hf_hub: Hub) -> None:  # noqa: F811
    store = ModelStore(tmp_path)
    lines: list[dict[str, Any]] = []

    with pytest.raises(ManifestNotFound) as raised:
        pull_hf_model(store, "hf.co/test/absent", progress=lines.append)

    assert str(raised.value) == "pull model manifest: file does not exist"
    assert statuses(lines) == ["pulling manifest"]
    assert store.list_models() == []
    assert not (tmp_path / "blobs").exists()


def test_quant_the_repository_lacks_is_not_found(tmp_path: Path, hf_hub: Hub) -> None:  # noqa: F811
    store = ModelStore(tmp_path)

    with pytest.raises(ManifestNotFound, match="file does not exist"):
        pull(store, "hf.co/test/smol:Q5_K_M")

    # "Q4_K" is not "Q4_K_M": a tag must name a whole quantization.
    with pytest.raises(ManifestNotFound):
        pull(store, "hf.co/test/smol:Q4_K")
    assert not any(method == "GET" and "/resolve/" in path for method, path in hf_hub.requests)
    assert store.list_models() == []


def test_repository_without_gguf_is_a_clear_error(tmp_path: Path, hf_hub: Hub) -> None:  # noqa: F811
    store = ModelStore(tmp_path)

    with pytest.raises(RegistryError, match="not GGUF") as raised:
        pull(store, "hf.co/test/no-gguf")

    assert not isinstance(raised.value, ManifestNotFound)
    assert store.list_models() == []


def test_file_that_is_not_gguf_is_rejected_and_nothing_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF but not really" + bytes(4096))
    store = ModelStore(tmp_path / "models")
    with running_hub({"test/fake": {"fake-Q4_K_M.gguf": fake}}) as hub:
        point_huggingface_hub_at(monkeypatch, hub.url, tmp_path / "hf-home")

        with pytest.raises(RegistryError, match="not in GGUF format"):
            pull(store, "hf.co/test/fake")

    assert store.list_models() == []
    with pytest.raises(ModelNotFound):
        store.get("hf.co/test/fake")
    blobs = list(store.blobs_dir.iterdir()) if store.blobs_dir.exists() else []
    assert blobs == []
    assert store_entries(store) <= {"blobs", ".hf-cache"}
    assert not any((store.root / ".hf-cache").iterdir())


def test_repository_template_system_and_params_files_become_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smol_sha256: str
) -> None:
    repo = {
        "smol-Q4_K_M.gguf": smollm2_gguf(),
        "template": b"{{ .System }} {{ .Prompt }}",
        "system": b"You are terse.",
        "params": b'{"temperature": 0.2, "stop": ["<|im_end|>"]}',
    }
    store = ModelStore(tmp_path / "models")
    with running_hub({"test/custom": repo}) as hub:
        point_huggingface_hub_at(monkeypatch, hub.url, tmp_path / "hf-home")

        pull(store, "hf.co/test/custom")

    model = store.get("hf.co/test/custom")
    assert model.template == "{{ .System }} {{ .Prompt }}"
    assert model.system == "You are terse."
    assert model.params == {"stop": ["<|im_end|>"], "temperature": 0.2}
    assert {layer.media_type for layer in model.manifest.layers} == {
        MEDIA_TYPE_MODEL,
        MEDIA_TYPE_TEMPLATE,
        MEDIA_TYPE_SYSTEM,
        MEDIA_TYPE_PARAMS,
    }
    assert model.manifest.layers_of(MEDIA_TYPE_MODEL)[0].digest == f"sha256:{smol_sha256}"


def test_broken_params_file_fails_before_the_weights_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = {"smol-Q4_K_M.gguf": smollm2_gguf(), "params": b"[1, 2"}
    store = ModelStore(tmp_path / "models")
    with running_hub({"test/broken": repo}) as hub:
        point_huggingface_hub_at(monkeypatch, hub.url, tmp_path / "hf-home")

        with pytest.raises(RegistryError, match="params file is not a JSON object"):
            pull(store, "hf.co/test/broken")

        assert not any(path.endswith(".gguf") for method, path in hub.requests if method == "GET")
    assert store.list_models() == []


def test_unreachable_hub_is_an_error_without_addresses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_hub({}) as hub:
        url = hub.url
    # The server has stopped: nothing listens on its port any more.
    point_huggingface_hub_at(monkeypatch, url, tmp_path / "hf-home")
    store = ModelStore(tmp_path / "models")

    with pytest.raises(RegistryError) as raised:
        pull(store, "hf.co/test/smol")

    assert str(raised.value) == "pull model manifest: Hugging Face could not be reached"
    assert store.list_models() == []


def test_download_that_does_not_match_the_published_sha256_is_not_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path / "models")
    with running_hub({"test/tampered": {"smol-Q4_K_M.gguf": smollm2_gguf()}}) as hub:
        # The Hub's listing promises other bytes than the ones it then serves.
        hub.repos["test/tampered"].files["smol-Q4_K_M.gguf"].sha256 = "ab" * 32
        point_huggingface_hub_at(monkeypatch, hub.url, tmp_path / "hf-home")

        with pytest.raises(RegistryError, match="digest mismatch"):
            pull(store, "hf.co/test/tampered")

    assert store.list_models() == []
    assert list(store.blobs_dir.iterdir()) == []
