"""Structured outputs: a JSON Schema, or Ollama's ``format: "json"``, compiled into a llama.cpp GBNF grammar.

The runner hands the grammar to ``llama_sampler_init_grammar(vocab, grammar, "root")``, so every sentence the
model can finish is JSON that validates against the schema. The grammar may allow less than the schema does
(bounded whitespace and digit counts, declared properties in declared order, no escaped surrogate pairs), never
more: a keyword that cannot be enforced exactly raises ``UnsupportedSchema`` instead of being dropped.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import unquote


class UnsupportedSchema(ValueError):
    """A schema herd cannot enforce; str(exc) is shown to the user in a 400 response."""


# Keywords that describe a schema without constraining its values.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"}
)
# Containers of subschemas that are only reached through "$ref".
_DEFINITIONS = frozenset({"$defs", "definitions"})
# Keywords that decide the value on their own: only annotations may sit beside them ("type" beside enum/const).
_COMBINATORS = frozenset({"$ref", "anyOf", "oneOf", "allOf", "enum", "const"})
_INTEGER_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
# The keywords that apply to one type only, also used to guess the type of a schema without "type".
_TYPE_KEYWORDS = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems"}),
    "string": frozenset({"minLength", "maxLength", "format"}),
    "number": _INTEGER_BOUNDS,
}
_SUPPORTED = _COMBINATORS | {"type"} | frozenset().union(*_TYPE_KEYWORDS.values())
_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")

# Unbounded runs are a way for a small model to never finish, so whitespace and digits are counted.
_MAX_DIGITS = 16
# llama.cpp refuses a repetition {m,n} above 2000 (MAX_REPETITION_THRESHOLD).
_MAX_REPETITIONS = 2000

# Rules every grammar may share, by name: (body, the other rules it names). Added on first use.
_PRIMITIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ws": (r'| " " | "\n" [ \t]{0,20}', ()),
    "null": (r'"null" ws', ("ws",)),
    "boolean": (r'( "true" | "false" ) ws', ("ws",)),
    "integral-part": (r'"0" | [1-9] [0-9]{0,15}', ()),
    "integer": (r'"-"? integral-part ws', ("integral-part", "ws")),
    "number": (r'"-"? integral-part ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )? ws', ("integral-part", "ws")),
    "hex": (r"[0-9a-fA-F]", ()),
    "plain-char": (r'[^"\\\x7F\x00-\x1F]', ()),
    # No escaped UTF-16 surrogates: a pair is one character to a JSON parser but two here, and minLength and
    # maxLength count characters. Raw UTF-8 spells every character anyway.
    "char": (
        r'plain-char | "\\" ( ["\\/bfnrt] | "u" ( [0-9a-ce-fA-CE-F] hex{3} | [dD] [0-7] hex{2} ) )',
        ("plain-char", "hex"),
    ),
    "string": (r'"\"" char* "\"" ws', ("char", "ws")),
    "value": (
        r"object | array | string | number | boolean | null",
        ("object", "array", "string", "number", "boolean", "null"),
    ),
    "object": (r'"{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}" ws', ("string", "value", "ws")),
    "array": (r'"[" ws ( value ( "," ws value )* )? "]" ws', ("value", "ws")),
    # RFC 3339 as JSON Schema's formats mean it: real calendar days (leap years included), years 0001-9999.
    "year": (r'[0-9]{3} [1-9] | [0-9]{2} [1-9] "0" | [0-9] [1-9] "00" | [1-9] "000"', ()),
    "leap-year": (
        r'[0-9]{2} ( "0" [48] | [2468] [048] | [13579] [26] ) | ( "0" [48] | [2468] [048] | [13579] [26] ) "00"',
        (),
    ),
    "date": (
        r'year "-" ( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] )'
        r' | ( "0" [469] | "11" ) "-" ( "0" [1-9] | [12] [0-9] | "30" )'
        r' | "02-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) ) | leap-year "-02-29"',
        ("year", "leap-year"),
    ),
    # Fractions of up to 6 digits: what Python's datetime, and so most clients, can parse.
    "time": (
        r'( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )?'
        r' ( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )',
        (),
    ),
    "date-time": (r'date "T" time', ("date", "time")),
    "uuid": (r'hex{8} "-" hex{4} "-" hex{4} "-" hex{4} "-" hex{12}', ("hex",)),
}
_FORMATS = ("date", "time", "date-time", "uuid")


def _literal(text: str) -> str:
    """A GBNF string literal matching exactly `text`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02X}", escaped)
    return f'"{escaped}"'


