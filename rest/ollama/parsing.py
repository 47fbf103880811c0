"""Reading Ollama request bodies the way Ollama's Go server reads them.

Ollama binds a body with ``encoding/json`` into Go structs, so its clients see Go's words when a
body is wrong: ``invalid character 'x' looking for beginning of value``, ``unexpected EOF``,
``json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool``. This module
reproduces those messages: Python's json module parses (fast, in C), and only when it fails does a
Go-style scanner look for the error Go would have named. Request structs are described as data
(:data:`GENERATE_REQUEST`, …) and :func:`decode_request` type-checks a parsed body against one,
as the Go decoder does: unknown fields are ignored, names match case-insensitively, ``null`` is
"unset", the first type mismatch is reported after the whole body was read, and custom
unmarshalers (``keep_alive``, ``think``, messages) fail at once.

Also here: ``keep_alive`` (a port of Go's ``time.ParseDuration``) and ``options`` (``FromMap``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import structlog

from herd.durations import parse_go_duration
from herd.gofmt import go_quote
from herd.rest.errors import ApiError
from herd.v1 import common_pb2

log = structlog.get_logger(__name__)

MISSING_BODY = "missing request body"
UNEXPECTED_EOF = "unexpected EOF"

# A keep_alive that never expires, as the proto spells it.
KEEP_ALIVE_FOREVER_NS = -1

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_FLOAT64_MAX = 1.7976931348623157e308


# ---------------------------------------------------------------------------------------------
# Go's quoting, as its error messages use it


def _quote_byte(byte: int) -> str:
    """How Go's JSON scanner names an offending byte, e.g. ``'x'``, ``'\\n'``, ``'Ã'``."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    # Go quotes the byte as a rune, so the first byte of a UTF-8 sequence shows as Latin-1.
    return "'" + go_quote(chr(byte))[1:-1] + "'"


# ---------------------------------------------------------------------------------------------
# The body


class _NumberLiteral(float):
    """A JSON number written with a fraction or exponent; keeps its text for Go's messages."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> _NumberLiteral:
        number = super().__new__(cls, text)
        number.text = text
        return number


class _NotGoJson(ValueError):
    """Python's json accepted something Go's does not (NaN, Infinity)."""


def _reject_constant(name: str) -> Any:
    raise _NotGoJson(name)


_GO_WHITESPACE = " \t\r\n"
# Deepest nesting of arrays and objects a body may have. Go allows 10000, but herd's own code walks
# schemas and tool parameters recursively; no legitimate request comes near this.
MAX_JSON_DEPTH = 128
EXCEEDED_MAX_DEPTH = "exceeded max depth"
# Bodies beyond this get a close message instead of Go's exact one, so that naming the error in a
# huge malformed body cannot hold the event loop.
_EXACT_SYNTAX_ERROR_LIMIT = 64 * 1024


def parse_json_body(body: bytes) -> Any:
    """The first JSON value of a request body, or :class:`ApiError` 400 with Go's message.

    As Go's ``json.Decoder``: whitespace only is ``missing request body``, bytes after the first
    value are ignored, invalid UTF-8 inside strings becomes U+FFFD.
    """
    text = body.decode("utf-8", "replace").lstrip(_GO_WHITESPACE)
    if not text:
        raise ApiError(400, MISSING_BODY)
    decoder = json.JSONDecoder(parse_float=_NumberLiteral, parse_constant=_reject_constant)
    try:
        value, _ = decoder.raw_decode(text)
    except (json.JSONDecodeError, _NotGoJson) as exc:
        raise ApiError(400, _syntax_error_message(body, exc)) from None
    except RecursionError:
        raise ApiError(400, EXCEEDED_MAX_DEPTH) from None
    # Counting brackets is fast; only a body with enough of them can nest that deep.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH:
        raise ApiError(400, EXCEEDED_MAX_DEPTH)
    # A \uD800-style escape yields a lone surrogate; Go decodes it to U+FFFD.
    if b"\\ud" in body or b"\\uD" in body:
        value = _replace_lone_surrogates(value)
    return value


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed value (a scalar is 0), without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _syntax_error_message(body: bytes, exc: Exception) -> str:
    if len(body) <= _EXACT_SYNTAX_ERROR_LIMIT:
        message = go_json_syntax_error(body)
        if message is not None:
            return message
    return _close_syntax_error_message(body, exc)


def _close_syntax_error_message(body: bytes, exc: Exception) -> str:
    """A Go-style message from Python's own error, for bodies too big to scan again."""
    if not isinstance(exc, json.JSONDecodeError):
        return "invalid character 'N' looking for beginning of value"
    if exc.msg.startswith("Unterminated") or exc.pos >= len(exc.doc):
        return UNEXPECTED_EOF
    byte = exc.doc[exc.pos].encode("utf-8", "replace")[0]
    context = {
        "Expecting value": "looking for beginning of value",
        "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
        "Expecting ':' delimiter": "after object key",
        "Expecting ',' delimiter": "after object key:value pair",
        "Invalid control character at": "in string literal",
        "Invalid \\escape": "in string escape code",
        "Invalid \\uXXXX escape": "in \\u hexadecimal character escape",
    }.get(exc.msg, "looking for beginning of value")
    return f"invalid character {_quote_byte(byte)} {context}"


