"""Cloud and local suffixes, on the examples of Ollama's internal/modelref."""

from __future__ import annotations

import pytest

from herd.modelref import ModelRefError, ModelSource, normalize_pull_name, parse_ref


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("gpt-oss:120b-cloud", "gpt-oss:120b"),
        ("gpt-oss:20b:cloud", "gpt-oss:20b"),
        ("kimi-k2.5:cloud", "kimi-k2.5"),
        ("kimi-k2.5:latest-cloud", "kimi-k2.5:latest"),
        ("Qwen3:CLOUD", "Qwen3"),
        ("  x:8b:cloud ", "x:8b"),
        ("registry.example.com:5000/ns/model:cloud", "registry.example.com:5000/ns/model"),
    ],
)
def test_cloud_names_and_their_base(name, base):
    ref = parse_ref(name)
    assert ref.source is ModelSource.CLOUD
    assert ref.base == base


@pytest.mark.parametrize("name", ["my-cloud-model", "foo:bar-cloud/baz", "gpt-oss:clod", "smollm2:135m", "cloud"])
def test_names_that_are_not_cloud(name):
    ref = parse_ref(name)
    assert ref.source is ModelSource.UNSPECIFIED
    assert ref.base == name


def test_local_suffix_names_the_local_model():
    ref = parse_ref("smollm2:135m:local")
    assert (ref.source, ref.base) == (ModelSource.LOCAL, "smollm2:135m")


@pytest.mark.parametrize("name", ["foo:cloud:local", "foo:local:cloud", "foo:8b-cloud:local"])
def test_both_suffixes_are_refused_with_ollamas_message(name):
    with pytest.raises(ModelRefError) as caught:
        parse_ref(name)
    assert str(caught.value) == f'use either :local or :cloud, not both: "{name}"'


def test_empty_name_is_required():
    with pytest.raises(ModelRefError, match="model is required"):
        parse_ref("  ")


@pytest.mark.parametrize(
    ("name", "pulled"),
    [("x:8b:cloud", "x:8b-cloud"), ("x:cloud", "x:cloud"), ("x:8b-cloud", "x:8b-cloud"), ("x:8b", "x:8b"),
     ("x:local", "x")],
)
def test_pull_names_use_the_legacy_stub_spelling(name, pulled):
    assert normalize_pull_name(name) == pulled
