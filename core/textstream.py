"""Helpers for reading tags out of text that arrives in pieces."""


def partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that begins ``tag``: what to hold until the next piece."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0
