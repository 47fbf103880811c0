"""Word wrap of streamed answers on a terminal (herd run)."""

from __future__ import annotations

import io
import random

import pytest

from herd.cli.wrap import WordWrap, text_width
from tests.terminal import render

TEXT = ("The lighthouse keeper kept a log of every ship that passed the point: its flag, its cargo as far "
        "as he could guess it, the weather, and the hour.\nOver thirty years the log grew to eleven volumes.")


def wrapped(text: str, width: int, chunk_sizes: list[int] | None = None) -> str:
    out = io.StringIO()
    wrap = WordWrap(out, width)
    pieces, i = [], 0
    for size in chunk_sizes or [len(text)]:
        pieces.append(text[i:i + size])
        i += size
    pieces.append(text[i:])
    for piece in pieces:
        wrap.write(piece)
    return out.getvalue()


@pytest.mark.parametrize("width", [20, 33, 80])
def test_lines_stay_inside_the_margin_and_words_stay_whole(width):
    lines = render(wrapped(TEXT, width))
    assert max(text_width(line) for line in lines) <= width - 5
    assert " ".join(lines).split() == TEXT.split()


def test_the_wrap_does_not_depend_on_how_the_text_was_streamed():
    rng = random.Random(7)
    whole = wrapped(TEXT, 30)
    for _ in range(20):
        sizes = [rng.randint(1, 6) for _ in range(len(TEXT))]
        assert render(wrapped(TEXT, 30, sizes)) == render(whole)


def test_a_word_wider_than_a_line_is_broken_and_printed_once():
    word = "x" * 50
    lines = render(wrapped(f"a {word} b", 20))
    assert "".join(lines).replace(" ", "") == f"a{word}b"
    assert max(len(line) for line in lines) <= 15


def test_wide_characters_count_two_columns():
    text = "漢字" * 20
    lines = render(wrapped(text, 20))
    assert "".join(lines) == text
    assert max(text_width(line) for line in lines) <= 15


def test_newlines_start_a_new_line_count():
    lines = render(wrapped("short\n" * 5 + "a b c", 12))
    assert lines == ["short"] * 5 + ["a b c"]


@pytest.mark.parametrize("width", [0, 9])
def test_narrow_or_no_terminal_passes_text_through(width):
    assert wrapped(TEXT, width) == TEXT


def test_output_that_is_not_a_terminal_is_never_wrapped():
    out = io.StringIO()
    wrap = WordWrap.for_terminal(out)
    wrap.write(TEXT * 3)
    assert out.getvalue() == TEXT * 3
