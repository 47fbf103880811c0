"""Go's ``time.ParseDuration``, as Ollama parses ``keep_alive`` and ``OLLAMA_KEEP_ALIVE``.

Shared by the gateway (request bodies) and core (environment), so both read durations alike.
"""

from __future__ import annotations

import re

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_COMPONENT = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")
_MAX_NS = (1 << 63) - 1


class DurationError(ValueError):
    """The text is not a Go duration; ``str()`` is Go's own error message."""


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration string such as ``"1h30m"``, ``"-1m"``, ``".5s"`` or ``"0"``."""
    quoted = '"' + text + '"'
    rest = text
    negative = False
    if rest[:1] in "+-" and rest:
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise DurationError(f"time: invalid duration {quoted}")
    total = 0
    while rest:
        match = _COMPONENT.match(rest)
        whole, frac, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not frac:
            raise DurationError(f"time: invalid duration {quoted}")
        if not unit:
            raise DurationError(f"time: missing unit in duration {quoted}")
        # The unit runs up to the next digit or dot; an unknown one is an error.
        if unit not in _UNITS_NS:
            raise DurationError(f'time: unknown unit "{unit}" in duration {quoted}')
        scale = _UNITS_NS[unit]
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // (10 ** len(frac))
        total += value
        if total > _MAX_NS:
            raise DurationError(f"time: invalid duration {quoted}")
        rest = rest[match.end():]
    return -total if negative else total


def parse_env_duration(text: str, default_ns: int) -> int:
    """``OLLAMA_KEEP_ALIVE``-style values: a Go duration, or a bare integer of seconds.

    Negative means forever; an unreadable value keeps the default, as Ollama does.
    """
    try:
        return int(text) * 1_000_000_000
    except ValueError:
        pass
    try:
        return parse_go_duration(text)
    except DurationError:
        return default_ns
