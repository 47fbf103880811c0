"""The data Go templates see: Ollama's template values, with Go's field names and Go's printing.

Templates written for Ollama read these by Go field name (``.Role``, ``.ToolCalls``,
``.Function.Arguments``), so the classes keep those names. Where Ollama gives a type a
``String()`` method, so that ``{{ .Function.Arguments }}`` prints JSON rather than Go's
``map[k:v]``, the class here has a ``__str__`` that prints the same JSON, byte for byte:
Go's ``encoding/json`` sorts map keys, escapes ``<``, ``>`` and ``&``, and spells numbers
its own way, so :func:`marshal_json` does too.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from herd.gofmt import exponent_form, fixed_form, go_float, shortest_decimal

# Deeper JSON than this is hostile input, not a tool schema; refusing it keeps the
# recursive encoder far from Python's recursion limit.
JSON_MAX_DEPTH = 200

_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    # Go escapes these so that JSON is safe inside HTML and JavaScript.
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_JSON_NEEDS_ESCAPE = re.compile(r'["\\<>&\u2028\u2029\x00-\x1f\ud800-\udfff]')


def _json_escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _JSON_ESCAPES:
        return _JSON_ESCAPES[char]
    if "\ud800" <= char <= "\udfff":
        # Go replaces invalid UTF-8 with U+FFFD; a lone surrogate is Python's version of it.
        return "\ufffd"
    return f"\\u{ord(char):04x}"


def _quote_json(text: str) -> str:
    return '"' + _JSON_NEEDS_ESCAPE.sub(_json_escape_char, text) + '"'


def _json_float(number: float) -> str:
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"json: unsupported value: {go_float(number)}")
    digits, point = shortest_decimal(number)
    negative = math.copysign(1.0, number) < 0 and number != 0
    if digits and (abs(number) < 1e-6 or abs(number) >= 1e21):
        # Go writes e-7, not e-07, in JSON.
        return re.sub(r"e([+-])0(\d)$", r"e\1\2", exponent_form(digits, point, negative))
    return fixed_form(digits, point, negative)


def _json_int(number: int) -> str:
    # JSON numbers reach Ollama's templates as Go float64s; past 2**53 they lose digits there.
    if abs(number) < 2**53:
        return str(number)
    try:
        return _json_float(float(number))
    except OverflowError:
        raise ValueError("json: number out of range") from None


def marshal_json(value: Any) -> str:
    """``value`` as Go's ``json.Marshal`` writes it.

    Mappings are Go maps (keys sorted); objects with ``go_json_fields()`` are Go structs
    (fields in declaration order); ``go_json_value()`` stands in for a custom marshaller.
    Raises ValueError where Go's marshaller fails (NaN, infinities, unknown types).
    """
    parts: list[str] = []
    _encode(value, parts, 0)
    return "".join(parts)


def _encode(value: Any, out: list[str], depth: int) -> None:
    if depth > JSON_MAX_DEPTH:
        raise ValueError("json: value nested too deeply")
    if hasattr(value, "go_json_value"):
        value = value.go_json_value()
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_quote_json(value))
    elif isinstance(value, int):
        out.append(_json_int(value))
    elif isinstance(value, float):
        out.append(_json_float(value))
    elif isinstance(value, (bytes, bytearray)):
        out.append('"' + base64.b64encode(value).decode("ascii") + '"')
    elif hasattr(value, "go_json_fields"):
        _encode_members(value.go_json_fields(), out, depth)
    elif isinstance(value, Mapping):
        members = [(_map_key(key), item) for key, item in value.items()]
        _encode_members(sorted(members, key=lambda member: member[0]), out, depth)
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    else:
        raise ValueError(f"json: unsupported type: {type(value).__name__}")


def _map_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise ValueError(f"json: unsupported map key type: {type(key).__name__}")


def _encode_members(members: Iterable[tuple[str, Any]], out: list[str], depth: int) -> None:
    out.append("{")
    for index, (key, item) in enumerate(members):
        if index:
            out.append(",")
        out.append(_quote_json(key))
        out.append(":")
        _encode(item, out, depth + 1)
    out.append("}")


def _json_or_empty(value: Any) -> str:
    # Ollama's String() methods ignore json.Marshal's error and print the empty result.
    try:
        return marshal_json(value)
    except ValueError:
        return ""


def to_plain(value: Any) -> Any:
    """``value`` as plain dicts and lists, shaped like its JSON (for Jinja templates)."""
    if hasattr(value, "go_json_value"):
        return to_plain(value.go_json_value())
    if hasattr(value, "go_json_fields"):
        return {key: to_plain(item) for key, item in value.go_json_fields()}
    if isinstance(value, Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    return value


class JsonMap(dict[str, Any]):
    """A map that prints as JSON, as Ollama's template argument and property maps do.

    ``{{ .Function.Arguments }}`` prints ``{"city":"Paris"}``, and ``range`` still walks the
    keys (sorted, as Go ranges over a map).
    """

    def __str__(self) -> str:
        return _json_or_empty(self)


class ToolList(tuple["Tool", ...]):
    """The ``.Tools`` list; ``{{ .Tools }}`` prints the JSON array (``null`` when empty, as Go's nil slice)."""

    def __str__(self) -> str:
        return _json_or_empty(tuple(self) or None)


class PropertyType(tuple[str, ...]):
    """A JSON-schema ``type``: one name, or several (``["string", "null"]``)."""

    def __str__(self) -> str:
        if len(self) == 1:
            return self[0]
        return "[" + " ".join(self) + "]" if self else ""

    def go_json_value(self) -> str | list[str]:
        return self[0] if len(self) == 1 else list(self)

    @classmethod
    def from_json(cls, value: Any) -> PropertyType:
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls((value,))
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            return cls(value)
        raise ValueError("tool property type must be a string or a list of strings")


_TYPESCRIPT_TYPES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "array": "any[]",
    "object": "Record<string, any>",
    "null": "null",
}


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be an object")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{what} must be a list of strings")
    return tuple(value)


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    return value


