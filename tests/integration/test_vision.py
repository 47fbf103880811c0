"""Images, end to end: a vision model created through /api/create from the bundled SmolLM2 weights plus a
generated projector, then asked about pictures on /api/generate, /api/chat and /v1/chat/completions.

The projector's weights are random (tests/mmproj.py), so what the model says about a picture is
nonsense; the tests check what a user can see of the multimodal path: the image's embeddings
count as prompt tokens, different pictures change the answer, bad pictures are a clean 400.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import ollama
import openai
import pytest

from herd.core.store.bundled import locate_smollm2
from herd.core.templates.library import SMOLLM2_TEMPLATE
from tests.conftest import CHAT_MODEL
from tests.mmproj import IMAGE_TOKENS, blue_stripes, red_square, write_mmproj

pytestmark = pytest.mark.integration

MODEL = "smol-vision"
GREEDY = {"temperature": 0, "num_predict": 12}
QUESTION = "Describe the picture."
UNREADABLE = "Failed to load image or audio file"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def vision(server, tmp_path_factory):
    """``smol-vision``: SmolLM2's weights and a projector, created as a user would, from uploaded blobs."""
    client = ollama.Client(host=server.base_url, timeout=300)
    projector = write_mmproj(locate_smollm2(), tmp_path_factory.mktemp("mmproj") / "mmproj-smollm2.gguf")
    files = {"smollm2.gguf": client.create_blob(locate_smollm2()), "mmproj-smollm2.gguf": client.create_blob(projector)}
    progress = list(client.create(MODEL, files=files, template=SMOLLM2_TEMPLATE, parameters={"stop": ["<|im_end|>"]},
                                  stream=True))
    assert progress[-1].status == "success"
    yield files
    client.delete(MODEL)


@pytest.fixture
def oai(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="anything", timeout=300, max_retries=0)


def unload(client) -> None:
    """The next request starts a new runner, so nothing of its prompt comes from the cache."""
    client.generate(MODEL, keep_alive=0)


def test_create_takes_the_projector_and_show_reports_it(client, server, vision):
    manifest = json.loads((server.models_dir / "manifests/registry.ollama.ai/library" / MODEL / "latest").read_text())
    layers = {layer["mediaType"]: layer["digest"] for layer in manifest["layers"]}
    assert layers["application/vnd.ollama.image.projector"] == vision["mmproj-smollm2.gguf"]
    assert layers["application/vnd.ollama.image.model"] == vision["smollm2.gguf"]
    shown = httpx.post(server.base_url + "/api/show", json={"model": MODEL}, timeout=60).json()
    assert "vision" in shown["capabilities"] and "completion" in shown["capabilities"]
    assert shown["details"]["family"] == "llama"
    assert shown["projector_info"]["general.architecture"] == "clip"
    assert shown["projector_info"]["clip.has_vision_encoder"] is True
    assert "projector_info" not in httpx.post(server.base_url + "/api/show", json={"model": CHAT_MODEL}).json()


def test_herd_create_takes_a_projector_from_a_second_from_line(server, tmp_path):
    from tests.integration.test_cli import herd

    (tmp_path / "smollm2.gguf").symlink_to(locate_smollm2())
    write_mmproj(locate_smollm2(), tmp_path / "mmproj.gguf")
    (tmp_path / "Modelfile").write_text("FROM ./smollm2.gguf\nFROM ./mmproj.gguf\n")
    created = herd(server, "create", "cli-vision", "-f", str(tmp_path / "Modelfile"))
    assert created.returncode == 0, created.stderr
    manifest = json.loads((server.models_dir / "manifests/registry.ollama.ai/library/cli-vision/latest").read_text())
    kinds = [layer["mediaType"].rsplit(".", 1)[1] for layer in manifest["layers"]]
    assert kinds[:2] == ["projector", "model"]
    assert herd(server, "rm", "cli-vision").returncode == 0


def test_generate_reads_an_image_as_prompt_tokens(client, vision):
    unload(client)
    plain = client.generate(MODEL, QUESTION, options=GREEDY)
    unload(client)
    seen = client.generate(MODEL, QUESTION, images=[red_square()], options=GREEDY)
    assert seen.done and seen.done_reason in ("stop", "length")
    assert seen.prompt_eval_count == plain.prompt_eval_count + IMAGE_TOKENS
    assert seen.eval_count > 0
    # The context holds real tokens only: it can be sent back, and a forged one cannot pose as an image.
    assert min(seen.context) >= 0
    assert client.generate(MODEL, "And now?", context=seen.context, options=GREEDY).done
    with pytest.raises(ollama.ResponseError) as forged:
        client.generate(MODEL, "And now?", context=[1, -5, 2], options=GREEDY)
    assert (forged.value.status_code, forged.value.error) == (400, "context holds an invalid token")


