"""What a terminal shows for a stream of text with the few escape codes herd's CLI writes."""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\x1b\[(\d*)([DK])")


def render(output: str) -> list[str]:
    """The screen's lines: ``ESC[nD`` moves the cursor left, ``ESC[K`` clears to the end of the line."""
    lines, line, cursor = [], [], 0
    i = 0
    while i < len(output):
        escape = _ESCAPE.match(output, i)
        if escape:
            if escape.group(2) == "D":
                cursor = max(0, cursor - int(escape.group(1) or 1))
            else:
                del line[cursor:]
            i = escape.end()
            continue
        ch = output[i]
        i += 1
        if ch == "\n":
            lines.append("".join(line))
            line, cursor = [], 0
        elif ch != "\r":
            line[cursor:cursor + 1] = [ch]
            cursor += 1
    lines.append("".join(line))
    return lines
