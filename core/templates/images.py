"""Where images go in a prompt, as Ollama places them (``server/prompt.go`` ``imageTaggedMessages``).

Before rendering, every image of a conversation gets an id in message order and a ``[img-N]`` tag
in its message: in place of the first ``[img]`` the message's text holds, else before the text.
After rendering, the first ``[img-N]`` of each image marks where its embeddings go; the runner
gets the text without the tags and the byte offset of each image in it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from herd.core.templates.values import Message

_PLACEHOLDER = "[img]"
# Ids are small; a tag with a longer number is text, and int() never sees thousands of digits.
_TAG = re.compile(r"\[img-(\d{1,6})\]")


def tag_images(messages: Sequence[Message]) -> tuple[list[Message], list[bytes]]:
    """The messages with an ``[img-N]`` tag for each image, and the images in id order."""
    tagged: list[Message] = []
    images: list[bytes] = []
    for message in messages:
        if not message.Images:
            tagged.append(message)
            continue
        prefix, content = "", message.Content
        for image in message.Images:
            tag = f"[img-{len(images)}]"
            images.append(image)
            if _PLACEHOLDER in content:
                content = content.replace(_PLACEHOLDER, tag, 1)
            else:
                prefix += tag
        tagged.append(replace(message, Content=prefix + content))
    return tagged, images


def place_images(prompt: str, count: int) -> tuple[str, list[tuple[int, int]]]:
    """The prompt without its image tags, and ``(byte offset, image id)`` for each image in prompt order.

    An image whose tag is not in the prompt (a raw prompt, or a template that drops it) goes first.
    """
    pieces: list[str] = []
    placed: list[tuple[int, int]] = []
    seen: set[int] = set()
    offset = 0  # UTF-8 bytes of the pieces so far
    position = 0
    for match in _TAG.finditer(prompt):
        image = int(match.group(1))
        if image >= count or image in seen:
            continue
        seen.add(image)
        text = prompt[position: match.start()]
        pieces.append(text)
        offset += len(text.encode())
        placed.append((offset, image))
        position = match.end()
    pieces.append(prompt[position:])
    untagged = [(0, image) for image in range(count) if image not in seen]
    return "".join(pieces), untagged + placed
