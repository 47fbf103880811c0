"""The quantization types a create accepts, and the quantizer child's reading of llama.cpp's log."""

import llama_cpp
import pytest

from herd.core.runner.quantize import ftype_of, tensor_progress
from herd.core.store.create import CreateError, quantize_type

ACCEPTED = "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k".split()


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("q4_K_M", "Q4_K_M"),
        ("q4_k_s", "Q4_K_S"),
        ("Q8_0", "Q8_0"),
        ("q5_K_M", "Q5_K_M"),
        ("q4_k", "Q4_K_M"),
        ("f16", "F16"),
    ],
)
def test_requested_types_are_case_insensitive_with_llama_cpp_aliases(requested, expected):
    assert quantize_type(requested) == expected


@pytest.mark.parametrize("requested", ["q9_9", "Q4", "iq2_xxs", "COPY", "q4_K_M "])
def test_unknown_types_are_refused_in_ollama_words(requested):
    with pytest.raises(CreateError, match=r"^unsupported quantization type .* - supported types are F32, F16, "):
        quantize_type(requested)


def test_every_accepted_type_is_one_llama_cpp_knows():
    for requested in ACCEPTED:
        ftype_of(quantize_type(requested))
    assert ftype_of("Q4_K_M") == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert ftype_of("F32") == llama_cpp.LLAMA_FTYPE_ALL_F32


def test_a_type_llama_cpp_lacks_is_a_value_error():
    with pytest.raises(ValueError, match="no quantization type Q9_9"):
        ftype_of("Q9_9")


def test_per_tensor_log_lines_give_progress_and_others_do_not():
    line = b"[  42/ 101]  blk.2.attn_k.weight - [ 384, 384, 1, 1], type = f16, converting to q8_0 .. "
    assert tensor_progress(line) == (42, 101)
    assert tensor_progress(b"[ 101/ 101] output_norm.weight") == (101, 101)
    assert tensor_progress(b"llama_model_loader: - kv   0: general.architecture str = bert") is None
    assert tensor_progress(b"size =     1.12 MiB ->     0.60 MiB\n") is None