@dataclass(frozen=True)
class ToolProperty:
    """One JSON-schema property of a tool's parameters, with the fields Ollama keeps."""

    AnyOf: tuple[ToolProperty, ...] = ()
    Type: PropertyType = field(default_factory=PropertyType)
    Items: Any = None
    Description: str = ""
    Enum: tuple[Any, ...] = ()
    Properties: JsonMap | None = None
    Required: tuple[str, ...] = ()

    def go_json_fields(self) -> list[tuple[str, Any]]:
        members: list[tuple[str, Any]] = []
        if self.AnyOf:
            members.append(("anyOf", self.AnyOf))
        if self.Type:
            members.append(("type", self.Type))
        if self.Items is not None:
            members.append(("items", self.Items))
        if self.Description:
            members.append(("description", self.Description))
        if self.Enum:
            members.append(("enum", self.Enum))
        if self.Properties is not None:
            members.append(("properties", self.Properties))
        if self.Required:
            members.append(("required", self.Required))
        return members

    def __str__(self) -> str:
        return _json_or_empty(self)

    def typescript_type(self) -> str:
        """The TypeScript spelling of this property's type, as Ollama's ``toTypeScriptType``."""
        if self.AnyOf:
            return " | ".join(option.typescript_type() for option in self.AnyOf)
        if not self.Type:
            return "any"
        return " | ".join(_TYPESCRIPT_TYPES.get(name, "any") for name in self.Type)

    @classmethod
    def from_dict(cls, data: Any) -> ToolProperty:
        data = _object(data, "tool property")
        any_of = data.get("anyOf")
        if any_of is not None and not isinstance(any_of, list):
            raise ValueError("tool property anyOf must be a list")
        enum = data.get("enum")
        if enum is not None and not isinstance(enum, list):
            raise ValueError("tool property enum must be a list")
        return cls(
            AnyOf=tuple(cls.from_dict(option) for option in any_of or ()),
            Type=PropertyType.from_json(data.get("type")),
            Items=data.get("items"),
            Description=_text(data.get("description"), "tool property description"),
            Enum=tuple(enum or ()),
            Properties=_properties(data.get("properties")),
            Required=_strings(data.get("required"), "tool property required"),
        )


