"""Modelfiles as Ollama's ``parser`` package reads and writes them, and the ``/api/create`` body built from one.

The grammar, the error texts and the parameter typing follow ``parser/parser.go`` and
``api.FormatParams``, so ``herd create`` accepts and rejects exactly the Modelfiles ``ollama create``
does. Deliberate differences, each where Ollama's behaviour would be a trap:

- ``PARAMETER model x`` or ``PARAMETER template x`` is a parameter (an unknown one), not a second
  ``FROM``/``TEMPLATE``: commands keep their keyword apart from a parameter's name.
- Rendering quotes every value that would not read back the same (empty, starting with a quote, or
  ``FROM`` with outer spaces), so ``parse_modelfile(str(m)) == m`` holds for those too.
- A ``\\r\\n`` line break counts as one line in error messages.
- ``nan`` and ``inf`` are rejected as float values: JSON cannot carry them.

Client-side code: stdlib only (the client package never imports the servers).
"""

from __future__ import annotations

import enum
import hashlib
import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMMANDS = ("from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter", "message",
            "requires")
MESSAGE_ROLES = ("system", "user", "assistant")

INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", "renderer", "parser", '
    '"parameter", "message", or "requires"'
)
INVALID_MESSAGE_ROLE = 'message role must be one of "system", "user", or "assistant"'
MISSING_FROM = "no FROM line"
UNEXPECTED_EOF = "unexpected EOF"
INVALID_REQUIRES = "requires must be a valid semver (e.g. 0.14.0)"
NO_MODEL_FILES = "no Modelfile or safetensors files found"


class ModelfileError(ValueError):
    """A Modelfile Ollama would refuse, worded as Ollama words it (``(line N): …`` when a line is known)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"(line {line}): {message}" if line else message)
        self.line = line


class DeprecatedParameterWarning(UserWarning):
    """A parameter Ollama still reads but ignores; it is left out of the create request."""


# --- parameters (api.Options / api.Runner, typed as api.FormatParams types them) ---------------------------

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_GO_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_GO_DECIMAL_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_GO_HEX_FLOAT = re.compile(r"[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+", re.ASCII)
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _parse_int(value: str) -> int:
    """Go's ``strconv.ParseInt(value, 10, 64)``: decimal digits, an optional sign, nothing else."""
    if _GO_INT.fullmatch(value) and _INT64_MIN <= (number := int(value)) <= _INT64_MAX:
        return number
    raise ModelfileError(f"invalid int value [{value}]")


def _parse_float(value: str) -> float:
    """Go's ``strconv.ParseFloat(value, 32)``, sent as the shortest decimal of the float32 Ollama would send."""
    if _GO_DECIMAL_FLOAT.fullmatch(value):
        number = float(value)
    elif _GO_HEX_FLOAT.fullmatch(value):
        number = float.fromhex(value)
    else:
        raise ModelfileError(f"invalid float value [{value}]")
    try:
        single = struct.unpack("f", struct.pack("f", number))[0]
    except OverflowError:
        single = math.inf
    if not math.isfinite(single):
        raise ModelfileError(f"invalid float value [{value}]")
    # Go marshals a float32 with the fewest digits that read back as the same float32.
    for digits in range(1, 10):
        shortest = float(f"{single:.{digits}g}")
        if struct.unpack("f", struct.pack("f", shortest))[0] == single:
            return shortest
    return single


