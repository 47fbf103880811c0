"""Go's ``time.ParseDuration``, as Ollama reads ``keep_alive`` and ``OLLAMA_KEEP_ALIVE``.

Shared by the gateway (request bodies) and core (environment), so both read durations alike,
with Go's overflow rules and error messages.
"""

from __future__ import annotations

_INT64_MAX = (1 << 63) - 1


def _time_quote(text: str) -> str:
    """The ``time`` package's own quote: UTF-8 bytes of anything outside printable ASCII as ``\\xNN``."""
    out = ['"']
    for ch in text:
        if ord(ch) >= 0x80 or ch < " ":
            out.extend(f"\\x{byte:02x}" for byte in ch.encode("utf-8"))
        elif ch == '"' or ch == "\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_UNIT_NS = {
    b"ns": 1,
    b"us": 1_000,
    "µs".encode(): 1_000,  # U+00B5 micro sign
    "μs".encode(): 1_000,  # U+03BC Greek small mu
    b"ms": 1_000_000,
    b"s": 1_000_000_000,
    b"m": 60_000_000_000,
    b"h": 3_600_000_000_000,
}
_TWO_63 = 1 << 63


def _is_digit(byte: int) -> bool:
    return 0x30 <= byte <= 0x39


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration (``"5m"``, ``"1h30m"``, ``"-1.5h"``, ``".5s"``, ``"0"``).

    A port of Go's ``time.ParseDuration`` with its overflow rules and messages; raises
    ``ValueError`` with Go's text, e.g. ``time: missing unit in duration "10"``.
    """
    invalid = ValueError(f"time: invalid duration {_time_quote(text)}")
    s = text.encode("utf-8")
    negative = False
    if s[:1] in (b"-", b"+"):
        negative = s[:1] == b"-"
        s = s[1:]
    if s == b"0":
        return 0
    if not s:
        raise invalid
    total = 0
    i, end = 0, len(s)
    while i < end:
        if not (s[i] == 0x2E or _is_digit(s[i])):
            raise invalid
        start = i
        whole = 0
        while i < end and _is_digit(s[i]):
            if whole > _TWO_63 // 10:
                raise invalid
            whole = whole * 10 + s[i] - 0x30
            if whole > _TWO_63:
                raise invalid
            i += 1
        had_whole = i != start
        fraction, scale, had_fraction = 0, 1.0, False
        if i < end and s[i] == 0x2E:
            i += 1
            start = i
            overflow = False
            while i < end and _is_digit(s[i]):
                # Digits past 63 bits of precision are read and ignored, as Go does.
                if not overflow:
                    if fraction > (_TWO_63 - 1) // 10:
                        overflow = True
                    else:
                        widened = fraction * 10 + s[i] - 0x30
                        if widened > _TWO_63:
                            overflow = True
                        else:
                            fraction, scale = widened, scale * 10
                i += 1
            had_fraction = i != start
        if not had_whole and not had_fraction:
            raise invalid
        start = i
        while i < end and s[i] != 0x2E and not _is_digit(s[i]):
            i += 1
        if i == start:
            raise ValueError(f"time: missing unit in duration {_time_quote(text)}")
        unit_text = s[start:i]
        unit = _UNIT_NS.get(unit_text)
        if unit is None:
            unit_name = _time_quote(unit_text.decode("utf-8", "replace"))
            raise ValueError(f"time: unknown unit {unit_name} in duration {_time_quote(text)}")
        if whole > _TWO_63 // unit:
            raise invalid
        value = whole * unit
        if fraction > 0:
            # As Go: float64 keeps fractions of an hour nanosecond-exact.
            value += int(float(fraction) * (float(unit) / scale))
            if value > _TWO_63:
                raise invalid
        total += value
        if total > _TWO_63:
            raise invalid
    if negative:
        return -total
    if total > _INT64_MAX:
        raise invalid
    return total


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
    except ValueError:
        return default_ns
