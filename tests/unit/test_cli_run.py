"""`herd run`'s pieces that need no server: Go durations, the --verbose block, cobra-style flags."""

import pytest

from herd.cli.chat import summary
from herd.cli.run import bare_flags_as_true
from herd.gofmt import go_duration


@pytest.mark.parametrize(
    ("ns", "text"),
    [(0, "0s"), (500, "500ns"), (1_500, "1.5µs"), (12_345_678, "12.345678ms"), (1_000_000_000, "1s"),
     (1_234_567_891, "1.234567891s"), (62_500_000_000, "1m2.5s"), (3_600_000_000_000, "1h0m0s"), (-1_500, "-1.5µs")],
)
def test_durations_print_as_go_prints_them(ns, text):
    assert go_duration(ns) == text


def test_verbose_summary_is_ollamas_block_without_the_zero_lines():
    done = {"total_duration": 1_500_000_000, "load_duration": 0, "prompt_eval_count": 10,
            "prompt_eval_duration": 50_000_000, "eval_count": 20, "eval_duration": 250_000_000}
    assert summary(done).splitlines() == [
        "total duration:       1.5s",
        "prompt eval count:    10 token(s)",
        "prompt eval duration: 50ms",
        "prompt eval rate:     200.00 tokens/s",
        "eval count:           20 token(s)",
        "eval duration:        250ms",
        "eval rate:            80.00 tokens/s",
    ]


def test_a_bare_think_flag_means_true_and_leaves_the_next_word_in_the_prompt():
    assert bare_flags_as_true(["run", "m", "--think", "hello"]) == ["run", "m", "--think=true", "hello"]
    assert bare_flags_as_true(["run", "m", "--think=low"]) == ["run", "m", "--think=low"]


def test_set_parameter_values_are_typed_as_the_api_wants_them():
    from herd.cli.chat import parameter_value

    assert parameter_value("num_predict", ["12"]) == 12
    assert parameter_value("temperature", ["0.5"]) == 0.5
    assert parameter_value("stop", ["<|im_end|>", "User:"]) == ["<|im_end|>", "User:"]
    assert parameter_value("penalize_newline", ["true"]) is True