def _json_literal(value: Any) -> str:
    """A GBNF literal for the compact JSON text of `value`."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise UnsupportedSchema(f"{value!r} is not a JSON value") from exc
    return _literal(text)


def _class_char(char: str) -> str:
    """`char` as it may stand inside a GBNF character class."""
    return f"\\x{ord(char):02X}" if char in '\\]-^"[' or ord(char) < 0x20 or char == "\x7f" else char


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|\{[0-9,]*\}|[a-zA-Z0-9-]+|[()|]')


def _group(expression: str) -> str:
    """`expression` as one term, so that a suffix or a neighbour applies to all of it."""
    depth, terms = 0, 0
    for token in _TOKEN.findall(expression):
        if token == ")":
            depth -= 1
        elif depth == 0 and token == "|":
            terms += 2
        elif depth == 0 and not token.startswith("{"):
            terms += 1
        depth += token == "("
    return expression if terms == 1 else f"( {expression} )"


def _repeat(item: str, least: int, most: int | None) -> str:
    """`item` least to most times (most None: no upper bound); "" when it must not appear."""
    if most == 0:
        return ""
    if (least, most) == (1, 1):
        return item
    item = _group(item)
    if most is None:
        return item + {0: "*", 1: "+"}.get(least, f"{{{least},}}")
    if (least, most) == (0, 1):
        return item + "?"
    return item + (f"{{{least}}}" if least == most else f"{{{least},{most}}}")


def _optional(expression: str) -> str:
    """`expression` or nothing. Not `( ... )?`: llama.cpp refuses a repetition, `?` included, of a group that
    expands into 2000 rules or more, and a long array or object body does."""
    return f"( {expression} | )"


def _sequence(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _rule_name(text: str) -> str:
    """A GBNF rule name ([a-zA-Z0-9-]) that still says where it came from."""
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-") or "x"


def _count(schema: dict, keyword: str, default: int | None) -> int | None:
    """A non-negative count keyword (minItems, maxLength, ...), within what llama.cpp can repeat."""
    value = schema.get(keyword, default)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UnsupportedSchema(f'"{keyword}" must be a non-negative integer, not {value!r}')
    if value > _MAX_REPETITIONS:
        raise UnsupportedSchema(f'"{keyword}" {value} is above {_MAX_REPETITIONS}, the most a grammar can count')
    return value


def _check_order(least: int, most: int | None, low: str, high: str) -> None:
    if most is not None and least > most:
        raise UnsupportedSchema(f'"{low}" {least} is above "{high}" {most}: no value can satisfy the schema')


def _integer_bounds(schema: dict) -> tuple[int | None, int | None]:
    """The smallest and largest integer the bound keywords allow (None: unbounded)."""
    for keyword in _INTEGER_BOUNDS & schema.keys():
        value = schema[keyword]
        finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
        if isinstance(value, bool) or not finite:
            raise UnsupportedSchema(f'"{keyword}" must be a number, not {value!r}')
    lows = [math.ceil(schema["minimum"])] if "minimum" in schema else []
    lows += [math.floor(schema["exclusiveMinimum"]) + 1] if "exclusiveMinimum" in schema else []
    highs = [math.floor(schema["maximum"])] if "maximum" in schema else []
    highs += [math.ceil(schema["exclusiveMaximum"]) - 1] if "exclusiveMaximum" in schema else []
    return max(lows, default=None), min(highs, default=None)


def _digit_range(low: str, high: str) -> str:
    """Digit strings of one length from `low` to `high` inclusive, leading zeros included."""
    if low == high:
        return _literal(low)
    rest = len(low) - 1
    if low[0] == high[0]:
        return f"{_literal(low[0])} {_group(_digit_range(low[1:], high[1:]))}"
    any_rest = "" if rest == 0 else " [0-9]" if rest == 1 else f" [0-9]{{{rest}}}"
    first, last = int(low[0]), int(high[0])
    alternatives = []
    if low[1:] != "0" * rest:  # low's first digit takes only the tails from low[1:] up
        alternatives.append(f"{_literal(low[0])} {_group(_digit_range(low[1:], '9' * rest))}")
        first += 1
    high_alternative = ""
    if high[1:] != "9" * rest:
        high_alternative = f"{_literal(high[0])} {_group(_digit_range('0' * rest, high[1:]))}"
        last -= 1
    if first <= last:
        alternatives.append((_literal(str(first)) if first == last else f"[{first}-{last}]") + any_rest)
    return " | ".join([*alternatives, high_alternative] if high_alternative else alternatives)


def _naturals(low: int, high: int | None) -> str:
    """Decimal numerals without leading zeros from `low` to `high` (None: no bound), of at most _MAX_DIGITS digits
    or as many as `low` has: a bound further out than that is as good as none."""
    digits = len(str(low))
    if high is None or high >= 10 ** max(_MAX_DIGITS, digits):
        longer = f"[1-9] [0-9]{{{digits},{_MAX_DIGITS - 1}}}" if digits < _MAX_DIGITS else ""
        return " | ".join(filter(None, [_naturals(low, 10**digits - 1), longer]))
    alternatives = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        shortest = 0 if digits == 1 else 10 ** (digits - 1)
        alternatives.append(_digit_range(str(max(low, shortest)), str(min(high, 10**digits - 1))))
    return " | ".join(alternatives)


def _integer_range(low: int | None, high: int | None) -> str:
    """Integers from `low` to `high`, either of which may be None (unbounded), followed by whitespace."""
    alternatives = []
    if low is None or low < 0:  # "-" and a magnitude; never "-0"
        smallest = 1 if high is None or high >= 0 else -high
        alternatives.append(f'"-" {_group(_naturals(smallest, None if low is None else -low))}')
    if high is None or high >= 0:
        alternatives.append(_naturals(max(low or 0, 0), high))
    return f"{_group(' | '.join(alternatives))} ws"


def _is_json_type(value: Any, json_type: str) -> bool:
    if json_type == "integer":
        return _is_json_type(value, "number") and (isinstance(value, int) or value.is_integer())
    if json_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    python_type = {"null": type(None), "boolean": bool, "string": str, "array": list, "object": dict}[json_type]
    return isinstance(value, python_type)


class _GrammarBuilder:
    """Walks one schema document and collects the named rules of its grammar.

    Every subschema becomes a rule named after where it sits (``root-address-city``); identical bodies share one
    rule. Each "$ref" target gets one rule of its own, reserved before its body is built, so recursion works.
    """

    def __init__(self, document: Any) -> None:
        self._document = document
        self._rules: dict[str, str | None] = {"root": None}  # None: reserved, body still being built
        self._names_by_body: dict[str, str] = {}
        self._refs: dict[str, str] = {"#": "root"}
        # The $refs whose rules are being built while no character of their text has been written yet: meeting
        # one again would be left recursion, which llama.cpp refuses.
        self._unstarted: set[str] = {"#"}

    def grammar(self) -> str:
        self._primitive("ws")  # every value ends with whitespace
        self._define("root", self._body(self._document, "root"))
        return "".join(f"{name} ::= {body}\n" for name, body in self._rules.items())

    # -- rules ---------------------------------------------------------------------------------------------

    def _primitive(self, name: str) -> str:
        if name not in self._rules:
            body, uses = _PRIMITIVES[name]
            self._rules[name] = None  # reserved first: value, object and array use each other
            for used in uses:
                self._primitive(used)
            self._define(name, body)
        return name

    def _reserve(self, wanted: str) -> str:
        name, suffix = wanted, 1
        while name in self._rules or name in _PRIMITIVES:
            suffix += 1
            name = f"{wanted}-{suffix}"
        self._rules[name] = None
        return name

    def _define(self, name: str, body: str) -> None:
        # Rules are written in the order they are finished, after the rules they use: llama.cpp counts a name it
        # has not met yet as one more rule inside a repeated group, and refuses groups of 2000 rules or more.
        self._rules.pop(name, None)
        self._rules[name] = body
        self._names_by_body.setdefault(body, name)

    def _rule(self, wanted: str, body: str) -> str:
        """A rule name for `body`: an existing rule with the same body, or a new one named after `wanted`."""
        if body in self._names_by_body:
            return self._names_by_body[body]
        name = self._reserve(wanted)
        self._define(name, body)
        return name

    def _reference(self, schema: Any, name: str) -> str:
        """One rule name standing for `schema`."""
        body = self._body(schema, name)
        return body if re.fullmatch(r"[a-zA-Z0-9-]+", body) else self._rule(name, body)

    # -- schemas -------------------------------------------------------------------------------------------

    def _body(self, schema: Any, name: str) -> str:
        """The alternatives of the rule for `schema`; rules for its parts are named after `name`."""
        if schema is True:
            return self._primitive("value")
        if schema is False:
            raise UnsupportedSchema("the schema false allows no value")
        if not isinstance(schema, dict):
            raise UnsupportedSchema(f"a JSON schema is an object or a boolean, not {schema!r}")
        keywords = schema.keys() - _ANNOTATIONS - _DEFINITIONS
        unsupported = [keyword for keyword in schema if keyword in keywords - _SUPPORTED]  # in the user's order
        if unsupported:
            raise UnsupportedSchema(f'unsupported JSON schema keyword "{unsupported[0]}" in format')
        combinators = sorted(keywords & _COMBINATORS)
        if combinators:
            beside = sorted(keywords - {combinators[0]} - ({"type"} if combinators[0] in ("const", "enum") else set()))
            if beside:
                raise UnsupportedSchema(
                    f'unsupported JSON schema keyword "{beside[0]}" beside "{combinators[0]}" in format'
                )
            return self._combinator(combinators[0], schema, name)
        types = self._types(schema, keywords)
        if types is None:
            return self._primitive("value")
        unstarted, self._unstarted = self._unstarted, set()  # every typed value starts with a character
        try:
            return " | ".join(self._typed(json_type, schema, name) for json_type in types)
        finally:
            self._unstarted = unstarted

    def _combinator(self, keyword: str, schema: dict, name: str) -> str:
        value = schema[keyword]
        if keyword == "$ref":
            return self._ref(value)
        if keyword in ("enum", "const"):
            return self._one_of_values(value if keyword == "enum" else [value], schema, keyword)
        if not isinstance(value, list) or not value:
            raise UnsupportedSchema(f'"{keyword}" must be a non-empty list of schemas')
        if keyword == "allOf":
            if len(value) > 1:
                raise UnsupportedSchema(f'unsupported JSON schema keyword "allOf" with {len(value)} schemas in format')
            return self._body(value[0], name)
        # oneOf is read as anyOf: a grammar cannot say "exactly one", and oneOf's branches are usually disjoint.
        branches = [self._reference(branch, f"{name}-{i}") for i, branch in enumerate(value) if branch is not False]
        if not branches:
            raise UnsupportedSchema(f'every schema in "{keyword}" is false: no value can satisfy it')
        return " | ".join(dict.fromkeys(branches))

    def _ref(self, ref: Any) -> str:
        if ref in self._unstarted:
            raise UnsupportedSchema(f'JSON schema $ref "{ref}" refers back to itself before any value starts')
        if ref not in self._refs:
            if not isinstance(ref, str) or not ref.startswith("#/"):
                raise UnsupportedSchema(f'unsupported JSON schema keyword "$ref": {ref!r} in format (only "#/...")')
            target = self._document
            for token in unquote(ref[2:]).split("/"):
                token = token.replace("~1", "/").replace("~0", "~")
                if isinstance(target, dict) and token in target:
                    target = target[token]
                elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                    target = target[int(token)]
                else:
                    raise UnsupportedSchema(f'JSON schema $ref "{ref}" points to nothing in the schema')
            self._refs[ref] = name = self._reserve(_rule_name(ref))
            self._unstarted.add(ref)
            self._define(name, self._body(target, name))
            self._unstarted.discard(ref)
        return self._refs[ref]

    def _one_of_values(self, values: Any, schema: dict, keyword: str) -> str:
        if not isinstance(values, list):
            raise UnsupportedSchema(f'"{keyword}" must be a list')
        types = self._types(schema, set())
        allowed = [value for value in values if types is None or any(_is_json_type(value, t) for t in types)]
        if not allowed:
            raise UnsupportedSchema(f'no value of "{keyword}" has the schema\'s "type": no value can satisfy it')
        literals = dict.fromkeys(_json_literal(value) for value in allowed)
        return f"{_group(' | '.join(literals))} ws"

    def _types(self, schema: dict, keywords: set[str]) -> list[str] | None:
        """The JSON types a schema allows: its "type", or those its keywords apply to; None for any value."""
        if "type" not in schema:
            return [json_type for json_type, owned in _TYPE_KEYWORDS.items() if keywords & owned] or None
        declared = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for json_type in declared:
            if json_type not in _TYPES:
                raise UnsupportedSchema(f"unknown JSON schema type {json_type!r} in format")
        if not declared:
            raise UnsupportedSchema('"type" is an empty list: no value can satisfy it')
        return list(dict.fromkeys(declared))

    def _typed(self, json_type: str, schema: dict, name: str) -> str:
        """The values of one JSON type that the type's keywords in `schema` allow."""
        if json_type == "object":
            return self._object(schema, name)
        if json_type == "array":
            return self._array(schema, name)
        if json_type == "string":
            return self._string(schema)
        if json_type == "integer":
            low, high = _integer_bounds(schema)
            if low is None and high is None:
                return self._primitive("integer")
            if low is not None and high is not None and low > high:
                raise UnsupportedSchema(f"no integer lies between {low} and {high}: no value can satisfy the schema")
            return _integer_range(low, high)
        bounds = sorted(_INTEGER_BOUNDS & schema.keys())
        if json_type == "number" and bounds:
            raise UnsupportedSchema(
                f'unsupported JSON schema keyword "{bounds[0]}" on a number in format (only integers can be bounded)'
            )
        return self._primitive(json_type)

    def _string(self, schema: dict) -> str:
        if "format" in schema:
            value_format = schema["format"]
            if value_format not in _FORMATS:
                raise UnsupportedSchema(
                    f'unsupported JSON schema keyword "format": {value_format!r} in format'
                    f" (supported: {', '.join(_FORMATS)})"
                )
            lengths = sorted({"minLength", "maxLength"} & schema.keys())
            if lengths:
                raise UnsupportedSchema(f'unsupported JSON schema keyword "{lengths[0]}" beside "format" in format')
            return f'"\\"" {self._primitive(value_format)} "\\"" ws'
        least, most = _count(schema, "minLength", 0), _count(schema, "maxLength", None)
        _check_order(least, most, "minLength", "maxLength")
        if (least, most) == (0, None):
            return self._primitive("string")
        return _sequence(r'"\""', _repeat(self._primitive("char"), least, most), r'"\"" ws')

    def _array(self, schema: dict, name: str) -> str:
        prefix, items = schema.get("prefixItems", []), schema.get("items", True)
        if not isinstance(prefix, list):
            raise UnsupportedSchema('"prefixItems" must be a list of schemas')
        if isinstance(items, list):
            raise UnsupportedSchema('unsupported JSON schema keyword "items" as a list in format (use "prefixItems")')
        least, most = _count(schema, "minItems", 0), _count(schema, "maxItems", None)
        _check_order(least, most, "minItems", "maxItems")
        if items is False:
            most = len(prefix) if most is None else min(most, len(prefix))
            if least > most:
                raise UnsupportedSchema(
                    f'"minItems" {least} is more than the {most} "prefixItems" that "items" false allows'
                )
        positional = [self._reference(item, f"{name}-{i}") for i, item in enumerate(prefix[:most])]
        more_items = most is None or most > len(prefix)
        repeated = self._reference(items, f"{name}-item") if more_items else ""

        def elements_from(position: int) -> str:
            """The elements from `position` on; all but the first element of the array follow a comma."""
            comma = '"," ws' if position else ""
            if position < len(positional):
                element = _sequence(comma, positional[position], elements_from(position + 1))
                return element if position < least else _optional(element)
            if not repeated:
                return ""
            needed, room = max(least - position, 0), None if most is None else most - position
            if position:
                return _repeat(f'"," ws {repeated}', needed, room)
            rest = _repeat(f'"," ws {repeated}', max(needed - 1, 0), None if room is None else room - 1)
            return _sequence(repeated, rest) if needed else _optional(_sequence(repeated, rest))

        return _sequence('"[" ws', elements_from(0), '"]" ws')

    def _object(self, schema: dict, name: str) -> str:
        properties, required = schema.get("properties", {}), schema.get("required", [])
        additional = schema.get("additionalProperties")
        if not isinstance(properties, dict):
            raise UnsupportedSchema('"properties" must be an object of schemas')
        if not isinstance(required, list) or not all(isinstance(key, str) for key in required):
            raise UnsupportedSchema('"required" must be a list of property names')
        if not properties and not required and additional is None:
            return self._primitive("object")
        declared = dict(properties)
        for key in required:
            if key not in declared:
                if additional is False:
                    raise UnsupportedSchema(
                        f'required property "{key}" is not in "properties" and "additionalProperties" is false'
                    )
                declared[key] = True if additional is None else additional
        members: list[tuple[tuple[int, int | None], str]] = []  # (how many times, member rule) in declared order
        for key, value_schema in declared.items():
            if value_schema is False:
                if key in required:
                    raise UnsupportedSchema(f'required property "{key}" has the schema false')
                continue  # the property must not appear: leaving it out is exact
            rule = f"{name}-{_rule_name(key)}"
            value = self._reference(value_schema, rule)
            member = self._rule(f"{rule}-kv", f'{_literal(json.dumps(key, ensure_ascii=False))} ws ":" ws {value}')
            members.append((_REQUIRED if key in required else _OPTIONAL, member))
        if additional not in (None, False):
            key = self._rule(f"{name}-additional-key", self._key_other_than(list(declared)))
            value = self._reference(additional, f"{name}-additional")
            members.append((_REPEATED, self._rule(f"{name}-additional-kv", f'{key} ":" ws {value}')))
        return _sequence('"{" ws', _members(members), '"}" ws')

    def _key_other_than(self, names: list[str]) -> str:
        """A JSON string key that is none of `names`, spelled with plain characters only.

        Without escapes the key's text is the key itself, so a trie of the names can steer around them; a
        declared name must not come back as an additional property with a value its own schema forbids.
        """
        plain = self._primitive("plain-char")
        plain_only = [key for key in names if re.fullmatch(r'[^"\\\x00-\x1f\x7f]*', key)]
        return _sequence(r'"\""', _group(_none_of(plain_only, plain)), r'"\"" ws')