def _replace_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# Go's JSON scanner, for the error message only

_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]*')
_DIGITS = re.compile(rb"[0-9]*")
_WHITESPACE_RUN = re.compile(rb"[ \t\r\n]*")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = frozenset(b'bfnrt\\/"')
_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}
# encoding/json refuses to nest deeper than this.
_MAX_NESTING_DEPTH = 10000


class _SyntaxError(Exception):
    def __init__(self, message: str):
        self.message = message


def _invalid(byte: int, context: str) -> _SyntaxError:
    return _SyntaxError(f"invalid character {_quote_byte(byte)} {context}")


def go_json_syntax_error(data: bytes) -> str | None:
    """The error ``json.Decoder`` reports for the first value of ``data``; None if it is fine.

    An iterative port of encoding/json's scanner states: strings, numbers and whitespace are
    skipped with regular expressions, so the work is per token rather than per byte.
    """
    try:
        _scan_first_value(data)
    except _SyntaxError as exc:
        return exc.message
    return None


def _scan_first_value(data: bytes) -> None:
    end = len(data)
    stack: list[int] = []  # ord("{") or ord("[") of each open container
    i = _WHITESPACE_RUN.match(data, 0).end()
    if i >= end:
        raise _SyntaxError(UNEXPECTED_EOF)
    expecting_value = True
    while True:
        if expecting_value:
            if i >= end:
                raise _SyntaxError(UNEXPECTED_EOF)
            byte = data[i]
            if byte in (0x7B, 0x5B):  # { [
                stack.append(byte)
                if len(stack) > _MAX_NESTING_DEPTH:
                    raise _invalid(byte, "exceeded max depth")
                i = _WHITESPACE_RUN.match(data, i + 1).end()
                if i >= end:
                    raise _SyntaxError(UNEXPECTED_EOF)
                closer = 0x7D if byte == 0x7B else 0x5D
                if data[i] == closer:
                    stack.pop()
                    i += 1
                    expecting_value = False
                elif byte == 0x7B:
                    i = _scan_key(data, i)
                continue
            if byte == 0x22:
                i = _scan_string(data, i)
            elif byte == 0x2D or 0x30 <= byte <= 0x39:
                i = _scan_number(data, i)
            elif byte in _LITERALS:
                i = _scan_literal(data, i, _LITERALS[byte])
            else:
                raise _invalid(byte, "looking for beginning of value")
            expecting_value = False
            continue
        if not stack:
            return
        i = _WHITESPACE_RUN.match(data, i).end()
        if i >= end:
            raise _SyntaxError(UNEXPECTED_EOF)
        byte = data[i]
        if stack[-1] == 0x7B:
            if byte == 0x2C:  # ,
                i = _WHITESPACE_RUN.match(data, i + 1).end()
                i = _scan_key(data, i)
                expecting_value = True
            elif byte == 0x7D:
                stack.pop()
                i += 1
            else:
                raise _invalid(byte, "after object key:value pair")
        else:
            if byte == 0x2C:
                i = _WHITESPACE_RUN.match(data, i + 1).end()
                expecting_value = True
            elif byte == 0x5D:
                stack.pop()
                i += 1
            else:
                raise _invalid(byte, "after array element")


