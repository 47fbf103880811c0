"""Values printed the way Go's fmt and strconv print them.

Ollama's messages and Modelfiles are written by Go; herd reproduces them byte for byte, so
the store, the templates and the gateway share these.
"""

from __future__ import annotations

import math
from decimal import Decimal

_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}



def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``: printable runes as they are, the rest escaped."""
    out = ['"']
    for char in text:
        escaped = _GO_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        elif 0xD800 <= ord(char) <= 0xDFFF:
            # A lone surrogate is not a valid rune; Go writes the replacement character.
            out.append("\\ufffd")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def shortest_decimal(number: float) -> tuple[str, int]:
    """The shortest digits that round-trip ``abs(number)``, and the decimal point position.

    ``0.d1d2d3 × 10**point`` is the value; zero is ``("", 0)``. Python's ``repr`` and Go's
    ``strconv`` both produce the shortest round-trip digits, so the digits agree.
    """
    if number == 0:
        return "", 0
    _, digit_tuple, exponent = Decimal(repr(abs(number))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    return digits, len(digits) + int(exponent)


def exponent_form(digits: str, point: int, negative: bool) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exponent = point - 1
    sign = "-" if exponent < 0 else "+"
    return f"{'-' if negative else ''}{mantissa}e{sign}{abs(exponent):02d}"


def fixed_form(digits: str, point: int, negative: bool) -> str:
    if not digits:
        text = "0"
    elif point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return ("-" if negative else "") + text


def go_float(number: float) -> str:
    """A float as Go's fmt prints it with ``%v``: shortest digits, exponent form outside 1e-4..1e6."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    digits, point = shortest_decimal(number)
    negative = math.copysign(1.0, number) < 0
    if digits and (point - 1 < -4 or point - 1 >= 6):
        return exponent_form(digits, point, negative)
    return fixed_form(digits, point, negative)


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    digits = str(fraction).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def go_duration(ns: int) -> str:
    """A duration as Go's ``time.Duration.String`` prints it: ``1.5s``, ``2m3.25s``, ``12.5ms``, ``0s``."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_decimal(ns, 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_decimal(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _decimal(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    return f"{sign}{minutes}m{seconds}" if minutes else sign + seconds