_REQUIRED, _OPTIONAL, _REPEATED = (1, 1), (0, 1), (0, None)


def _members(members: list[tuple[tuple[int, int | None], str]]) -> str:
    """Comma-separated object members in order; the first one present has no comma before it."""

    def after(start: int) -> str:
        return _sequence(*(_repeat(f'"," ws {member}', *times) for times, member in members[start:]))

    counts = [times for times, _ in members]
    first_required = counts.index(_REQUIRED) if _REQUIRED in counts else len(members)
    # The first member present is any member up to and including the first required one.
    starts = [
        _sequence(member, after(i if times == _REPEATED else i + 1))
        for i, (times, member) in enumerate(members[: first_required + 1])
    ]
    if not starts:
        return ""
    alternatives = " | ".join(starts)
    return _group(alternatives) if first_required < len(members) else _optional(alternatives)


def _none_of(words: list[str], plain: str) -> str:
    """Runs of plain characters that are none of `words`, as a trie: follow a word, or leave it for good."""
    by_first: dict[str, list[str]] = {}
    for word in words:
        if word:
            by_first.setdefault(word[0], []).append(word[1:])
    leave = "".join(_class_char(char) for char in by_first)
    alternatives = [f"{_literal(char)} {_group(_none_of(rests, plain))}" for char, rests in by_first.items()]
    alternatives.append(rf'[^"\\\x7F\x00-\x1F{leave}] {plain}*')
    body = " | ".join(alternatives)
    return _group(body) if "" in words else _optional(body)


def grammar_for_schema(schema: dict) -> str:
    """GBNF (root rule "root") whose every complete sentence is JSON that validates against `schema`."""
    return _GrammarBuilder(schema).grammar()


# Ollama's format "json": any JSON object at the top level.
JSON_GRAMMAR: str = grammar_for_schema({"type": "object"})
