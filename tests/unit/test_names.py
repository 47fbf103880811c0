"""Model names: Ollama's grammar, defaults, display form and case-insensitive identity."""

from pathlib import Path

import pytest

from herd.core.store.names import InvalidModelName, ModelName


@pytest.mark.parametrize(
    ("text", "full"),
    [
        ("llama3", "registry.ollama.ai/library/llama3:latest"),
        ("llama3.2:1b", "registry.ollama.ai/library/llama3.2:1b"),
        ("smollm2:135m", "registry.ollama.ai/library/smollm2:135m"),
        ("user/model:tag", "registry.ollama.ai/user/model:tag"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
        ("localhost:5000/ns/m", "localhost:5000/ns/m:latest"),
        ("localhost:5000/ns/m:v1", "localhost:5000/ns/m:v1"),
        ("https://example.com/ns/m:tag", "example.com/ns/m:tag"),
        ("http://localhost:5000/ns/m", "localhost:5000/ns/m:latest"),
        ("_private/_m:_t", "registry.ollama.ai/_private/_m:_t"),
        ("a..b:c..d", "registry.ollama.ai/library/a..b:c..d"),
        ("m" * 80 + ":" + "t" * 80, "registry.ollama.ai/library/" + "m" * 80 + ":" + "t" * 80),
        ("h" * 350 + "/ns/m", "h" * 350 + "/ns/m:latest"),
    ],
)
def test_valid_names_parse_to_their_full_form(text: str, full: str) -> None:
    assert str(ModelName.parse(text)) == full


def test_parts_and_defaults() -> None:
    name = ModelName.parse("gemma3:270m-pt")
    assert (name.host, name.namespace, name.model, name.tag) == ("registry.ollama.ai", "library", "gemma3", "270m-pt")


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "m:",
        ":tag",
        "/m",
        "ns/",
        "a/b/c/d",
        "ns.with.dots/m",
        "-m",
        ".m",
        "m n",
        "m\x00",
        "m:tag:x",
        "m:tag/x",
        "é",
        "m@sha256:" + "0" * 64,
        "https:///ns/m",
        "m" * 81,
        "m:" + "t" * 81,
        "ns" * 41 + "/m",
        "h" * 351 + "/ns/m",
        "x" * 10_000,
        # Path traversal cannot be spelled: every part must start with a letter, digit or "_".
        "..",
        "../x",
        "a/../../b",
        "../../etc/passwd",
        "m:..",
        "host/../m",
        "..:5000/ns/m",
    ],
)
def test_invalid_names_are_rejected(text: str) -> None:
    with pytest.raises(InvalidModelName):
        ModelName.parse(text)


def test_constructor_rejects_invalid_parts() -> None:
    with pytest.raises(InvalidModelName):
        ModelName("registry.ollama.ai", "..", "m", "latest")
    with pytest.raises(InvalidModelName):
        ModelName("registry.ollama.ai", "library", "m/x", "latest")


@pytest.mark.parametrize(
    ("text", "shortest"),
    [
        ("llama3", "llama3:latest"),
        ("smollm2:135m", "smollm2:135m"),
        ("registry.ollama.ai/library/smollm2:135m", "smollm2:135m"),
        ("REGISTRY.OLLAMA.AI/Library/SmolLM2:135M", "SmolLM2:135M"),
        ("user/model", "user/model:latest"),
        ("hf.co/u/r:Q4_K_M", "hf.co/u/r:Q4_K_M"),
        ("hf.co/library/r", "hf.co/library/r:latest"),
    ],
)
def test_display_shortest_drops_defaults_but_keeps_the_tag(text: str, shortest: str) -> None:
    assert ModelName.parse(text).display_shortest() == shortest


def test_names_compare_case_insensitively_but_keep_their_case() -> None:
    upper = ModelName.parse("SmolLM2:135M")
    lower = ModelName.parse("smollm2:135m")
    assert upper == lower
    assert len({upper, lower}) == 1
    assert str(upper) == "registry.ollama.ai/library/SmolLM2:135M"
    assert upper != ModelName.parse("smollm2:360m")


def test_manifest_path_follows_ollamas_layout(tmp_path: Path) -> None:
    path = ModelName.parse("hf.co/u/r:Q4_K_M").manifest_path(tmp_path)
    assert path == tmp_path / "manifests" / "hf.co" / "u" / "r" / "Q4_K_M"
    assert ModelName.parse("llama3").manifest_path(tmp_path) == (
        tmp_path / "manifests" / "registry.ollama.ai" / "library" / "llama3" / "latest"
    )


@pytest.mark.parametrize("text", ["a..b:c..d", "localhost:5000/ns/m", "_/_/_:_", "x" * 80])
def test_manifest_paths_stay_inside_the_store(tmp_path: Path, text: str) -> None:
    path = ModelName.parse(text).manifest_path(tmp_path).resolve()
    assert path.is_relative_to((tmp_path / "manifests").resolve())
    assert len(path.relative_to((tmp_path / "manifests").resolve()).parts) == 4