def _properties(data: Any) -> JsonMap | None:
    if data is None:
        return None
    return JsonMap(
        (name, ToolProperty.from_dict(prop))
        for name, prop in _object(data, "tool properties").items()
    )


@dataclass(frozen=True)
class ToolFunctionParameters:
    """A tool's parameter schema: ``{{ .Function.Parameters.Properties }}`` ranges or prints as JSON."""

    Type: str = ""
    Properties: JsonMap | None = None
    Required: tuple[str, ...] = ()
    Defs: Any = None
    Items: Any = None

    def go_json_fields(self) -> list[tuple[str, Any]]:
        members: list[tuple[str, Any]] = [("type", self.Type)]
        if self.Defs is not None:
            members.append(("$defs", self.Defs))
        if self.Items is not None:
            members.append(("items", self.Items))
        if self.Required:
            members.append(("required", self.Required))
        members.append(("properties", self.Properties))
        return members

    def __str__(self) -> str:
        return _json_or_empty(self)

    @classmethod
    def from_dict(cls, data: Any) -> ToolFunctionParameters:
        if data is None:
            return cls()
        data = _object(data, "tool parameters")
        return cls(
            Type=_text(data.get("type"), "tool parameters type"),
            Properties=_properties(data.get("properties")),
            Required=_strings(data.get("required"), "tool parameters required"),
            Defs=data.get("$defs"),
            Items=data.get("items"),
        )


@dataclass(frozen=True)
class ToolFunction:
    """A tool's function; ``{{ .Function }}`` prints its JSON definition."""

    Name: str
    Description: str = ""
    Parameters: ToolFunctionParameters = field(default_factory=ToolFunctionParameters)

    def go_json_fields(self) -> list[tuple[str, Any]]:
        return [("name", self.Name), ("description", self.Description), ("parameters", self.Parameters)]

    def __str__(self) -> str:
        return _json_or_empty(self)

    @classmethod
    def from_dict(cls, data: Any) -> ToolFunction:
        data = _object(data, "tool function")
        return cls(
            Name=_text(data.get("name"), "tool function name"),
            Description=_text(data.get("description"), "tool function description"),
            Parameters=ToolFunctionParameters.from_dict(data.get("parameters")),
        )


@dataclass(frozen=True)
class Tool:
    """A tool offered to the model; ``{{ . }}`` in ``range .Tools`` prints its JSON."""

    Type: str
    Function: ToolFunction
    Items: Any = None

    def go_json_fields(self) -> list[tuple[str, Any]]:
        members: list[tuple[str, Any]] = [("type", self.Type)]
        if self.Items is not None:
            members.append(("items", self.Items))
        members.append(("function", self.Function))
        return members

    def __str__(self) -> str:
        return _json_or_empty(self)

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI-shaped dict chat templates in Jinja expect."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: Any) -> Tool:
        """From Ollama's JSON: ``{"type": "function", "function": {"name", "description", "parameters"}}``."""
        data = _object(data, "tool")
        return cls(
            Type=_text(data.get("type"), "tool type") or "function",
            Function=ToolFunction.from_dict(data.get("function")),
            Items=data.get("items"),
        )


@dataclass(frozen=True)
class ToolCallFunction:
    """The function half of a tool call; ``{{ .Arguments }}`` prints the arguments as JSON."""

    Name: str
    Arguments: Mapping[str, Any] = field(default_factory=JsonMap)
    Index: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.Arguments, JsonMap):
            object.__setattr__(self, "Arguments", JsonMap(self.Arguments))

    def go_json_fields(self) -> list[tuple[str, Any]]:
        return [("Index", self.Index), ("Name", self.Name), ("Arguments", self.Arguments)]