def _scan_key(data: bytes, i: int) -> int:
    """Scans ``"key" :`` and the whitespace after it; returns where the value starts."""
    if i >= len(data):
        raise _SyntaxError(UNEXPECTED_EOF)
    if data[i] != 0x22:
        raise _invalid(data[i], "looking for beginning of object key string")
    i = _WHITESPACE_RUN.match(data, _scan_string(data, i)).end()
    if i >= len(data):
        raise _SyntaxError(UNEXPECTED_EOF)
    if data[i] != 0x3A:
        raise _invalid(data[i], "after object key")
    return _WHITESPACE_RUN.match(data, i + 1).end()


def _scan_string(data: bytes, i: int) -> int:
    end = len(data)
    i += 1
    while True:
        i = _STRING_RUN.match(data, i).end()
        if i >= end:
            raise _SyntaxError(UNEXPECTED_EOF)
        byte = data[i]
        if byte == 0x22:
            return i + 1
        if byte != 0x5C:
            raise _invalid(byte, "in string literal")
        i += 1
        if i >= end:
            raise _SyntaxError(UNEXPECTED_EOF)
        escape = data[i]
        if escape in _SIMPLE_ESCAPES:
            i += 1
        elif escape == 0x75:  # u
            for offset in range(1, 5):
                if i + offset >= end:
                    raise _SyntaxError(UNEXPECTED_EOF)
                if data[i + offset] not in _HEX:
                    raise _invalid(data[i + offset], "in \\u hexadecimal character escape")
            i += 5
        else:
            raise _invalid(escape, "in string escape code")


def _scan_number(data: bytes, i: int) -> int:
    end = len(data)
    if data[i] == 0x2D:
        i += 1
        if i >= end:
            raise _SyntaxError(UNEXPECTED_EOF)
        if not 0x30 <= data[i] <= 0x39:
            raise _invalid(data[i], "in numeric literal")
    i = i + 1 if data[i] == 0x30 else _DIGITS.match(data, i).end()
    if i < end and data[i] == 0x2E:  # .
        i += 1
        if i >= end:
            raise _SyntaxError(UNEXPECTED_EOF)
        if not 0x30 <= data[i] <= 0x39:
            raise _invalid(data[i], "after decimal point in numeric literal")
        i = _DIGITS.match(data, i).end()
    if i < end and data[i] in (0x65, 0x45):  # e E
        i += 1
        if i < end and data[i] in (0x2B, 0x2D):
            i += 1
        if i >= end:
            raise _SyntaxError(UNEXPECTED_EOF)
        if not 0x30 <= data[i] <= 0x39:
            raise _invalid(data[i], "in exponent of numeric literal")
        i = _DIGITS.match(data, i).end()
    return i


def _scan_literal(data: bytes, i: int, literal: bytes) -> int:
    for offset in range(1, len(literal)):
        if i + offset >= len(data):
            raise _SyntaxError(UNEXPECTED_EOF)
        if data[i + offset] != literal[offset]:
            expected = chr(literal[offset])
            raise _invalid(data[i + offset], f"in literal {literal.decode()} (expecting '{expected}')")
    return i + len(literal)


# ---------------------------------------------------------------------------------------------
# Go struct decoding


