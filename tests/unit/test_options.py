"""Option precedence: server defaults < the model's params layer < the request."""

import pytest

from herd.core.errors import InvalidRequest
from herd.core.options import resolve
from herd.v1 import common_pb2


def test_defaults_are_ollamas():
    opts = resolve({}, None)
    assert (opts.temperature, opts.top_k, opts.top_p, opts.min_p, opts.typical_p) == (0.8, 40, pytest.approx(0.9), 0.0, 1.0)
    assert (opts.num_predict, opts.seed, opts.repeat_last_n, opts.repeat_penalty, opts.num_keep) == (-1, -1, 64, 1.0, 4)
    assert opts.stop == ()
    assert opts.runner.num_batch == 512 and opts.runner.num_ctx == 0 and opts.runner.use_mmap


def test_model_params_override_defaults_and_request_overrides_both():
    model = {"temperature": 1, "top_k": 64, "stop": ["<end_of_turn>"]}
    assert resolve(model, None).temperature == 1.0
    assert resolve(model, None).stop == ("<end_of_turn>",)
    request = common_pb2.Options(temperature=0.0, stop=common_pb2.StringList(values=["\n"]))
    merged = resolve(model, request)
    assert merged.temperature == 0.0  # an explicit zero is not "unset"
    assert merged.top_k == 64
    assert merged.stop == ("\n",)


def test_request_can_clear_the_models_stop_list():
    merged = resolve({"stop": ["x"]}, common_pb2.Options(stop=common_pb2.StringList()))
    assert merged.stop == ()


def test_integer_options_from_json_floats_are_truncated():
    assert resolve({"num_predict": 12.9, "num_ctx": 2048.0}, None).num_predict == 12
    assert resolve({"num_ctx": 2048.0}, None).runner.num_ctx == 2048


def test_unknown_model_params_are_ignored():
    assert resolve({"mirostat": 2, "penalize_newline": True}, None).temperature == 0.8


@pytest.mark.parametrize(
    "params, message",
    [
        ({"temperature": "hot"}, 'option "temperature" must be of type float32'),
        ({"num_ctx": "big"}, 'option "num_ctx" must be of type integer'),
        ({"stop": [1, 2]}, 'option "stop" must be of type array of strings'),
        ({"use_mmap": 1}, 'option "use_mmap" must be of type boolean'),
        ({"temperature": float("nan")}, 'option "temperature" must be a finite number'),
        ({"num_ctx": -1}, 'option "num_ctx" must be between 0 and 1048576'),
        ({"num_batch": 0}, 'option "num_batch" must be between 1 and 65536'),
    ],
)
def test_bad_values_are_rejected_before_reaching_llama_cpp(params, message):
    with pytest.raises(InvalidRequest) as err:
        resolve(params, None)
    assert str(err.value) == message


def test_request_options_are_validated_too():
    with pytest.raises(InvalidRequest):
        resolve({}, common_pb2.Options(num_ctx=-5))
