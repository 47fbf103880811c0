"""Word wrap for streamed answers on a terminal, as ``ollama run`` does it.

Text arrives a few characters at a time and is shown at once, so a word is only known to cross
the right margin after its first letters are on screen: they are taken back (cursor left, clear to
the end of the line) and written again on the next line. The margin sits five columns inside the
terminal's width, as in Ollama.

Two of Ollama's flaws are not copied: it wraps (escape codes included) when its output is a file
or a pipe, and a word too long for a whole line is printed twice. Here only a terminal is wrapped,
and a word wider than a line is broken where it meets the margin.
"""

from __future__ import annotations

import shutil
import unicodedata
from typing import TextIO

_MARGIN = 5
_MIN_WIDTH = 10  # narrower terminals are not wrapped, as in Ollama


def char_width(ch: str) -> int:
    """Columns a character takes on a terminal: 0 for combining marks, 2 for wide East Asian ones."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


class WordWrap:
    """Writes streamed text to ``out``, wrapping words at ``width`` - 5 columns."""

    def __init__(self, out: TextIO, width: int):
        self.out = out
        self.limit = width - _MARGIN
        self.enabled = width >= _MIN_WIDTH
        self.column = 0
        self.word = ""  # the letters of the word being written, already on screen

    @classmethod
    def for_terminal(cls, out: TextIO, enabled: bool = True) -> WordWrap:
        """Wraps at the terminal's width when ``out`` is a terminal and ``enabled``; else passes text through."""
        width = shutil.get_terminal_size().columns if enabled and out.isatty() else 0
        return cls(out, width)

    def write(self, text: str) -> None:
        if not self.enabled:
            self.out.write(text)
            return
        self.out.write("".join(self._wrapped(ch) for ch in text))

    def flush(self) -> None:
        self.out.flush()

    def _wrapped(self, ch: str) -> str:
        if ch in "\r\n":
            self.column, self.word = 0, ""
            return ch
        width = char_width(ch)
        if self.column + width <= self.limit:
            self.column += width
            # Wide characters (CJK) may be broken anywhere, like spaces.
            self.word = "" if ch in " \t" or width >= 2 else self.word + ch
            return ch
        if ch in " \t":  # the margin falls on a space: the next line starts clean
            self.column, self.word = 0, ""
            return "\n"
        word_width = text_width(self.word)
        if not self.word or word_width + width > self.limit:
            # Nothing to take back, or a word wider than a line: break it here.
            self.column, self.word = width, (self.word + ch if width < 2 else "")
            return "\n" + ch
        moved = f"\x1b[{word_width}D\x1b[K\n{self.word}{ch}"
        self.column = word_width + width
        self.word += ch
        return moved
