"""Where images go: Ollama's [img-N] tags in core, and the runner's image positions in a sequence."""

from __future__ import annotations

import hashlib

import pytest

from herd.core.inference import prompt_images
from herd.core.runner.engine import Sequence, image_boundary, text_end
from herd.core.runner.service import fit_prompt, prompt_texts
from herd.core.runner.vision import ImageEmbedding, image_token
from herd.core.templates.images import place_images, tag_images
from herd.core.templates.values import Message
from herd.runner.v1 import runner_pb2


def test_images_are_tagged_in_message_order_before_the_text_or_at_img():
    messages = [
        Message(Role="system", Content="Be brief."),
        Message(Role="user", Content="Compare these.", Images=(b"a", b"b")),
        Message(Role="assistant", Content="Done."),
        Message(Role="user", Content="Now [img] against [img].", Images=(b"c",)),
    ]
    tagged, images = tag_images(messages)
    assert [m.Content for m in tagged] == [
        "Be brief.", "[img-0][img-1]Compare these.", "Done.", "Now [img-2] against [img]."
    ]
    assert images == [b"a", b"b", b"c"]
    assert tagged[1].Images == (b"a", b"b")  # templates still see them, as in Ollama


def test_tags_leave_the_prompt_and_become_byte_offsets_in_prompt_order():
    text, placed = place_images("<u>é [img-1] and [img-0] [img-1] [img-7]</u>", 2)
    assert text == "<u>é  and  [img-1] [img-7]</u>"
    # "é" is two bytes: offsets count UTF-8 bytes.
    assert placed == [(len("<u>é ".encode()), 1), (len("<u>é  and ".encode()), 0)]


def test_an_image_whose_tag_is_missing_goes_first():
    assert place_images("raw prompt [img-1]", 2) == ("raw prompt ", [(0, 0), (11, 1)])
    assert place_images("[img-99999999999]", 1) == ("[img-99999999999]", [(0, 0)])


def test_prompt_images_builds_the_runner_request():
    text, images = prompt_images("a[img-0]b", [b"png"])
    assert text == "ab"
    assert images == [runner_pb2.PromptImage(data=b"png", offset=1)]
    assert prompt_images("no images [img-0]", []) == ("no images [img-0]", [])


def test_the_runner_cuts_the_prompt_at_the_offsets():
    def at(*offsets):
        return [runner_pb2.PromptImage(offset=offset) for offset in offsets]

    # "é" is bytes 4 and 5 of "abcdéf".
    assert prompt_texts("abcdéf", at(3, 3, 6)) == ["abc", "", "dé", "f"]
    for offsets in ((5,), (2, 1), (8,)):  # inside a character, out of order, past the end
        with pytest.raises(ValueError):
            prompt_texts("abcdéf", at(*offsets))


def image(start: int, n_pos: int = 4, token: int = -7) -> ImageEmbedding:
    return ImageEmbedding(chunk=0, n_pos=n_pos, token=token, start=start)


def test_image_tokens_are_negative_and_follow_the_bytes():
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    assert image_token(a) == image_token(a) < 0
    assert image_token(a) != image_token(b)


def test_a_short_prompt_keeps_its_images():
    first = image(2)
    assert fit_prompt(list(range(10)), 64, images=[first]) == (list(range(10)), [first])


def test_a_long_prompt_cuts_images_whole():
    # 40 tokens in a 32-token window: the first 4 stay, then the last 12 (32 // 2 - 4).
    head, cut, tail = image(2, n_pos=4), image(10), image(25, n_pos=5)
    tokens = list(range(40))
    kept, images = fit_prompt(tokens, 32, images=[head, cut, tail])
    # The head ends inside the first image, so the cut starts where it does; the tail starts inside the
    # last image, so the cut ends where that one ends.
    assert kept == tokens[:2] + tokens[30:]
    assert images == []


def test_images_wholly_outside_the_cut_stay_and_move():
    head, middle, tail = image(0, n_pos=2), image(10), image(35, n_pos=2)
    tokens = list(range(40))
    kept, images = fit_prompt(tokens, 32, images=[head, middle, tail])
    assert kept == tokens[:4] + tokens[28:]
    assert images == [head, tail]
    assert (head.start, tail.start) == (0, 11)


def test_the_engine_never_cuts_an_image_and_prefills_text_up_to_the_next():
    images = [image(3), image(10, n_pos=2)]
    assert [image_boundary(keep, images) for keep in (0, 3, 4, 6, 7, 11, 12)] == [0, 3, 3, 3, 7, 10, 12]
    seq = Sequence(prompt_tokens=list(range(15)), num_predict=1, stop=[], sampling=None, emit=None, fail=None,
                   images=images)
    ends = []
    for n_past in (0, 3, 7, 12):
        seq.n_past = n_past
        ends.append(text_end(seq))
    assert ends == [3, 3, 10, 15]
