"""The model store: bundled import, listing, lookup, show fields, manifests, blobs and Modelfiles."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from datetime import datetime, timezone
from pathlib import Path

import pytest

from herd.core.store.bundled import import_bundled_models
from herd.core.store.create import CreateError, CreateSpec, create_model, is_projector
from herd.core.store.gguf import read_gguf
from herd.core.store.manifest import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    CorruptManifest,
    InvalidDigest,
    Layer,
    Manifest,
    blob_filename,
    go_json_bytes,
    validate_digest,
)
from herd.core.store.modelfile import format_parameters, render_modelfile
from herd.core.store.names import InvalidModelName, ModelName
from herd.core.store.store import CorruptModel, ModelDetails, ModelNotFound, ModelStore
from herd.core.templates.library import GEMMA3_PARAMS, GEMMA3_TEMPLATE, SMOLLM2_PARAMS, SMOLLM2_TEMPLATE

HEX = "ab" * 32
BLOB_NAME = re.compile(r"sha256-([0-9a-f]{64})")


# --- the bundled models, imported once into a temporary OLLAMA_MODELS --------------------------


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelStore, list[str]]:
    store = ModelStore(tmp_path_factory.mktemp("ollama_models"))
    return store, import_bundled_models(store)


def test_bundled_models_are_imported_once(bundled: tuple[ModelStore, list[str]]) -> None:
    store, imported = bundled
    assert imported == ["smollm2:135m", "gemma3:270m-pt"]
    assert not store.is_empty()
    assert import_bundled_models(store) == []


def test_list_reports_what_ollama_list_shows(bundled: tuple[ModelStore, list[str]]) -> None:
    store, _ = bundled
    models = {model.short_name: model for model in store.list_models()}
    assert set(models) == {"smollm2:135m", "gemma3:270m-pt"}
    for model in models.values():
        manifest_path = model.name.manifest_path(store.root)
        assert model.digest == hashlib.sha256(manifest_path.read_bytes()).hexdigest()
        assert model.modified_at == datetime.fromtimestamp(manifest_path.stat().st_mtime, tz=timezone.utc)
        blobs = [model.manifest.config, *model.manifest.layers]
        assert model.size == sum(store.blob_path(layer.digest).stat().st_size for layer in blobs)


def test_show_fields_of_smollm2(bundled: tuple[ModelStore, list[str]]) -> None:
    store, _ = bundled
    model = store.get("smollm2:135m")
    assert model.details() == ModelDetails(
        parent_model="",
        format="gguf",
        family="llama",
        families=("llama",),
        parameter_size="134.52M",
        quantization_level="Q4_1",
    )
    assert (model.context_length, model.embedding_length) == (8192, 576)
    assert model.template == SMOLLM2_TEMPLATE
    assert model.params == SMOLLM2_PARAMS
    assert (model.system, model.license, model.messages) == (None, [], [])
    assert model.model_path is not None and model.model_path.parent == store.blobs_dir
    assert model.projector_paths == []
    assert model.capabilities({"messages", "tools", "system", "response"}) == ["completion", "tools"]
    assert model.capabilities(set()) == ["completion"]


def test_show_fields_of_gemma3(bundled: tuple[ModelStore, list[str]]) -> None:
    store, _ = bundled
    model = store.get("gemma3:270m-pt")
    assert model.details() == ModelDetails(
        parent_model="",
        format="gguf",
        family="gemma3",
        families=("gemma3",),
        parameter_size="268.10M",
        quantization_level="Q4_K_M",
    )
    assert (model.context_length, model.embedding_length) == (32768, 640)
    assert model.template == GEMMA3_TEMPLATE
    assert model.params == GEMMA3_PARAMS


def test_config_blob_is_ollamas_config_v2(bundled: tuple[ModelStore, list[str]]) -> None:
    store, _ = bundled
    model = store.get("smollm2:135m")
    config = model.config
    assert list(config) == [
        "model_format",
        "model_family",
        "model_families",
        "model_type",
        "file_type",
        "architecture",
        "os",
        "rootfs",
    ]
    assert (config["model_format"], config["model_family"], config["model_type"], config["file_type"]) == (
        "gguf",
        "llama",
        "134.52M",
        "Q4_1",
    )
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer.digest for layer in model.manifest.layers]}
    assert [layer.media_type for layer in model.manifest.layers] == [
        MEDIA_TYPE_MODEL,
        MEDIA_TYPE_TEMPLATE,
        MEDIA_TYPE_PARAMS,
    ]


def test_model_info_hides_long_arrays_unless_verbose(bundled: tuple[ModelStore, list[str]]) -> None:
    store, _ = bundled
    model = store.get("smollm2:135m")
    brief = model.model_info(verbose=False)
    assert "general.name" not in brief and "tokenizer.chat_template" not in brief
    assert brief["tokenizer.ggml.tokens"] == []
    assert brief["general.languages"] == ["en"]
    assert brief["general.parameter_count"] == 134515008
    assert brief["llama.context_length"] == 8192
    verbose = model.model_info(verbose=True)
    assert len(verbose["tokenizer.ggml.tokens"]) == 49152
    json.dumps(verbose, allow_nan=False)


def test_lookup_is_case_insensitive_and_keeps_the_stored_case(bundled: tuple[ModelStore, list[str]]) -> None:
    store, _ = bundled
    for text in ("SmolLM2:135M", "registry.ollama.ai/library/smollm2:135m", "REGISTRY.OLLAMA.AI/LIBRARY/SMOLLM2:135M"):
        model = store.get(text)
        assert model.short_name == "smollm2:135m"
        assert str(model.name) == "registry.ollama.ai/library/smollm2:135m"


@pytest.mark.parametrize("text", ["smollm2", "smollm2:360m", "other/smollm2:135m", "gemma3:270m"])
def test_unknown_models_are_not_found(bundled: tuple[ModelStore, list[str]], text: str) -> None:
    store, _ = bundled
    with pytest.raises(ModelNotFound) as raised:
        store.get(text)
    assert raised.value.name == text


@pytest.mark.parametrize("text", ["../x", "a/../../b", "../../etc/passwd", "", "m:"])
def test_invalid_names_are_rejected_before_touching_the_disk(bundled: tuple[ModelStore, list[str]], text: str) -> None:
    store, _ = bundled
    with pytest.raises(InvalidModelName):
        store.get(text)


def test_blobs_are_content_addressed_and_no_temporary_files_remain(bundled: tuple[ModelStore, list[str]]) -> None:
    store, _ = bundled
    blobs = sorted(store.blobs_dir.iterdir())
    assert len(blobs) == 8  # per model: weights, template, params, config
    for blob in blobs:
        match = BLOB_NAME.fullmatch(blob.name)
        assert match is not None
        digest = hashlib.sha256()
        with open(blob, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        assert digest.hexdigest() == match.group(1)
    manifests = [path for path in store.manifests_dir.rglob("*") if path.is_file()]
    assert len(manifests) == 2


def test_manifest_on_disk_uses_ollamas_keys_and_order(bundled: tuple[ModelStore, list[str]]) -> None:
    store, _ = bundled
    raw = ModelName.parse("gemma3:270m-pt").manifest_path(store.root).read_bytes()
    document = json.loads(raw)
    assert list(document) == ["schemaVersion", "mediaType", "config", "layers"]
    assert document["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert document["config"]["mediaType"] == MEDIA_TYPE_CONFIG
    assert all(list(layer) == ["mediaType", "digest", "size"] for layer in document["layers"])
    assert raw.endswith(b"}\n")


def test_bundled_modelfile_names_the_model_and_shows_no_server_path(bundled: tuple[ModelStore, list[str]]) -> None:
    store, _ = bundled
    text = render_modelfile(store.get("smollm2:135m"))
    assert text.startswith(
        '# Modelfile generated by "ollama show"\nFROM smollm2:135m\nTEMPLATE """{{- if .Messages }}\n'
    )
    assert text.endswith("PARAMETER stop <|im_start|>\nPARAMETER stop <|im_end|>\n")
    assert str(store.root) not in text and "sha256" not in text