def test_different_pictures_give_different_answers_and_the_cache_tells_them_apart(client, vision):
    def ask(image: bytes):
        return client.generate(MODEL, QUESTION, images=[image], options=GREEDY)

    unload(client)
    red = ask(red_square())
    stripes = ask(blue_stripes())
    assert red.response and stripes.response and red.response != stripes.response
    # The text before the picture may come from the cache, the other picture never does.
    assert stripes.prompt_eval_count > IMAGE_TOKENS
    # The same picture again: all of the prompt but its last token is cached.
    assert ask(red_square()).prompt_eval_count == 1
    assert ask(blue_stripes()).prompt_eval_count == 1


def test_without_images_the_vision_model_answers_as_its_text_model(client, vision):
    question = [{"role": "user", "content": "What is the capital of France?"}]
    base = client.chat(CHAT_MODEL, messages=question, options={"temperature": 0, "num_predict": 16})
    mine = client.chat(MODEL, messages=question, options={"temperature": 0, "num_predict": 16})
    assert mine.message.content == base.message.content
    assert "Paris" in mine.message.content


def test_chat_streams_with_images_in_several_messages(client, vision):
    messages = [
        {"role": "user", "content": "Look at this: [img] What colour is it?", "images": [red_square()]},
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "And these?", "images": [blue_stripes(), red_square()]},
    ]
    unload(client)
    chunks = list(client.chat(MODEL, messages=messages, options=GREEDY, stream=True))
    assert chunks[-1].done and not any(chunk.done for chunk in chunks[:-1])
    text_only = [{**message, "images": []} for message in messages]
    unload(client)
    plain = client.chat(MODEL, messages=text_only, options=GREEDY)
    # The [img] placeholder is replaced, not read as text: three images' tokens, minus those two words.
    assert chunks[-1].prompt_eval_count - plain.prompt_eval_count == pytest.approx(3 * IMAGE_TOKENS, abs=4)


def test_openai_image_url_data_uri(oai, client, vision):
    def ask(content):
        return oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                           temperature=0, max_tokens=12)

    unload(client)
    plain = ask([{"type": "text", "text": QUESTION}])
    unload(client)
    reply = ask([
        {"type": "text", "text": QUESTION},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(red_square())}},
    ])
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.choices[0].message.content
    assert reply.usage.prompt_tokens >= plain.usage.prompt_tokens + IMAGE_TOKENS
    with pytest.raises(openai.BadRequestError) as refused:
        ask([{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(b"not a picture")}}])
    assert refused.value.body["message"] == UNREADABLE


def huge_png(width: int, height: int) -> bytes:
    """A black PNG of ``width`` × ``height`` pixels: a few hundred KB that decode to ``3 * width * height`` bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj()
    row = bytes(1 + 3 * width)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@pytest.mark.parametrize("make_image, message", [
    (lambda: b"not a picture at all", UNREADABLE),
    (lambda: b"", UNREADABLE),
    (lambda: red_square()[:60], UNREADABLE),  # a PNG cut short
    (lambda: b"RIFF\x10\x00\x00\x00WEBPVP8 ", UNREADABLE),
    (lambda: huge_png(20000, 10000), "image is too large: 20000x10000 pixels, at most 67108864 are supported"),
], ids=["text", "empty", "truncated-png", "webp", "200-megapixels"])
def test_a_bad_image_is_a_clean_400_and_the_server_keeps_serving(server, client, vision, make_image, message):
    image = make_image()
    for path, body in (
        ("/api/generate", {"prompt": QUESTION, "images": [b64(image)]}),
        ("/api/chat", {"messages": [{"role": "user", "content": QUESTION, "images": [b64(image)]}]}),
    ):
        reply = httpx.post(server.base_url + path, json={"model": MODEL, "stream": False, **body}, timeout=120)
        assert (reply.status_code, reply.json()) == (400, {"error": message})
    streamed = httpx.post(server.base_url + "/api/generate", json={"model": MODEL, "prompt": QUESTION,
                                                                  "images": [b64(image)]}, timeout=120)
    assert (streamed.status_code, streamed.json()) == (400, {"error": message})
    assert client.generate(MODEL, QUESTION, images=[red_square()], options=GREEDY).done


def test_images_and_text_requests_share_the_runner(client, vision):
    def ask(image):
        return client.generate(MODEL, QUESTION, images=[image] if image else [], options=GREEDY)

    jobs = [red_square(), blue_stripes(), None] * 2
    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(ask, jobs))
    assert all(reply.done and reply.response for reply in replies)
    # Batched with other sequences, a picture's answer is still its own.
    assert {replies[0].response, replies[3].response}.isdisjoint({replies[1].response, replies[4].response})