@dataclass(frozen=True)
class _TypeMismatch:
    """encoding/json's UnmarshalTypeError."""

    value: str  # "string", "number", "number 1.5", "bool", "array", "object"
    go_type: str
    struct: str = ""
    field: str = ""

    def message(self) -> str:
        if self.struct or self.field:
            return f"json: cannot unmarshal {self.value} into Go struct field {self.struct}.{self.field} of type {self.go_type}"
        return f"json: cannot unmarshal {self.value} into Go value of type {self.go_type}"


_DecodeError = _TypeMismatch | str


class _Immediate(Exception):
    """An error Go returns at once (from a custom UnmarshalJSON) instead of after the body."""

    def __init__(self, error: _DecodeError):
        self.error = error


class _Decoding:
    """One decode's state: the first mismatch, kept while the rest of the body is read."""

    def __init__(self) -> None:
        self.saved: _DecodeError | None = None

    def save(self, error: _DecodeError) -> None:
        if self.saved is None:
            self.saved = error

    def mismatch(self, value: Any, go_type: str, struct: str, path: tuple[str, ...]) -> None:
        self.save(_TypeMismatch(json_kind(value), go_type, struct, ".".join(path)))


def json_kind(value: Any) -> str:
    """How Go's errors name a JSON value's kind."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def _error_message(error: _DecodeError) -> str:
    return error.message() if isinstance(error, _TypeMismatch) else error


class GoType:
    """A Go type a JSON value is decoded into. ``decode`` never sees ``None`` (Go's no-op).

    ``schema`` describes what it accepts as JSON Schema, for /openapi.json: named structs are put
    into ``components`` and referenced.
    """

    go_type: str = ""
    zero: Any = None

    def decode(self, value: Any, state: _Decoding, struct: str, path: tuple[str, ...]) -> Any:
        raise NotImplementedError

    def schema(self, components: dict[str, dict]) -> dict:
        raise NotImplementedError


_JSON_TYPES = {str: "string", bool: "boolean"}


class _Scalar(GoType):
    def __init__(self, go_type: str, python_type: type, zero: Any):
        self.go_type, self.python_type, self.zero = go_type, python_type, zero

    def decode(self, value, state, struct, path):
        if isinstance(value, self.python_type):
            return value
        state.mismatch(value, self.go_type, struct, path)
        return self.zero

    def schema(self, components):
        return {"type": _JSON_TYPES[self.python_type]}


class _Int(GoType):
    """A Go integer type: an integer literal in range; ``1.5`` or ``1e3`` is a mismatch, as in Go."""

    zero = 0

    def __init__(self, go_type: str = "int", low: int = _INT64_MIN, high: int = _INT64_MAX):
        self.go_type, self.low, self.high = go_type, low, high

    def decode(self, value, state, struct, path):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            state.mismatch(value, self.go_type, struct, path)
            return 0
        if isinstance(value, float) or not self.low <= value <= self.high:
            text = value.text if isinstance(value, _NumberLiteral) else repr(value)
            state.save(_TypeMismatch(f"number {text}", self.go_type, struct, ".".join(path)))
            return 0
        return value

    def schema(self, components):
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


class _Anything(GoType):
    """``any`` or ``json.RawMessage``: every value fits."""

    def decode(self, value, state, struct, path):
        return value

    def schema(self, components):
        return {}


class _Object(GoType):
    """A JSON object kept as a dict (Go maps and structs the gateway passes on whole)."""

    def __init__(self, go_type: str, values: dict | None = None):
        self.go_type = go_type
        self._values = values  # the schema of every value, when the map's values have one type

    def decode(self, value, state, struct, path):
        if isinstance(value, dict):
            return value
        state.mismatch(value, self.go_type, struct, path)
        return None

    def schema(self, components):
        return {"type": "object"} if self._values is None else {"type": "object", "additionalProperties": self._values}


class _Slice(GoType):
    def __init__(self, element: GoType, go_type: str):
        self.element, self.go_type = element, go_type

    def decode(self, value, state, struct, path):
        if not isinstance(value, list):
            state.mismatch(value, self.go_type, struct, path)
            return None
        element = self.element
        return [element.zero if item is None else element.decode(item, state, struct, path) for item in value]

    def schema(self, components):
        return {"type": "array", "items": self.element.schema(components)}


class GoStruct(GoType):
    """A Go struct: JSON keys matched to fields exactly, else case-insensitively; others ignored."""

    def __init__(self, name: str, go_type: str, fields: Mapping[str, GoType]):
        self.name, self.go_type, self.fields = name, go_type, dict(fields)
        self._folded = {key.lower(): key for key in fields}

    @property
    def zero(self) -> dict:
        return {}

    def decode(self, value, state, struct, path):
        if not isinstance(value, dict):
            state.mismatch(value, self.go_type, struct, path)
            return {}
        decoded: dict[str, Any] = {}
        for key, item in value.items():
            name = key if key in self.fields else self._folded.get(key.lower())
            if name is None:
                continue
            decoded[name] = None if item is None else self.fields[name].decode(item, state, self.name, path + (name,))
        return decoded

    def schema(self, components):
        if not self.name:  # an anonymous struct is written out where it is used
            return self.object_schema(components)
        if self.go_type not in components:
            components[self.go_type] = {}  # taken before the fields, as a struct may hold itself
            components[self.go_type] = self.object_schema(components)
        return {"$ref": f"#/components/schemas/{self.go_type}"}

    def object_schema(self, components: dict[str, dict]) -> dict:
        """Its fields; keys also match case-insensitively and unknown ones are ignored, as in Go."""
        return {"type": "object", "properties": {key: field.schema(components) for key, field in self.fields.items()}}


class _Unmarshaler(GoType):
    """A struct with its own UnmarshalJSON that decodes an alias of itself (``api.Message``).

    Its errors surface at once, with the outer struct and field path put in front, as
    encoding/json's ``addErrorContext`` does.
    """

    def __init__(self, inner: GoStruct):
        self.inner, self.go_type = inner, inner.go_type

    @property
    def zero(self) -> dict:
        return {}

    def decode(self, value, state, struct, path):
        if not isinstance(value, dict):
            raise _Immediate(_TypeMismatch(json_kind(value), self.go_type, struct, ".".join(path)))
        inner_state = _Decoding()
        decoded = self.inner.decode(value, inner_state, self.inner.name, ())
        error = inner_state.saved
        if isinstance(error, _TypeMismatch):
            raise _Immediate(_TypeMismatch(error.value, error.go_type, struct, ".".join(path + (error.field,))))
        if error is not None:
            raise _Immediate(error)
        return decoded

    def schema(self, components):
        # Its Go name is the alias's; the fields are the message's.
        return self.inner.object_schema(components)


class _Custom(GoType):
    """A type whose UnmarshalJSON is a function of the parsed value; errors surface at once."""

    def __init__(self, parse: Callable[[Any], Any], schema: dict):
        self.parse = parse
        self._schema = schema

    def decode(self, value, state, struct, path):
        try:
            return self.parse(value)
        except ValueError as exc:
            raise _Immediate(str(exc)) from None

    def schema(self, components):
        return self._schema


_BYTE = _Int("uint8", 0, 255)


class _Bytes(GoType):
    """``[]byte`` (``api.ImageData``): a base64 string, or an array of bytes."""

    zero = b""

    def __init__(self, go_type: str):
        self.go_type = go_type

    def decode(self, value, state, struct, path):
        if isinstance(value, str):
            try:
                return decode_base64(value)
            except ValueError as exc:
                state.save(str(exc))
                return b""
        if isinstance(value, list):
            return bytes(0 if item is None else _BYTE.decode(item, state, struct, path) for item in value)
        state.mismatch(value, self.go_type, struct, path)
        return b""

    def schema(self, components):
        return {
            "oneOf": [
                {"type": "string", "contentEncoding": "base64"},
                {"type": "array", "items": _BYTE.schema(components)},
            ]
        }


def decode_request(document: Any, struct: GoStruct) -> dict[str, Any]:
    """The fields of ``struct`` found in a parsed body; :class:`ApiError` 400 with Go's message.

    A field sent as ``null`` or left out is absent from the result.
    """
    if document is None:
        return {}
    state = _Decoding()
    if not isinstance(document, dict):
        raise ApiError(400, _TypeMismatch(json_kind(document), struct.go_type).message())
    try:
        decoded = struct.decode(document, state, struct.name, ())
    except _Immediate as exc:
        raise ApiError(400, _error_message(exc.error)) from None
    if state.saved is not None:
        raise ApiError(400, _error_message(state.saved))
    return {key: value for key, value in decoded.items() if value is not None}


# ---------------------------------------------------------------------------------------------
# Field types with their own rules


_BASE64_ALPHABET_MISS = re.compile(r"[^A-Za-z0-9+/=]")


def decode_base64(text: str) -> bytes:
    """Standard padded base64 as Go's ``[]byte`` fields read it (line breaks skipped)."""
    cleaned = text.replace("\r", "").replace("\n", "") if ("\n" in text or "\r" in text) else text
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        miss = _BASE64_ALPHABET_MISS.search(cleaned)
        offset = miss.start() if miss else len(cleaned) - len(cleaned) % 4
        raise ValueError(f"illegal base64 data at input byte {offset}") from None


def _go_type_name(value: Any) -> str:
    """``reflect.TypeOf`` of a value ``json.Unmarshal`` put into an ``any``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def keep_alive_ns(value: Any) -> int:
    """``keep_alive`` in nanoseconds, as ``api.Duration.UnmarshalJSON`` reads it.

    A number is seconds (fractions allowed), a string a Go duration; anything negative means
    forever and becomes :data:`KEEP_ALIVE_FOREVER_NS`.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            return KEEP_ALIVE_FOREVER_NS
        # Past int64 Go's conversion is undefined; the longest duration is what was meant.
        if value >= _INT64_MAX / 1e9:
            return _INT64_MAX
        return int(float(value) * 1e9)
    if isinstance(value, str):
        duration = parse_go_duration(value)
        return KEEP_ALIVE_FOREVER_NS if duration < 0 else duration
    raise ValueError(f"Unsupported type: '{_go_type_name(value)}'")


_THINK_LEVELS = ("high", "medium", "low", "max")


def think_value(value: Any) -> bool | str:
    """``think``: a bool or one of the levels, as ``api.ThinkValue.UnmarshalJSON`` accepts."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value not in _THINK_LEVELS:
            raise ValueError(
                f'invalid think value: {go_quote(value)} (must be "high", "medium", "low", "max", true, or false)'
            )
        return value
    raise ValueError('think must be a boolean or string ("high", "medium", "low", "max", true, or false)')


def _arguments(value: Any) -> dict:
    """Tool call arguments: a JSON object, key order kept."""
    if isinstance(value, dict):
        return value
    raise ValueError(_TypeMismatch(json_kind(value), "map[string]interface {}").message())


class _Options(_Object):
    """``options`` (and a Modelfile's ``parameters``): a map whose known keys have types of their own."""

    _KIND_SCHEMAS = {
        "integer": {"type": "integer"},
        "float32": {"type": "number"},
        "boolean": {"type": "boolean"},
        "array": {"type": "array", "items": {"type": "string"}},
    }

    def schema(self, components):
        return {"type": "object", "properties": {key: self._KIND_SCHEMAS[kind] for key, (kind, _) in _OPTIONS.items()}}


# ---------------------------------------------------------------------------------------------
# The request structs of api/types.go, as far as the gateway reads them

STRING = _Scalar("string", str, "")
BOOL = _Scalar("bool", bool, False)
INT = _Int()
ANY = _Anything()
OPTIONS = _Options("map[string]interface {}")
KEEP_ALIVE = _Custom(
    keep_alive_ns,
    {"type": ["string", "number"], "description": "a Go duration (\"5m\") or seconds; negative keeps the model loaded"},
)
THINK = _Custom(think_value, {"oneOf": [{"type": "boolean"}, {"type": "string", "enum": list(_THINK_LEVELS)}]})
IMAGES = _Slice(_Bytes("api.ImageData"), "[]api.ImageData")

_TOOL_CALL = GoStruct(
    "ToolCall",
    "api.ToolCall",
    {
        "id": STRING,
        "function": GoStruct(
            "ToolCallFunction",
            "api.ToolCallFunction",
            {"index": INT, "name": STRING, "arguments": _Custom(_arguments, {"type": "object"})},
        ),
    },
)

MESSAGE = _Unmarshaler(
    GoStruct(
        "Alias",
        "api.Alias",
        {
            "role": STRING,
            "content": STRING,
            "thinking": STRING,
            "images": IMAGES,
            "tool_calls": _Slice(_TOOL_CALL, "[]api.ToolCall"),
            "tool_name": STRING,
            "tool_call_id": STRING,
        },
    ),
)

TOOLS = _Slice(
    GoStruct(
        "Tool",
        "api.Tool",
        {
            "type": STRING,
            "items": ANY,
            "function": GoStruct(
                "ToolFunction",
                "api.ToolFunction",
                {"name": STRING, "description": STRING, "parameters": _Object("api.ToolFunctionParameters")},
            ),
        },
    ),
    "api.Tools",
)

GENERATE_REQUEST = GoStruct(
    "GenerateRequest",
    "api.GenerateRequest",
    {
        "model": STRING,
        "prompt": STRING,
        "suffix": STRING,
        "system": STRING,
        "template": STRING,
        # Tokens go to core as int32; a number past that is refused as Go refuses one past int.
        "context": _Slice(_Int("int", _INT32_MIN, _INT32_MAX), "[]int"),
        "stream": BOOL,
        "raw": BOOL,
        "format": ANY,
        "keep_alive": KEEP_ALIVE,
        "images": IMAGES,
        "options": OPTIONS,
        "think": THINK,
        "truncate": BOOL,
        "shift": BOOL,
        "_debug_render_only": BOOL,
        "logprobs": BOOL,
        "top_logprobs": INT,
    },
)

CHAT_REQUEST = GoStruct(
    "ChatRequest",
    "api.ChatRequest",
    {
        "model": STRING,
        "messages": _Slice(MESSAGE, "[]api.Message"),
        "stream": BOOL,
        "format": ANY,
        "keep_alive": KEEP_ALIVE,
        "tools": TOOLS,
        "options": OPTIONS,
        "think": THINK,
        "truncate": BOOL,
        "shift": BOOL,
        "_debug_render_only": BOOL,
        "logprobs": BOOL,
        "top_logprobs": INT,
    },
)

EMBED_REQUEST = GoStruct(
    "EmbedRequest",
    "api.EmbedRequest",
    {
        "model": STRING,
        "input": ANY,
        "keep_alive": KEEP_ALIVE,
        "truncate": BOOL,
        "dimensions": INT,
        "options": OPTIONS,
    },
)

EMBEDDING_REQUEST = GoStruct(
    "EmbeddingRequest",
    "api.EmbeddingRequest",
    {"model": STRING, "prompt": STRING, "keep_alive": KEEP_ALIVE, "options": OPTIONS},
)

SHOW_REQUEST = GoStruct(
    "ShowRequest",
    "api.ShowRequest",
    {
        "model": STRING,
        "system": STRING,
        "template": STRING,
        "verbose": BOOL,
        "options": OPTIONS,
        "name": STRING,
    },
)


# ---------------------------------------------------------------------------------------------
# options (api.Options.FromMap)

# Option name → (Go kind in the error message, proto field or None when herd has no use for it).
_OPTIONS: dict[str, tuple[str, str | None]] = {
    "num_keep": ("integer", "num_keep"),
    "seed": ("integer", "seed"),
    "num_predict": ("integer", "num_predict"),
    "top_k": ("integer", "top_k"),
    "top_p": ("float32", "top_p"),
    "min_p": ("float32", "min_p"),
    "typical_p": ("float32", "typical_p"),
    "repeat_last_n": ("integer", "repeat_last_n"),
    "temperature": ("float32", "temperature"),
    "repeat_penalty": ("float32", "repeat_penalty"),
    "presence_penalty": ("float32", "presence_penalty"),
    "frequency_penalty": ("float32", "frequency_penalty"),
    "stop": ("array", "stop"),
    "num_ctx": ("integer", "num_ctx"),
    "num_batch": ("integer", "num_batch"),
    "num_gpu": ("integer", "num_gpu"),
    "main_gpu": ("integer", "main_gpu"),
    "use_mmap": ("boolean", "use_mmap"),
    "num_thread": ("integer", "num_thread"),
    # Valid in Ollama (speculative decoding); herd has no draft models, so it is checked and dropped.
    "draft_num_predict": ("integer", None),
}
_INT64_OPTIONS = frozenset({"seed"})


def _option_error(key: str, kind: str) -> ApiError:
    # FromMap's errors reach the client through the scheduler's error path: a 500.
    return ApiError(500, f"option {go_quote(key)} must be of type {kind}")


def _truncated_int(value: float | int, low: int, high: int) -> int:
    """Go's ``int(float64)``: toward zero; clamped to the proto field where Go would overflow."""
    if value >= high:
        return high
    if value <= low:
        return low
    return int(value)


def options_from_map(options: Mapping[str, Any] | None) -> common_pb2.Options:
    """``options`` as :class:`herd.v1.Options`, with ``FromMap``'s checks and messages.

    Numbers for integer options are truncated; unknown names are logged and ignored; a value of
    the wrong type is :class:`ApiError` 500 ``option "x" must be of type integer``.
    """
    pb = common_pb2.Options()
    for key, value in (options or {}).items():
        spec = _OPTIONS.get(key)
        if spec is None:
            log.warning("invalid_option", option=key)
            continue
        if value is None:
            continue
        kind, field = spec
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _option_error(key, kind)
            low, high = (_INT64_MIN, _INT64_MAX) if key in _INT64_OPTIONS else (_INT32_MIN, _INT32_MAX)
            converted: Any = _truncated_int(value, low, high)
        elif kind == "float32":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _option_error(key, kind)
            # float32 rounds as Go's SetFloat does; past float32's range it is infinite there too.
            converted = float(value) if abs(value) < _FLOAT64_MAX else math.copysign(math.inf, value)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise _option_error(key, kind)
            converted = value
        else:
            if not isinstance(value, list):
                raise _option_error(key, kind)
            if not all(isinstance(item, str) for item in value):
                # Go's wording, "of an array", kept as clients may match on it.
                raise ApiError(500, f"option {go_quote(key)} must be of an array of strings")
            pb.stop.values.extend(value)
            pb.stop.SetInParent()
            continue
        if field is not None:
            setattr(pb, field, converted)
    return pb

COPY_REQUEST = GoStruct("CopyRequest", "api.CopyRequest", {"source": STRING, "destination": STRING})

DELETE_REQUEST = GoStruct("DeleteRequest", "api.DeleteRequest", {"model": STRING, "name": STRING})

_STRING_MAP = _Object("map[string]string", STRING.schema({}))

CREATE_REQUEST = GoStruct(
    "CreateRequest",
    "api.CreateRequest",
    {
        "model": STRING,
        "name": STRING,
        "stream": BOOL,
        "quantize": STRING,
        "quantization": STRING,
        "from": STRING,
        "remote_host": STRING,
        "files": _STRING_MAP,
        "adapters": _STRING_MAP,
        "template": STRING,
        "license": ANY,
        "system": STRING,
        "parameters": OPTIONS,
        "messages": _Slice(MESSAGE, "[]api.Message"),
        "info": _Object("map[string]interface {}"),
    },
)

PULL_REQUEST = GoStruct(
    "PullRequest",
    "api.PullRequest",
    {"model": STRING, "name": STRING, "insecure": BOOL, "stream": BOOL, "username": STRING, "password": STRING},
)