# --- small synthetic stores --------------------------------------------------------------------


def tiny_gguf(metadata: dict[str, int | str | bool]) -> bytes:
    """A valid GGUF with the given string/uint32/bool metadata and one 4-value F32 tensor."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text.encode())) + text.encode()

    kvs = b""
    for key, value in metadata.items():
        if isinstance(value, str):
            kvs += string(key) + struct.pack("<I", 8) + string(value)
        elif isinstance(value, bool):
            kvs += string(key) + struct.pack("<IB", 7, value)
        else:
            kvs += string(key) + struct.pack("<II", 4, value)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(metadata)) + kvs + string("t") + struct.pack("<IQIQ", 1, 4, 0, 0)
    return header + b"\0" * (-len(header) % 32) + b"\0" * 16


def add_model(
    store: ModelStore,
    name: str,
    *,
    weights: bytes = b"weights",
    config: dict | None = None,
    layers: list[tuple[str, bytes]] = (),
    weights_from: str | None = None,
) -> ModelName:
    model_digest, model_size = store.add_blob_bytes(weights)
    manifest_layers = [Layer(MEDIA_TYPE_MODEL, model_digest, model_size, from_=weights_from)]
    for media_type, data in layers:
        digest, size = store.add_blob_bytes(data)
        manifest_layers.append(Layer(media_type, digest, size))
    config_digest, config_size = store.add_blob_bytes(
        go_json_bytes(config if config is not None else {"model_format": "gguf"})
    )
    model_name = ModelName.parse(name)
    store.write_manifest(
        model_name, Manifest(config=Layer(MEDIA_TYPE_CONFIG, config_digest, config_size), layers=manifest_layers)
    )
    return model_name


def test_reads_of_an_empty_store_create_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    assert store.is_empty()
    assert store.list_models() == []
    with pytest.raises(ModelNotFound):
        store.get("llama3")
    assert not (tmp_path / "models").exists()


def test_list_is_newest_first(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    for index, name in enumerate(["old:1", "newest:1", "middle:1"]):
        add_model(store, name, weights=name.encode())
        os.utime(ModelName.parse(name).manifest_path(tmp_path), (0, [1_000, 3_000, 2_000][index]))
    assert [model.short_name for model in store.list_models()] == ["newest:1", "middle:1", "old:1"]


def test_corrupt_or_hostile_manifests_are_skipped_in_listings(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    add_model(store, "good:1")
    library = tmp_path / "manifests" / "registry.ollama.ai" / "library"
    (library / "broken").mkdir()
    (library / "broken" / "latest").write_bytes(b"{not json")
    (library / "traversal").mkdir()
    hostile = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": "sha256:../../../../etc/passwd", "size": 1},
        "layers": [],
    }
    (library / "traversal" / "latest").write_text(json.dumps(hostile))
    (library / "bad..name").mkdir()
    (library / "bad..name" / "-tag").write_bytes(b"{}")
    (library / "deeper" / "dir").mkdir(parents=True)
    assert [model.short_name for model in store.list_models()] == ["good:1"]
    with pytest.raises(CorruptManifest):
        store.get("broken")
    with pytest.raises(CorruptManifest):
        store.get("traversal")


def test_lookup_keeps_the_on_disk_case(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    add_model(store, "hf.co/Org/Model-GGUF:Q4_K_M")
    model = store.get("HF.CO/org/model-gguf:q4_k_m")
    assert model.short_name == "hf.co/Org/Model-GGUF:Q4_K_M"


def test_blobs_are_reused_and_named_by_their_content(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3_000_000)
    digest, size = store.add_blob_from_file(source)
    assert (digest, size) == ("sha256:" + hashlib.sha256(b"x" * 3_000_000).hexdigest(), 3_000_000)
    assert store.add_blob_bytes(b"x" * 3_000_000) == (digest, size)
    assert store.blob_path(digest).read_bytes() == b"x" * 3_000_000
    assert [path.name for path in store.blobs_dir.iterdir()] == [blob_filename(digest)]


def test_a_manifest_naming_a_missing_blob_is_not_written(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    config_digest, config_size = store.add_blob_bytes(b"{}")
    manifest = Manifest(
        config=Layer(MEDIA_TYPE_CONFIG, config_digest, config_size),
        layers=[Layer(MEDIA_TYPE_MODEL, "sha256:" + HEX, 5)],
    )
    with pytest.raises(CorruptManifest):
        store.write_manifest(ModelName.parse("half:1"), manifest)
    assert not ModelName.parse("half:1").manifest_path(tmp_path).exists()
    assert store.is_empty()


def test_rewriting_a_manifest_replaces_it_whole(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    add_model(store, "m:1", weights=b"first")
    first = store.get("m:1").digest
    add_model(store, "m:1", weights=b"second")
    assert store.get("m:1").digest != first
    assert [path.name for path in ModelName.parse("m:1").manifest_path(tmp_path).parent.iterdir()] == ["1"]


def test_text_layers_are_read(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    add_model(
        store,
        "texts:1",
        layers=[
            (MEDIA_TYPE_SYSTEM, b"Be brief."),
            (MEDIA_TYPE_LICENSE, b"MIT"),
            (MEDIA_TYPE_LICENSE, b"Apache-2.0"),
            (MEDIA_TYPE_MESSAGES, json.dumps(messages).encode()),
            (MEDIA_TYPE_PARAMS, b'{"temperature":0.5}'),
        ],
    )
    model = store.get("texts:1")
    assert model.template is None
    assert model.system == "Be brief."
    assert model.license == ["MIT", "Apache-2.0"]
    assert model.messages == messages
    assert model.params == {"temperature": 0.5}


@pytest.mark.parametrize(
    ("media_type", "data", "field"),
    [
        (MEDIA_TYPE_PARAMS, b"[1, 2]", "params"),
        (MEDIA_TYPE_PARAMS, b"{oops", "params"),
        (MEDIA_TYPE_MESSAGES, b'[{"role": 1}]', "messages"),
    ],
)
def test_malformed_layers_raise_corrupt_model(tmp_path: Path, media_type: str, data: bytes, field: str) -> None:
    store = ModelStore(tmp_path)
    add_model(store, "bad:1", layers=[(media_type, data)])
    with pytest.raises(CorruptModel):
        getattr(store.get("bad:1"), field)


def test_a_missing_layer_blob_is_reported_without_its_path(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    add_model(store, "gone:1", layers=[(MEDIA_TYPE_SYSTEM, b"vanishing")])
    model = store.get("gone:1")
    store.blob_path(model.manifest.layers_of(MEDIA_TYPE_SYSTEM)[0].digest).unlink()
    with pytest.raises(CorruptModel) as raised:
        _ = model.system
    assert str(tmp_path) not in str(raised.value)


@pytest.mark.parametrize(
    ("metadata", "layers", "variables", "expected"),
    [
        ({"general.architecture": "llama"}, [], set(), ["completion"]),
        ({"general.architecture": "bert", "bert.pooling_type": 1}, [], set(), ["embedding"]),
        ({"general.architecture": "gemma3", "gemma3.vision.block_count": 27}, [], set(), ["completion", "vision"]),
        ({"general.architecture": "llama"}, [(MEDIA_TYPE_PROJECTOR, b"mmproj")], set(), ["completion", "vision"]),
        (
            {"general.architecture": "llama"},
            [],
            {"Tools", "suffix", "Think", "prompt"},
            ["completion", "tools", "insert", "thinking"],
        ),
        ({"general.architecture": "llama"}, [], {"thinking"}, ["completion", "thinking"]),
    ],
)
def test_capabilities_follow_ollamas_rules(
    tmp_path: Path, metadata: dict, layers: list, variables: set[str], expected: list[str]
) -> None:
    store = ModelStore(tmp_path)
    add_model(store, "caps:1", weights=tiny_gguf(metadata), layers=layers)
    assert store.get("caps:1").capabilities(variables) == expected


WEIGHTS = {"general.architecture": "llama", "llama.block_count": 1}
PROJECTOR = {"general.architecture": "clip", "clip.has_vision_encoder": True, "clip.vision.block_count": 1}


@pytest.mark.parametrize(
    "metadata, expected",
    [
        (PROJECTOR, True),
        ({"general.architecture": "clip", "clip.has_audio_encoder": True}, True),
        ({"general.architecture": "clip"}, False),  # no encoder
        ({"general.architecture": "whatever", "general.type": "mmproj"}, True),
        ({"general.architecture": "gemma3", "gemma3.vision.block_count": 27}, True),  # vision without text blocks
        ({**WEIGHTS, "llama.vision.block_count": 27}, False),  # a model with its vision encoder inside
        (WEIGHTS, False),
    ],
)
def test_a_projector_is_told_apart_from_a_model_as_ollama_does(tmp_path: Path, metadata: dict, expected: bool) -> None:
    (tmp_path / "x.gguf").write_bytes(tiny_gguf(metadata))
    assert is_projector(read_gguf(tmp_path / "x.gguf")) is expected


def create_from_files(store: ModelStore, name: str, files: dict[str, bytes]) -> None:
    digests = {filename: store.add_blob_bytes(data)[0] for filename, data in files.items()}
    create_model(store, CreateSpec(name=name, files=digests), progress=lambda *a, **k: None, check_template=lambda t: None)


def test_create_takes_a_projector_among_the_files(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    create_from_files(store, "vis:1", {"model.gguf": tiny_gguf(WEIGHTS), "mmproj.gguf": tiny_gguf(PROJECTOR)})
    model = store.get("vis:1")
    # In file name order, as Ollama.
    assert [layer.media_type for layer in model.manifest.layers][:2] == [MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_MODEL]
    assert model.model_path == store.blob_path(model.manifest.layers_of(MEDIA_TYPE_MODEL)[0].digest)
    assert len(model.projector_paths) == 1 and model.projector_paths[0] != model.model_path
    assert model.details().family == "llama"
    assert "vision" in model.capabilities(set())
    assert model.projector_info(verbose=False)["clip.has_vision_encoder"] is True
    assert store.get("vis:1").model_info(verbose=False)["general.architecture"] == "llama"


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a.gguf": tiny_gguf(WEIGHTS), "b.gguf": tiny_gguf({**WEIGHTS, "general.name": "b"})}, "only one GGUF file is supported"),
        ({"mmproj.gguf": tiny_gguf(PROJECTOR)}, "a projector needs a model GGUF to go with it"),
    ],
)
def test_create_refuses_two_models_or_a_projector_alone(tmp_path: Path, files: dict, message: str) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(CreateError, match=message):
        create_from_files(store, "bad:1", files)
    with pytest.raises(ModelNotFound):
        store.get("bad:1")


def test_details_fall_back_to_the_gguf_header(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    weights = tiny_gguf({"general.architecture": "qwen2", "general.file_type": 1})
    add_model(store, "bare:1", weights=weights, config={}, weights_from="qwen2:base")
    assert store.get("bare:1").details() == ModelDetails(
        parent_model="qwen2:base",
        format="gguf",
        family="qwen2",
        families=("qwen2",),
        parameter_size="4",
        quantization_level="F16",
    )


# --- manifests and digests ---------------------------------------------------------------------


def test_manifest_serialises_exactly_as_ollama_does() -> None:
    manifest = Manifest(
        config=Layer(MEDIA_TYPE_CONFIG, "sha256:" + "11" * 32, 10),
        layers=[
            Layer(MEDIA_TYPE_MODEL, "sha256:" + "22" * 32, 20, from_="base:1"),
            Layer(MEDIA_TYPE_TEMPLATE, "sha256:" + "33" * 32, 30),
        ],
    )
    expected = (
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        '"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:'
        + "11"
        * 32
        + '","size":10},'
        '"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:'
        + "22"
        * 32
        + '","size":20,"from":"base:1"},'
        '{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:' + "33" * 32 + '","size":30}]}\n'
    )
    assert manifest.to_json_bytes().decode() == expected
    assert Manifest.from_json_bytes(manifest.to_json_bytes()) == manifest
    assert manifest.size == 60


def _manifest_with(config: object = None, layers: object = None, schema: object = 2) -> bytes:
    good_layer = {"mediaType": MEDIA_TYPE_MODEL, "digest": "sha256:" + HEX, "size": 1}
    return json.dumps(
        {
            "schemaVersion": schema,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": good_layer if config is None else config,
            "layers": [good_layer] if layers is None else layers,
        }
    ).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b"null",
        _manifest_with(schema=1),
        _manifest_with(layers={}),
        _manifest_with(config="sha256:" + HEX),
        _manifest_with(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": "sha256:../../etc/passwd", "size": 1}]),
        _manifest_with(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": "sha256:" + "a" * 63, "size": 1}]),
        _manifest_with(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": "md5:" + HEX, "size": 1}]),
        _manifest_with(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": "sha256:" + HEX, "size": -1}]),
        _manifest_with(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": "sha256:" + HEX, "size": True}]),
        _manifest_with(layers=[{"mediaType": "", "digest": "sha256:" + HEX, "size": 1}]),
        _manifest_with(layers=[{"mediaType": MEDIA_TYPE_MODEL, "digest": "sha256:" + HEX, "size": 1, "from": 5}]),
        b"[" * 100_000,
    ],
)
def test_malformed_manifests_raise_corrupt_manifest(data: bytes) -> None:
    with pytest.raises(CorruptManifest):
        Manifest.from_json_bytes(data)


@pytest.mark.parametrize(
    ("digest", "normalised"),
    [
        ("sha256:" + HEX, "sha256:" + HEX),
        ("sha256-" + HEX, "sha256:" + HEX),
        ("sha256:" + HEX.upper(), "sha256:" + HEX),
    ],
)
def test_valid_digests_are_normalised(digest: str, normalised: str) -> None:
    assert validate_digest(digest) == normalised
    assert blob_filename(digest) == "sha256-" + HEX


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "sha256:",
        "sha256:../../etc/passwd",
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "SHA256:" + HEX,
        "sha256:" + "g" * 64,
        "sha256/" + HEX,
    ],
)
def test_invalid_digests_never_become_paths(tmp_path: Path, digest: str) -> None:
    with pytest.raises(InvalidDigest, match="invalid digest format"):
        ModelStore(tmp_path).blob_path(digest)


def test_go_json_escapes_like_go() -> None:
    assert go_json_bytes({"stop": ["<|im_start|>", "a&b"]}) == b'{"stop":["\\u003c|im_start|\\u003e","a\\u0026b"]}\n'
    assert go_json_bytes({"text": "é"}) == '{"text":"é"}\n'.encode()


# --- parameters and Modelfiles -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "text"),
    [
        (SMOLLM2_PARAMS, 'stop                           "<|im_start|>"\nstop                           "<|im_end|>"'),
        (
            GEMMA3_PARAMS,
            'stop                           "<end_of_turn>"\n'
            "temperature                    1\n"
            "top_k                          64\n"
            "top_p                          0.95",
        ),
        (
            {"num_ctx": 4096, "mirostat_tau": 5.0, "seed": -1},
            "mirostat_tau                   5\nnum_ctx                        4096\nseed                           -1",
        ),
        (
            {"repeat_penalty": 1.1, "tfs_z": 1e-05, "big": 1e6},
            "big                            1e+06\n"
            "repeat_penalty                 1.1\n"
            "tfs_z                          1e-05",
        ),
        (
            {"penalize_newline": True, "numa": False},
            "numa                           false\npenalize_newline               true",
        ),
        (
            {"stop": ['say "hi"\n', "tab\there", "\x00"]},
            'stop                           "say \\"hi\\"\\n"\n'
            'stop                           "tab\\there"\n'
            'stop                           "\\x00"',
        ),
        ({"stop": ["ünï"]}, 'stop                           "ünï"'),
        ({}, ""),
    ],
)
def test_format_parameters_matches_gos_formatting(params: dict, text: str) -> None:
    assert format_parameters(params) == text


def test_modelfile_layout(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    add_model(
        store,
        "example/tiny:1b",
        config={"model_format": "gguf", "renderer": "r1"},
        layers=[
            (MEDIA_TYPE_TEMPLATE, b"{{ .Prompt }}"),
            (MEDIA_TYPE_SYSTEM, b"You are terse."),
            (MEDIA_TYPE_PARAMS, b'{"temperature":0.7,"stop":["a","b"],"num_ctx":4096}'),
            (MEDIA_TYPE_LICENSE, b'MIT "quoted"\nline two'),
            (MEDIA_TYPE_MESSAGES, b'[{"role":"user","content":"hi"},{"role":"assistant","content":"hello there\\n"}]'),
        ],
    )
    model = store.get("example/tiny:1b")
    assert render_modelfile(model) == (
        '# Modelfile generated by "ollama show"\n'
        "FROM example/tiny:1b\n"
        "TEMPLATE {{ .Prompt }}\n"
        "SYSTEM You are terse.\n"
        "RENDERER r1\n"
        "PARAMETER num_ctx 4096\n"
        "PARAMETER stop a\n"
        "PARAMETER stop b\n"
        "PARAMETER temperature 0.7\n"
        'LICENSE """MIT "quoted"\nline two"""\n'
        "MESSAGE user hi\n"
        'MESSAGE assistant "hello there\n"\n'
    )
    overridden = render_modelfile(model, system_override=" padded ", extra_params={"temperature": 0.2, "seed": 42})
    assert 'SYSTEM " padded "\n' in overridden
    assert (
        "PARAMETER num_ctx 4096\nPARAMETER seed 42\nPARAMETER stop a\nPARAMETER stop b\nPARAMETER temperature 0.2\n"
        in overridden
    )
    assert model.params["temperature"] == 0.7


def test_modelfile_of_a_model_without_template_uses_ollamas_default(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    add_model(store, "plain:1")
    assert (
        render_modelfile(store.get("plain:1"))
        == '# Modelfile generated by "ollama show"\nFROM plain:1\nTEMPLATE {{ .Prompt }}\n'
    )


# --- pruning ---------------------------------------------------------------------------------


def _age(path, seconds):
    import os as _os
    import time as _time

    old = _time.time() - seconds
    _os.utime(path, (old, old))


def test_prune_removes_old_orphans_and_keeps_young_ones_and_referenced_blobs(tmp_path):
    store = ModelStore(tmp_path)
    kept_digest, _ = store.add_blob_bytes(b"layer")
    config_digest, _ = store.add_blob_bytes(b"{}")
    store.write_manifest(
        ModelName.parse("m"),
        Manifest(config=Layer(MEDIA_TYPE_CONFIG, config_digest, 2), layers=[Layer(MEDIA_TYPE_MODEL, kept_digest, 5)]),
    )
    old_orphan, _ = store.add_blob_bytes(b"old orphan")
    young_orphan, _ = store.add_blob_bytes(b"young orphan")
    for digest in (kept_digest, config_digest, old_orphan):
        _age(store.blob_path(digest), 7200)
    assert store.prune(grace_s=3600) == 1
    assert not store.blob_path(old_orphan).exists()
    assert store.blob_path(young_orphan).exists()
    assert store.blob_path(kept_digest).exists() and store.blob_path(config_digest).exists()


def test_prune_does_nothing_while_a_manifest_is_unreadable(tmp_path):
    store = ModelStore(tmp_path)
    orphan, _ = store.add_blob_bytes(b"maybe needed")
    _age(store.blob_path(orphan), 7200)
    corrupt = tmp_path / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text("{not json")
    assert store.prune(grace_s=3600) == 0
    assert store.blob_path(orphan).exists()


def test_prune_keeps_partial_downloads_for_a_week(tmp_path):
    store = ModelStore(tmp_path)
    store.blobs_dir.mkdir(parents=True)
    recent = store.blobs_dir / (".partial-sha256-" + "a" * 64)
    stale = store.blobs_dir / (".partial-sha256-" + "b" * 64)
    recent.write_bytes(b"half")
    stale.write_bytes(b"half")
    _age(recent, 2 * 24 * 3600)
    _age(stale, 8 * 24 * 3600)
    store.prune(grace_s=3600)
    assert recent.exists() and not stale.exists()


def test_a_manifest_write_killed_before_its_rename_stops_neither_listing_nor_pruning(tmp_path):
    store = ModelStore(tmp_path)
    kept_digest, _ = store.add_blob_bytes(b"layer")
    config_digest, _ = store.add_blob_bytes(b"{}")
    manifest = Manifest(
        config=Layer(MEDIA_TYPE_CONFIG, config_digest, 2), layers=[Layer(MEDIA_TYPE_MODEL, kept_digest, 5)]
    )
    store.write_manifest(ModelName.parse("m"), manifest)
    # What a kill -9 between the temporary manifest's fsync and its rename leaves beside the real one.
    stray = tmp_path / "manifests" / "registry.ollama.ai" / "library" / "m" / ".tmp-k1ll3d"
    stray.write_bytes(manifest.to_json_bytes()[:20])
    orphan, _ = store.add_blob_bytes(b"old orphan")
    for path in (store.blob_path(orphan), stray):
        _age(path, 7200)

    assert [model.name.tag for model in store.list_models()] == ["latest"]
    assert store.prune(grace_s=3600) == 2
    assert not store.blob_path(orphan).exists() and not stray.exists()
    assert store.get("m").manifest == manifest
