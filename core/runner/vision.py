"""Images in prompts, through llama.cpp's multimodal library (libmtmd) and a model's projector.

A projector (``mmproj`` GGUF, Ollama's ``projector`` layer) turns a picture into embeddings the
text model reads in place of tokens. :class:`Projector` loads one against the engine's model,
turns encoded image bytes into prompt pieces (the image's embeddings, and any text tokens the
model wraps an image in), and evaluates an image into a sequence of the engine's context.

Images are decoded with the stb_image that libmtmd carries, not with mtmd's helper, which falls
back to audio decoders and to spawning ``ffprobe`` for bytes that are not a picture.
"""

from __future__ import annotations

import ctypes
import hashlib
import weakref
from dataclasses import dataclass, field

import llama_cpp
from llama_cpp import mtmd_cpp

# The message llama.cpp's server (and so Ollama) gives for bytes it cannot read as an image.
IMAGE_UNREADABLE = "Failed to load image or audio file"
# Decoded images are 3 bytes a pixel: this caps one at 192 MiB, well above any camera's output.
MAX_IMAGE_PIXELS = 1 << 26

_stbi = mtmd_cpp._libmtmd
_stbi.stbi_info_from_memory.argtypes = [
    ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
    ctypes.POINTER(ctypes.c_int),
]
_stbi.stbi_info_from_memory.restype = ctypes.c_int
_stbi.stbi_load_from_memory.argtypes = [
    ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
    ctypes.POINTER(ctypes.c_int), ctypes.c_int,
]
_stbi.stbi_load_from_memory.restype = ctypes.POINTER(ctypes.c_uint8)
_stbi.stbi_image_free.argtypes = [ctypes.c_void_p]
_stbi.stbi_image_free.restype = None


class ImageError(ValueError):
    """An image that cannot be used; the message is safe to show to clients."""


def image_token(digest: bytes) -> int:
    """The pseudo-token that stands for each position of an image (``digest``: its sha256) in a sequence.

    Negative, so never a real token; derived from the bytes, so a cached prefix is reused only
    up to the first image that differs.
    """
    return -1 - int.from_bytes(digest[:4], "little") % (1 << 30)


@dataclass
class ImageEmbedding:
    """One image in a prompt: ``n_pos`` positions of the sequence, evaluated by the projector.

    Owns its libmtmd chunk (the preprocessed image) until :meth:`free` or garbage collection.
    """

    chunk: int
    n_pos: int
    token: int
    start: int = 0  # the sequence position of its first embedding
    _finalizer: weakref.finalize | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.chunk:
            self._finalizer = weakref.finalize(self, mtmd_cpp.mtmd_input_chunk_free, self.chunk)

    @property
    def end(self) -> int:
        return self.start + self.n_pos

    def free(self) -> None:
        """Lets go of the preprocessed image once its embeddings are in the KV cache."""
        if self._finalizer is not None:
            self._finalizer()


class Projector:
    """A loaded projector, bound to the text model it projects into."""

    def __init__(self, path: str, model, n_threads: int, use_gpu: bool, log_callback=None):
        if log_callback is not None:
            mtmd_cpp.mtmd_log_set(log_callback, None)
            mtmd_cpp.mtmd_helper_log_set(log_callback, None)
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        ctx = mtmd_cpp.mtmd_init_from_file(path.encode(), model, params)
        if not ctx:
            raise ImageError("unable to load the vision projector")
        if not mtmd_cpp.mtmd_support_vision(ctx):
            mtmd_cpp.mtmd_free(ctx)
            raise ImageError("the projector has no vision encoder")
        self.ctx = ctx

    def close(self) -> None:
        if self.ctx:
            mtmd_cpp.mtmd_free(self.ctx)
            self.ctx = None

    def pieces(self, data: bytes) -> list[list[int] | ImageEmbedding]:
        """What one encoded image becomes in a prompt; raises ImageError for bytes that are no usable image.

        Thread-safe against :meth:`evaluate` (llama.cpp's server tokenizes on its HTTP threads too).
        """
        bitmap = _decode(data)
        digest = hashlib.sha256(data).digest()
        try:
            mtmd_cpp.mtmd_bitmap_set_id(bitmap, digest.hex().encode())
            chunks = mtmd_cpp.mtmd_input_chunks_init()
            try:
                part = mtmd_cpp.mtmd_input_part(text=None, bitmap=bitmap)
                parts = (ctypes.POINTER(mtmd_cpp.mtmd_input_part) * 1)(ctypes.pointer(part))
                if mtmd_cpp.mtmd_tokenize_from_parts(self.ctx, chunks, parts, 1, False) != 0:
                    raise ImageError("failed to process image")
                return self._pieces(chunks, image_token(digest))
            finally:
                mtmd_cpp.mtmd_input_chunks_free(chunks)
        finally:
            mtmd_cpp.mtmd_bitmap_free(bitmap)

    @staticmethod
    def _pieces(chunks, token: int) -> list[list[int] | ImageEmbedding]:
        pieces: list[list[int] | ImageEmbedding] = []
        for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
            kind = mtmd_cpp.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t(0)
                tokens = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                pieces.append(list(tokens[: count.value]))
            elif kind == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                owned = mtmd_cpp.mtmd_input_chunk_copy(chunk)
                if not owned:
                    raise ImageError("failed to process image")
                pieces.append(ImageEmbedding(owned, mtmd_cpp.mtmd_input_chunk_get_n_pos(chunk), token))
            else:
                raise ImageError(IMAGE_UNREADABLE)
        return pieces

    def evaluate(self, lctx, image: ImageEmbedding, seq_id: int, n_batch: int) -> None:
        """Encodes ``image`` and decodes its embeddings into ``seq_id`` from ``image.start``; no logits."""
        new_n_past = llama_cpp.llama_pos(0)
        rc = mtmd_cpp.mtmd_helper_eval_chunk_single(
            self.ctx, lctx, image.chunk, image.start, seq_id, n_batch, False, ctypes.byref(new_n_past)
        )
        if rc != 0:
            raise ImageError("failed to process image")


def _decode(data: bytes) -> int:
    """An mtmd bitmap of ``data`` (PNG, JPEG, GIF, BMP, …) as 8-bit RGB."""
    if not data:
        raise ImageError(IMAGE_UNREADABLE)
    width, height, channels = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
    size = len(data)
    if not _stbi.stbi_info_from_memory(data, size, ctypes.byref(width), ctypes.byref(height), ctypes.byref(channels)):
        raise ImageError(IMAGE_UNREADABLE)
    if width.value * height.value > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"image is too large: {width.value}x{height.value} pixels, at most {MAX_IMAGE_PIXELS} are supported"
        )
    pixels = _stbi.stbi_load_from_memory(
        data, size, ctypes.byref(width), ctypes.byref(height), ctypes.byref(channels), 3
    )
    if not pixels:
        raise ImageError(IMAGE_UNREADABLE)
    try:
        bitmap = mtmd_cpp.mtmd_bitmap_init(width.value, height.value, pixels)
    finally:
        _stbi.stbi_image_free(pixels)
    if not bitmap:
        raise ImageError(IMAGE_UNREADABLE)
    return bitmap