def _parse_bool(value: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise ModelfileError(f"invalid bool value [{value}]")


def _parse_strings(value: str) -> list[str]:
    return [value]


# Every parameter a Modelfile may set, by its JSON name, with the reader of its value.
KNOWN_PARAMETERS: dict[str, Callable[[str], Any]] = {
    "num_ctx": _parse_int,
    "num_batch": _parse_int,
    "num_gpu": _parse_int,
    "main_gpu": _parse_int,
    "use_mmap": _parse_bool,
    "num_thread": _parse_int,
    "draft_num_predict": _parse_int,
    "num_keep": _parse_int,
    "seed": _parse_int,
    "num_predict": _parse_int,
    "top_k": _parse_int,
    "top_p": _parse_float,
    "min_p": _parse_float,
    "typical_p": _parse_float,
    "repeat_last_n": _parse_int,
    "temperature": _parse_float,
    "repeat_penalty": _parse_float,
    "presence_penalty": _parse_float,
    "frequency_penalty": _parse_float,
    "stop": _parse_strings,
}

# Accepted and ignored, with a warning, as Ollama does.
DEPRECATED_PARAMETERS = frozenset({
    "penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock", "mirostat", "mirostat_tau",
    "mirostat_eta",
})


def typed_parameters(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``PARAMETER`` name/value pairs as the typed JSON ``parameters`` object.

    A list parameter (``stop``) collects every value; any other keeps its last one. Deprecated names
    warn (``DeprecatedParameterWarning``) and are dropped; unknown names and bad values raise.
    """
    typed: dict[str, Any] = {}
    for name, value in pairs:
        if name in DEPRECATED_PARAMETERS:
            warnings.warn(f"parameter {name} is deprecated", DeprecatedParameterWarning, stacklevel=3)
            continue
        parse = KNOWN_PARAMETERS.get(name)
        if parse is None:
            raise ModelfileError(f"unknown parameter '{name}'")
        parsed = parse(value)
        if isinstance(parsed, list) and isinstance(typed.get(name), list):
            typed[name] = typed[name] + parsed
        else:
            typed[name] = parsed
    return typed


# --- the Modelfile ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One Modelfile command.

    ``keyword`` is the lowercased command (``from``, ``parameter``, ``message``, ``system``, …);
    ``key`` is the parameter's name for ``parameter`` and the role for ``message``, else empty.
    """

    keyword: str
    value: str
    key: str = ""

    def __str__(self) -> str:
        if self.keyword in ("parameter", "message"):
            return f"{self.keyword.upper()} {self.key} {_quote(self.value)}"
        return f"{self.keyword.upper()} {_quote(self.value)}"


@dataclass
class Modelfile:
    """A parsed Modelfile: its commands in the order they were written."""

    commands: list[Command] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(f"{command}\n" for command in self.commands)

    def parameters(self) -> dict[str, Any]:
        """The typed ``parameters`` object of the ``PARAMETER`` lines (see ``typed_parameters``)."""
        return typed_parameters((c.key, c.value) for c in self.commands if c.keyword == "parameter")

    def to_create_request(
        self, model: str, resolve_path: Callable[[str], str | None]
    ) -> tuple[dict[str, Any], list[Path]]:
        """The ``/api/create`` body ``ollama create`` sends for this Modelfile, and the files to upload first.

        ``resolve_path`` maps a ``FROM``/``ADAPTER``/``DRAFT`` argument to an existing local file or
        directory, or ``None`` (``local_path_resolver`` is the CLI's). A local ``FROM`` goes to ``files``,
        anything else to ``from``; ``ADAPTER`` and ``DRAFT`` must be local. Files are named by their path
        below the files' common folder (one file: its base name) and given by ``sha256:<hex>`` digest.

        The returned paths line up with the values of ``files``, then ``adapters``, then ``draft_files``,
        so each path's digest is the value at the same position: upload each with ``POST /api/blobs/<digest>``.
        """
        request: dict[str, Any] = {"model": model}
        model_files: dict[Path, str] = {}
        adapter_files: dict[Path, str] = {}
        draft_files: dict[Path, str] = {}
        model_roots: list[Path] = []
        draft_roots: list[Path] = []
        licenses: list[str] = []
        messages: list[dict[str, str]] = []
        for command in self.commands:
            match command.keyword:
                case "from":
                    local = resolve_path(command.value)
                    if local is None:
                        request["from"] = command.value
                        continue
                    _reject_same_path(Path(local), draft_roots)
                    model_roots.append(Path(local))
                    model_files.update(_digest_map(Path(local)))
                case "draft":
                    local = _require_local(command, resolve_path)
                    _reject_same_path(local, model_roots)
                    draft_roots.append(local)
                    draft_files.update(_digest_map(local))
                case "adapter":
                    # Ollama keeps only the last ADAPTER's files.
                    adapter_files = _digest_map(_require_local(command, resolve_path))
                case "template" | "system" | "renderer" | "parser":
                    if command.value:
                        request[command.keyword] = command.value
                    else:
                        request.pop(command.keyword, None)
                case "license":
                    licenses.append(command.value)
                case "requires":
                    request["requires"] = _semver(command.value)
                case "message":
                    messages.append({"role": command.key, "content": command.value})
        uploads: list[Path] = []
        for request_key, files in (("files", model_files), ("adapters", adapter_files), ("draft_files", draft_files)):
            named = dict(zip(_request_file_names(list(files)), files.items()))
            if named:
                request[request_key] = {name: digest for name, (_, digest) in named.items()}
                uploads += [path for path, _ in named.values()]
        if parameters := self.parameters():
            request["parameters"] = parameters
        if messages:
            request["messages"] = messages
        if licenses:
            request["license"] = licenses
        return request, uploads


def parse_modelfile(text: str) -> Modelfile:
    """Read a Modelfile; raises ``ModelfileError`` with Ollama's message for one Ollama would refuse."""
    commands: list[Command] = []
    state = _State.NIL
    line = 1
    previous = ""
    buffer: list[str] = []
    keyword = key = ""
    for char in text.removeprefix("\ufeff"):
        if char == "\r" or (char == "\n" and previous != "\r"):
            line += 1
        previous = char
        next_state, kept = _step(char, state, buffer, line)
        if next_state is not state:
            match state:
                case _State.NAME:
                    keyword = "".join(buffer).lower()
                    if keyword not in COMMANDS:
                        raise ModelfileError(INVALID_COMMAND, line)
                    key = ""
                    if keyword == "parameter":
                        next_state = _State.PARAMETER
                    elif keyword == "message":
                        next_state = _State.MESSAGE
                case _State.PARAMETER:
                    key = "".join(buffer)
                case _State.MESSAGE:
                    key = "".join(buffer)
                    if key not in MESSAGE_ROLES:
                        raise ModelfileError(INVALID_MESSAGE_ROLE, line)
                case _State.VALUE:
                    value = _unquote("".join(buffer).strip())
                    # A value runs on through spaces, and through line breaks while a quote is open.
                    if value is None or char in " \t":
                        buffer.append(char)
                        continue
                    commands.append(Command(keyword, value, key))
            buffer.clear()
            state = next_state
        if kept.isprintable():
            buffer.append(kept)

    if state is _State.VALUE:
        value = _unquote("".join(buffer).strip())
        if value is None:
            raise ModelfileError(UNEXPECTED_EOF)
        commands.append(Command(keyword, value, key))
    elif state not in (_State.NIL, _State.COMMENT):
        raise ModelfileError(UNEXPECTED_EOF)

    if not any(command.keyword == "from" for command in commands):
        raise ModelfileError(MISSING_FROM)
    return Modelfile(commands)


def read_modelfile(path: Path) -> Modelfile:
    """Parse a Modelfile on disk: UTF-8, or UTF-16 when it starts with a UTF-16 byte order mark, as Ollama reads it."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return parse_modelfile(data.decode("utf-16", errors="replace"))
    return parse_modelfile(data.decode("utf-8", errors="replace"))


def local_path_resolver(modelfile_dir: Path) -> Callable[[str], str | None]:
    """The ``resolve_path`` of ``ollama create``: ``~`` expanded, relative to the Modelfile's folder, must exist."""

    def resolve(argument: str) -> str | None:
        path = os.path.abspath(os.path.join(modelfile_dir, os.path.expanduser(argument)))
        return path if os.path.exists(path) else None

    return resolve


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, read in chunks (model files are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


# --- parser internals ---------------------------------------------------------------------------------------


class _State(enum.Enum):
    NIL = enum.auto()
    NAME = enum.auto()
    VALUE = enum.auto()
    PARAMETER = enum.auto()
    MESSAGE = enum.auto()
    COMMENT = enum.auto()


def _is_alpha(char: str) -> bool:
    return "a" <= char <= "z" or "A" <= char <= "Z"


def _step(char: str, state: _State, buffer: list[str], line: int) -> tuple[_State, str]:
    """The state after ``char`` and the character to keep ("" for none), as ``parseRuneForState``."""
    match state:
        case _State.NIL:
            if char == "#":
                return _State.COMMENT, ""
            if char in " \t\r\n":
                return _State.NIL, ""
            return _State.NAME, char
        case _State.NAME:
            if _is_alpha(char):
                return _State.NAME, char
            if char in " \t":
                return _State.VALUE, ""
            raise ModelfileError(INVALID_COMMAND, line)
        case _State.VALUE:
            if char in " \t\r\n":
                return _State.NIL, char
            return _State.VALUE, char
        case _State.PARAMETER | _State.MESSAGE:
            if _is_alpha(char) or (state is _State.PARAMETER and (char.isascii() and char.isdigit() or char == "_")):
                return state, char
            if char in " \t":
                return _State.VALUE, ""
            raise ModelfileError(f"{UNEXPECTED_EOF}: {''.join(buffer)}")
        case _State.COMMENT:
            return (_State.NIL if char in "\r\n" else _State.COMMENT), ""


def _unquote(text: str) -> str | None:
    """The value inside ``\"\"\"…\"\"\"`` or ``"…"``, a bare value as it is; ``None`` while a quote is open."""
    if text.startswith('"""'):
        return text[3:-3] if len(text) >= 6 and text.endswith('"""') else None
    if text.startswith('"'):
        return text[1:-1] if len(text) >= 2 and text.endswith('"') else None
    return text


def _quote(value: str) -> str:
    """A value written so that it reads back the same: bare where it can be, as Ollama writes it."""
    if value and value == value.strip() and "\n" not in value and "\r" not in value and not value.startswith('"'):
        return value
    return f'"""{value}"""' if '"' in value else f'"{value}"'


# --- create-request internals -------------------------------------------------------------------------------

_SEMVER = re.compile(
    r"v(0|[1-9][0-9]*)"
    r"(\.(0|[1-9][0-9]*)"
    r"(\.(0|[1-9][0-9]*)"
    r"(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
    r")?)?",
    re.ASCII,
)


def _semver(value: str) -> str:
    """``REQUIRES`` checked as golang.org/x/mod/semver checks it (``v`` optional), sent without the ``v``."""
    prefixed = value if value.startswith("v") else "v" + value
    if not _SEMVER.fullmatch(prefixed):
        raise ModelfileError(INVALID_REQUIRES)
    return prefixed[1:]


def _require_local(command: Command, resolve_path: Callable[[str], str | None]) -> Path:
    local = resolve_path(command.value)
    if local is None:
        raise ModelfileError(f"{command.keyword.upper()} {command.value}: no such file or directory")
    return Path(local)


def _reject_same_path(path: Path, others: list[Path]) -> None:
    if any(path.resolve() == other.resolve() for other in others):
        raise ModelfileError(f"DRAFT must not reference the same local path as FROM: {path.name}")


def _digest_map(path: Path) -> dict[Path, str]:
    """Each file a local model path stands for (a file, or a model folder's files), with its digest."""
    if not path.is_dir():
        return {path: file_digest(path)}
    return {file: file_digest(file) for file in _model_folder_files(path)}


# Ollama's order of preference for a folder's weights: the first pattern that matches wins; the
# second pattern of a pair adds weights nested one folder down (sentence-transformers modules).
_WEIGHT_PATTERNS = (
    ("model*.safetensors", "*/model*.safetensors"),
    ("consolidated*.safetensors",),
    ("pytorch_model*.bin",),
    ("consolidated*.pth",),
    ("*.gguf",),
    ("*.bin",),
)


def _model_folder_files(folder: Path) -> list[Path]:
    """The files ``ollama create`` takes from a model folder (``filesForModel``), symlinks resolved."""
    root = folder.resolve()
    weights = next((found for patterns in _WEIGHT_PATTERNS if (found := _glob(root, *patterns))), None)
    if weights is None:
        raise ModelfileError(NO_MODEL_FILES)
    tokenizer = _glob(root, "tokenizer.model") or _glob(root, "*/tokenizer.model")
    found = weights + _glob(root, "*.json", "*/*.json", "chat_template.jinja") + tokenizer
    files = list(dict.fromkeys(file.resolve() for file in found))
    for file in files:
        if not file.is_relative_to(root):
            # A file linked from outside the folder (a Hugging Face cache, say) would be uploaded unasked.
            raise ModelfileError(f"insecure path: {os.path.relpath(file, root)}")
    return files


def _glob(folder: Path, *patterns: str) -> list[Path]:
    return [path for pattern in patterns for path in sorted(folder.glob(pattern)) if path.is_file()]


def _request_file_names(paths: list[Path]) -> list[str]:
    """Request names for files (``createRequestFileNames``): paths below their common folder, one file its base name."""
    if len(paths) < 2:
        return [path.name for path in paths]
    absolute = [Path(os.path.abspath(path)) for path in paths]
    root = os.path.commonpath([path.parent for path in absolute])
    return [path.relative_to(root).as_posix() for path in absolute]
