"""Go durations, shared by the gateway's keep_alive and core's OLLAMA_KEEP_ALIVE."""

import pytest

from herd.durations import parse_env_duration, parse_go_duration

MINUTE = 60 * 10**9


@pytest.mark.parametrize(
    "text, ns",
    [("5m", 5 * MINUTE), ("1h30m", 90 * MINUTE), ("-1m", -MINUTE), ("0", 0), (".5s", 5 * 10**8),
     ("1.5h", 90 * MINUTE), ("300ms", 3 * 10**8), ("2us", 2000), ("2µs", 2000), ("+3s", 3 * 10**9)],
)
def test_go_durations(text, ns):
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    "text, message",
    [("10", 'time: missing unit in duration "10"'), ("x", 'time: invalid duration "x"'),
     ("", 'time: invalid duration ""'), ("1d", 'time: unknown unit "d" in duration "1d"')],
)
def test_go_duration_errors_read_as_go_writes_them(text, message):
    with pytest.raises(ValueError) as err:
        parse_go_duration(text)
    assert str(err.value) == message


def test_durations_at_the_int64_edge():
    assert parse_go_duration("2562047h47m16.854775807s") == (1 << 63) - 1
    assert parse_go_duration("-2562047h47m16.854775808s") == -(1 << 63)
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration("2562047h47m16.854775808s")


def test_environment_durations_also_take_bare_seconds_and_keep_the_default_when_unreadable():
    assert parse_env_duration("10", 7) == 10 * 10**9
    assert parse_env_duration("-1", 7) == -(10**9)
    assert parse_env_duration("2m", 7) == 2 * MINUTE
    assert parse_env_duration("soon", 7) == 7