@dataclass(frozen=True)
class ToolCall:
    """A tool call an assistant message made."""

    Function: ToolCallFunction
    ID: str = ""

    def go_json_fields(self) -> list[tuple[str, Any]]:
        return [("ID", self.ID), ("Function", self.Function)]

    @classmethod
    def from_dict(cls, data: Any) -> ToolCall:
        """From Ollama's JSON: ``{"id"?, "function": {"index"?, "name", "arguments": {...}}}``."""
        data = _object(data, "tool call")
        function = _object(data.get("function"), "tool call function")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            # OpenAI-style clients send the arguments as a JSON string.
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                raise ValueError("tool call arguments must be a JSON object") from None
        index = function.get("index", 0)
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError("tool call index must be an integer")
        return cls(
            Function=ToolCallFunction(
                Name=_text(function.get("name"), "tool call name"),
                Arguments=JsonMap(_object(arguments or {}, "tool call arguments")),
                Index=index,
            ),
            ID=_text(data.get("id"), "tool call id"),
        )


@dataclass(frozen=True)
class Message:
    """One chat message, with the field names Ollama's templates use."""

    Role: str
    Content: str = ""
    Thinking: str = ""
    Images: tuple[bytes, ...] = ()
    ToolCalls: tuple[ToolCall, ...] = ()
    ToolName: str = ""
    ToolCallID: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "Images", tuple(self.Images))
        object.__setattr__(self, "ToolCalls", tuple(self.ToolCalls))

    def go_json_fields(self) -> list[tuple[str, Any]]:
        return [
            ("Role", self.Role),
            ("Content", self.Content),
            ("Thinking", self.Thinking),
            ("Images", self.Images or None),
            ("ToolCalls", self.ToolCalls or None),
            ("ToolName", self.ToolName),
            ("ToolCallID", self.ToolCallID),
        ]

    def to_dict(self) -> dict[str, Any]:
        """The dict chat templates in Jinja expect: role and content, plus tool fields when set."""
        message: dict[str, Any] = {"role": self.Role, "content": self.Content}
        if self.ToolCalls:
            message["tool_calls"] = [
                {
                    **({"id": call.ID} if call.ID else {}),
                    "type": "function",
                    "function": {"name": call.Function.Name, "arguments": dict(call.Function.Arguments)},
                }
                for call in self.ToolCalls
            ]
        if self.ToolName:
            message["name"] = self.ToolName
        if self.ToolCallID:
            message["tool_call_id"] = self.ToolCallID
        return message

    @classmethod
    def from_dict(cls, data: Any) -> Message:
        """From Ollama's JSON: ``{"role", "content", "thinking"?, "images"?, "tool_calls"?, "tool_name"?, "tool_call_id"?}``.

        The role is lower-cased, as Ollama does; images are base64 strings or bytes.
        Raises ValueError on a malformed message.
        """
        data = _object(data, "message")
        tool_calls = data.get("tool_calls") or ()
        if not isinstance(tool_calls, list | tuple):
            raise ValueError("message tool_calls must be a list")
        return cls(
            Role=_text(data.get("role"), "message role").lower(),
            Content=_text(data.get("content"), "message content"),
            Thinking=_text(data.get("thinking"), "message thinking"),
            Images=tuple(_image_bytes(image) for image in data.get("images") or ()),
            ToolCalls=tuple(ToolCall.from_dict(call) for call in tool_calls),
            ToolName=_text(data.get("tool_name"), "message tool_name"),
            ToolCallID=_text(data.get("tool_call_id"), "message tool_call_id"),
        )


def _image_bytes(image: Any) -> bytes:
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if isinstance(image, str):
        try:
            return base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("message image is not valid base64") from None
    raise ValueError("message images must be base64 strings")


@dataclass(frozen=True)
class Values:
    """What one prompt is rendered from: the conversation, the tools, or a fill-in-the-middle pair."""

    messages: Sequence[Message]
    tools: Sequence[Tool] = ()
    prompt: str = ""
    suffix: str = ""
    think: bool = False
    think_level: str = ""
    is_think_set: bool = False
