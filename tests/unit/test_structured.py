"""Structured outputs: JSON Schemas compiled to GBNF, judged by llama.cpp's own grammar engine.

Every grammar is loaded into a real llama.cpp grammar sampler over the SmolLM2 vocabulary. Texts a user's model
should be able to write are accepted (and validate against the schema with ``jsonschema``); texts it must not
write are rejected; random sentences of each grammar validate too, so the grammar never allows more than the
schema does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, time

import jsonschema
import pytest

from herd.core.structured import JSON_GRAMMAR, UnsupportedSchema, grammar_for_schema
from tests.gbnf_check import accepts, parses, sentences

# jsonschema checks "date-time" and "time" only with rfc3339-validator installed; check them with datetime here.
FORMATS = jsonschema.FormatChecker()
RFC3339_TIME = r"\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})"


@FORMATS.checks("date-time", raises=ValueError)
def is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(
        re.fullmatch(r"\d{4}-\d{2}-\d{2}T" + RFC3339_TIME, value) and datetime.fromisoformat(value)
    )


@FORMATS.checks("time", raises=ValueError)
def is_time(value: object) -> bool:
    return not isinstance(value, str) or bool(re.fullmatch(RFC3339_TIME, value) and time.fromisoformat(value))


def validate(text: str, schema: dict | bool) -> None:
    jsonschema.validate(json.loads(text), schema, format_checker=FORMATS)


@dataclass
class Case:
    schema: dict | bool
    accepted: list[str]  # valid JSON for the schema that the model may write
    rejected: list[str]  # what the grammar must forbid


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "email": {"type": "string"},
        "age": {"type": "integer"},
        "nick": {"type": "string"},
    },
    "required": ["name", "age"],
}

# What pydantic 2 writes for Person.model_json_schema(), with an enum, Optional fields, bounds and nested models.
PYDANTIC_PERSON = {
    "$defs": {
        "Address": {
            "properties": {
                "street": {"title": "Street", "type": "string"},
                "city": {"title": "City", "type": "string"},
                "postcode": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Postcode"},
            },
            "required": ["street", "city"],
            "title": "Address",
            "type": "object",
        },
        "Pet": {
            "properties": {
                "name": {"title": "Name", "type": "string"},
                "kind": {"enum": ["cat", "dog"], "title": "Kind", "type": "string"},
            },
            "required": ["name", "kind"],
            "title": "Pet",
            "type": "object",
        },
        "Role": {"enum": ["admin", "user"], "title": "Role", "type": "string"},
    },
    "properties": {
        "name": {"description": "Full name", "maxLength": 40, "minLength": 1, "title": "Name", "type": "string"},
        "age": {"maximum": 150, "minimum": 0, "title": "Age", "type": "integer"},
        "email": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Email"},
        "role": {"$ref": "#/$defs/Role", "default": "user"},
        "address": {"$ref": "#/$defs/Address"},
        "pets": {"items": {"$ref": "#/$defs/Pet"}, "maxItems": 3, "title": "Pets", "type": "array"},
        "tags": {"default": [], "items": {"type": "string"}, "title": "Tags", "type": "array"},
    },
    "required": ["name", "age", "address"],
    "title": "Person",
    "type": "object",
}

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value", "children"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}

SHAPE = {
    "anyOf": [
        {
            "type": "object",
            "properties": {"kind": {"const": "circle"}, "radius": {"type": "number"}},
            "required": ["kind", "radius"],
        },
        {
            "type": "object",
            "properties": {"kind": {"const": "rect"}, "width": {"type": "number"}, "height": {"type": "number"}},
            "required": ["kind", "width", "height"],
        },
    ]
}

CASES = {
    "flat object, required and optional": Case(
        PERSON,
        accepted=[
            '{"name": "Ada", "age": 36}',
            '{"name":"Ada","email":"ada@example.com","age":36,"nick":"A"}',
            '{\n  "name": "Ada",\n  "age": 36,\n  "nick": "Countess"\n}',
            '{"name": "Ada Lovelace \\"the first\\" \\u00e9 é 😀", "age": -7}',
        ],
        rejected=[
            '{"name": "Ada"}',  # missing required
            '{"name": "Ada", "age": 36, "admin": true}',  # extra key
            '{"name": "Ada", "age": "36"}',  # wrong type
            '{"name": "Ada", "age": 36.5}',
            '{"name": "Ada", "age": 036}',  # leading zero
            '{"age": 36, "name": "Ada"}',  # out of the declared order
            '{"name": "Ada", "age": 36,}',
            "{" + "\n" * 100 + '"name": "Ada", "age": 36}',  # unbounded whitespace
            '{"name": "Ada", "age": 36}' + " " * 30,
            '["Ada", 36]',
        ],
    ),
    "nested objects": Case(
        {
            "type": "object",
            "properties": {
                "user": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "address": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                            "required": ["city"],
                        },
                    },
                    "required": ["id", "address"],
                }
            },
            "required": ["user"],
        },
        accepted=[
            '{"user": {"id": 1, "address": {"city": "Paris"}}}',
            '{"user":{"id":2,"address":{"city":"","zip":"7"}}}',
        ],
        rejected=['{"user": {"id": 1}}', '{"user": {"id": 1, "address": {"zip": "7"}}}', '{"user": null}'],
    ),
    "array with minItems and maxItems": Case(
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        accepted=['["a"]', '["a", "b", "c"]', '[\n  "a",\n  "b"\n]'],
        rejected=["[]", '["a", "b", "c", "d"]', "[1]", '["a",]'],
    ),
    "tuple with prefixItems and items false": Case(
        {"type": "array", "prefixItems": [{"type": "number"}, {"type": "string"}], "items": False},
        accepted=['[1.5, "x"]', "[1]", "[]", '[-2e10, ""]'],
        rejected=['[1, "x", 2]', '["x"]', "[1, 2]"],
    ),
    "prefixItems then items, 2 to 4 of them": Case(
        {
            "type": "array",
            "prefixItems": [{"type": "boolean"}],
            "items": {"type": "integer"},
            "minItems": 2,
            "maxItems": 4,
        },
        accepted=["[true, 1]", "[false, 1, 2, 3]"],
        rejected=["[true]", "[true, 1, 2, 3, 4]", "[1, 2]", "[true, 1.5]"],
    ),
    "enum of strings": Case(
        {"type": "string", "enum": ["red", "green", "blue", 7]},
        accepted=['"red"', '"blue"'],
        rejected=['"purple"', '"Red"', "7", "red"],
    ),
    "enum of any JSON values": Case(
        {"enum": [1, 2.5, -3, None, True, {"a": 1}, [1, "x"], 'say "hi"', "a\\b", "é"]},
        accepted=["1", "2.5", "-3", "null", "true", '{"a":1}', '[1,"x"]', '"say \\"hi\\""', '"a\\\\b"', '"é"'],
        rejected=["4", "false", '{"a":2}', '"say hi"', "2.50", '"a\\b"'],
    ),
    "const": Case(
        {
            "type": "object",
            "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}},
            "required": ["kind", "r"],
        },
        accepted=['{"kind": "circle", "r": 2}'],
        rejected=['{"kind": "square", "r": 2}', '{"r": 2}'],
    ),
    "anyOf object shapes": Case(
        SHAPE,
        accepted=['{"kind": "circle", "radius": 1.5}', '{"kind": "rect", "width": 2, "height": 3}'],
        rejected=['{"kind": "circle", "width": 2, "height": 3}', '{"kind": "rect", "radius": 1}', "null"],
    ),
    "oneOf read as anyOf": Case(
        {"oneOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]},
        accepted=["5", '"ab"'],
        rejected=["5.5", '"abc"', "true"],
    ),
    "allOf with one schema": Case(
        {"allOf": [{"type": "boolean"}], "description": "pydantic 1 wrapped refs like this"},
        accepted=["true", "false"],
        rejected=['"true"'],
    ),
    "recursive tree through $defs": Case(
        TREE,
        accepted=[
            '{"value": 1, "children": []}',
            '{"value": 1, "children": [{"value": 2, "children": [{"value": 3, "children": []}]}, '
            '{"value": 4, "children": []}]}',
        ],
        rejected=['{"value": 1, "children": [{"value": 2}]}', '{"value": 1, "children": [1]}'],
    ),
    "linked list through '#' and definitions": Case(
        {
            "definitions": {"name": {"type": "string", "minLength": 1}},
            "type": "object",
            "properties": {
                "name": {"$ref": "#/definitions/name"},
                "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
            },
            "required": ["name", "next"],
        },
        accepted=['{"name": "a", "next": {"name": "b", "next": null}}'],
        rejected=['{"name": "", "next": null}', '{"name": "a", "next": {"name": "b"}}'],
    ),
    "type list": Case(
        {"type": ["string", "integer", "null"]},
        accepted=['"x"', "42", "null"],
        rejected=["4.2", "true", "[]"],
    ),
    "nullable fields": Case(
        {
            "type": "object",
            "properties": {
                "email": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "age": {"type": ["integer", "null"]},
            },
            "required": ["email", "age"],
        },
        accepted=['{"email": null, "age": null}', '{"email": "a@b.c", "age": 3}'],
        rejected=['{"email": null}', '{"email": 1, "age": null}'],
    ),
    "string minLength and maxLength": Case(
        {"type": "string", "minLength": 2, "maxLength": 4},
        accepted=['"ab"', '"abcd"', '"é😀"', '"\\n\\u00e9"'],
        rejected=['"a"', '"abcde"', '""', '"\\ud83d\\ude00"'],  # an escaped surrogate pair is one character
    ),
    "non-negative integer": Case(
        {"type": "integer", "minimum": 0},
        accepted=["0", "7", "1234567890"],
        rejected=["-1", "01", "1.5", "-0", "1e3"],
    ),
    "small integer range": Case(
        {"type": "integer", "minimum": 1, "maximum": 12},
        accepted=["1", "9", "10", "12"],
        rejected=["0", "13", "012", "-1", "100"],
    ),
    "exclusive integer bounds": Case(
        {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 3},
        accepted=["-2", "0", "2"],
        rejected=["-3", "3"],
    ),
    "formats": Case(
        {
            "type": "object",
            "properties": {
                "day": {"type": "string", "format": "date"},
                "at": {"type": "string", "format": "date-time"},
                "clock": {"type": "string", "format": "time"},
                "id": {"type": "string", "format": "uuid"},
            },
        },
        accepted=[
            '{"day": "2024-02-29", "at": "2024-05-06T07:08:09Z", "clock": "23:59:59Z"}',
            '{"day": "2000-02-29", "at": "0001-01-01T00:00:00.123456+02:00", "clock": "00:00:00-11:30"}',
            '{"day": "2023-12-31", "id": "123e4567-e89b-12d3-a456-426614174000"}',
            '{"id": "123E4567-E89B-12D3-A456-426614174000"}',
        ],
        rejected=[
            '{"day": "2023-02-29"}',  # not a leap year
            '{"day": "1900-02-29"}',  # centuries are leap years only every 400 years
            '{"day": "2023-04-31"}',
            '{"day": "2023-13-01"}',
            '{"day": "0000-01-01"}',
            '{"day": "2023-1-01"}',
            '{"at": "2024-05-06 07:08:09Z"}',
            '{"at": "2024-05-06T07:08:09"}',  # no offset
            '{"at": "2024-05-06T24:00:00Z"}',
            '{"clock": "7:08:09Z"}',
            '{"id": "123e4567e89b12d3a456426614174000"}',
            '{"id": "123e4567-e89b-12d3-a456-42661417400g"}',
        ],
    ),
    "additionalProperties schema": Case(
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "label": {"type": "string"}},
            "required": ["id"],
            "additionalProperties": {"type": "number"},
        },
        accepted=['{"id": 1}', '{"id": 1, "x": 2.5, "y": 3}', '{"id": 1, "label": "a", "labels": 2, "lab": 3, "i": 4}'],
        rejected=[
            '{"id": 1, "x": "s"}',
            '{"x": 1, "id": 1}',  # additional properties come after the declared ones
            '{"id": 1, "label": 2}',  # a declared name never comes back as an additional property
            '{"id": 1, "id": 2}',
        ],
    ),
    "additionalProperties true, all optional": Case(
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True},
        accepted=["{}", '{"a": "x"}', '{"ab": 1}', '{"b": [null], "": {}}', '{"a": "x", "b": 1}'],
        rejected=['{"a": 1}', '{"b": 1, "a": "x"}'],
    ),
    "property names that need escaping": Case(
        {
            "type": "object",
            "properties": {
                'say "hi"': {"type": "string"},
                "back\\slash": {"type": "integer"},
                "café": {"type": "boolean"},
                "a-b c!": {"type": "null"},
                "": {"type": "integer"},
            },
            "required": ['say "hi"', "back\\slash", "café", "a-b c!", ""],
        },
        accepted=['{"say \\"hi\\"": "x", "back\\\\slash": 1, "café": true, "a-b c!": null, "": 0}'],
        rejected=['{"say "hi"": "x", "back\\\\slash": 1, "café": true, "a-b c!": null, "": 0}'],
    ),
    "pydantic model_json_schema": Case(
        PYDANTIC_PERSON,
        accepted=[
            '{"name": "Ada", "age": 36, "address": {"street": "1 Main St", "city": "London"}}',
            '{"name": "Ada", "age": 150, "email": null, "role": "admin", '
            '"address": {"street": "x", "city": "y", "postcode": "N1"}, '
            '"pets": [{"name": "Tom", "kind": "cat"}, {"name": "Rex", "kind": "dog"}], "tags": ["a", "b"]}',
        ],
        rejected=[
            '{"name": "Ada", "age": 151, "address": {"street": "x", "city": "y"}}',
            '{"name": "", "age": 1, "address": {"street": "x", "city": "y"}}',
            '{"name": "Ada", "age": 1, "role": "root", "address": {"street": "x", "city": "y"}}',
            '{"name": "Ada", "age": 1, "address": {"street": "x", "city": "y"}, "pets": '
            '[{"name": "a", "kind": "cat"}, {"name": "b", "kind": "cat"}, {"name": "c", "kind": "cat"}, '
            '{"name": "d", "kind": "cat"}]}',
            '{"name": "Ada", "age": 1, "address": {"street": "x"}}',
        ],
    ),
    "empty schema: any JSON value": Case(
        {"description": "anything"},
        accepted=["1", '"x"', '[1, {"a": null}]', "null", "-0.5e-3", "{}"],
        rejected=["{", "nul", "'x'", "01", "[1,]"],
    ),
    "true: any JSON value": Case(True, accepted=["true", "[]"], rejected=["tru"]),
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request) -> tuple[Case, str]:
    schema_case = CASES[request.param]
    return schema_case, grammar_for_schema(schema_case.schema)


def test_llama_cpp_parses_the_grammar(case):
    _, grammar = case
    assert parses(grammar), grammar


def test_valid_texts_are_accepted(case):
    schema_case, grammar = case
    for text in schema_case.accepted:
        validate(text, schema_case.schema)
        assert accepts(grammar, text), f"{text!r} rejected by\n{grammar}"


def test_forbidden_texts_are_rejected(case):
    schema_case, grammar = case
    for text in schema_case.rejected:
        assert not accepts(grammar, text), f"{text!r} accepted by\n{grammar}"


def test_every_sentence_of_the_grammar_validates(case):
    schema_case, grammar = case
    for text in sentences(grammar, count=40):
        assert accepts(grammar, text), f"llama.cpp rejected the sampled {text!r}"
        validate(text, schema_case.schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": 0},
        {"type": "integer", "maximum": 10},
        {"type": "integer", "maximum": -3},
        {"type": "integer", "minimum": -5, "maximum": 123},
        {"type": "integer", "minimum": -120, "maximum": -7},
        {"type": "integer", "minimum": 95, "maximum": 1050},
        {"type": "integer", "minimum": 7, "maximum": 7},
        {"type": "integer", "minimum": 0.5, "exclusiveMaximum": 99.5},
        {"type": "integer", "exclusiveMinimum": 1000},
        {"type": "integer", "minimum": -(10**30), "maximum": 10**30},  # as good as unbounded at 16 digits
    ],
    ids=json.dumps,
)
def test_integer_bounds_are_exact(schema):
    grammar = grammar_for_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    numbers = [*range(-130, 130), *range(990, 1060), 10**15, 10**16 - 1, -(10**15)]
    wrong = [n for n in numbers if accepts(grammar, str(n)) != validator.is_valid(n)]
    assert wrong == []


def test_json_format_allows_any_object_only():
    assert parses(JSON_GRAMMAR)
    for text in ["{}", '{"a": 1}', '{"a": [1, {"b": null}], "c": "d"}', '{\n  "nested": {"x": true}\n}']:
        assert accepts(JSON_GRAMMAR, text), text
    for text in ["[1, 2]", "42", '"x"', "null", "{", '{"a": 1} {}']:
        assert not accepts(JSON_GRAMMAR, text), text
    for text in sentences(JSON_GRAMMAR, count=40):
        assert accepts(JSON_GRAMMAR, text)
        assert isinstance(json.loads(text), dict)


def test_identical_rules_are_shared_and_names_are_gbnf_names():
    grammar = grammar_for_schema(
        {
            "type": "object",
            "properties": {"a b": {"type": "string", "maxLength": 3}, "ä/c": {"type": "string", "maxLength": 3}},
        }
    )
    names = [line.split(" ::= ")[0] for line in grammar.splitlines()]
    assert all(re.fullmatch(r"[a-zA-Z0-9-]+", name) for name in names)
    assert len(names) == len(set(names))
    assert grammar.count('char{0,3} "\\"" ws') == 1


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "string", "pattern": "^a+$"}, "pattern"),
        ({"type": "object", "patternProperties": {"^x": {"type": "string"}}}, "patternProperties"),
        ({"not": {"type": "string"}}, "not"),
        ({"if": {"type": "string"}, "then": {"maxLength": 2}, "else": {"type": "integer"}}, "if"),
        ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired"),
        ({"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}, "dependentSchemas"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"type": "integer", "multipleOf": 5}, "multipleOf"),
        ({"type": "object", "minProperties": 1}, "minProperties"),
        ({"type": "object", "maxProperties": 3}, "maxProperties"),
        ({"type": "object", "propertyNames": {"maxLength": 3}}, "propertyNames"),
        ({"type": "object", "unevaluatedProperties": False}, "unevaluatedProperties"),
        ({"type": "array", "contains": {"type": "integer"}}, "contains"),
        ({"type": "array", "items": [{"type": "integer"}]}, "items"),
        ({"type": "array", "additionalItems": False}, "additionalItems"),
        ({"type": "number", "minimum": 0.5}, "minimum"),
        ({"type": "number", "exclusiveMaximum": 1}, "exclusiveMaximum"),
        ({"maximum": 3}, "maximum"),
        ({"$ref": "https://example.com/person.json"}, "$ref"),
        ({"$ref": "#anchor"}, "$ref"),
        ({"$dynamicRef": "#node"}, "$dynamicRef"),
        ({"allOf": [{"type": "object"}, {"required": ["a"]}]}, "allOf"),
        ({"type": "string", "format": "email"}, "format"),
        ({"type": "string", "format": "date", "maxLength": 8}, "maxLength"),
        ({"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}, "type"),
        ({"enum": ["a", "bb"], "maxLength": 1}, "maxLength"),
        ({"type": "string", "contentEncoding": "base64"}, "contentEncoding"),
        # Refused wherever it sits: deep in properties, items and definitions that are used.
        ({"type": "object", "properties": {"a": {"type": "array", "items": {"pattern": "x"}}}}, "pattern"),
        ({"$defs": {"a": {"not": {}}}, "anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}, "not"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_unsupported_keywords_are_refused_by_name(schema, keyword):
    with pytest.raises(UnsupportedSchema, match=f'"{re.escape(keyword)}"') as raised:
        grammar_for_schema(schema)
    assert " in format" in str(raised.value)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 5, "maxLength": 2},
        {"type": "integer", "minimum": 5, "maximum": 2},
        {"type": "integer", "exclusiveMinimum": 2, "exclusiveMaximum": 3},
        {"type": "array", "minItems": 3, "maxItems": 1},
        {"type": "array", "prefixItems": [{}], "items": False, "minItems": 2},
        {"type": "object", "required": ["a"], "additionalProperties": False},
        {"type": "object", "properties": {"a": False}, "required": ["a"]},
        {"type": "string", "enum": [1, 2]},
        {"anyOf": [False]},
        {"$ref": "#/$defs/missing"},
        {"type": "string", "maxLength": 100_000},
        {"anyOf": [{"$ref": "#"}, {"type": "null"}]},  # left recursion: llama.cpp refuses the grammar
        {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        False,
    ],
    ids=json.dumps,
)
def test_schemas_no_grammar_can_honour_are_refused(schema):
    with pytest.raises(UnsupportedSchema):
        grammar_for_schema(schema)


def test_annotations_are_ignored():
    annotated = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.com/thing",
        "$comment": "no effect",
        "title": "Thing",
        "description": "A thing",
        "default": True,
        "examples": [True],
        "deprecated": False,
        "readOnly": True,
        "writeOnly": False,
        "type": "boolean",
    }
    assert grammar_for_schema(annotated) == grammar_for_schema({"type": "boolean"})


def test_a_property_with_schema_false_is_left_out():
    grammar = grammar_for_schema({"type": "object", "properties": {"a": False, "b": {"type": "null"}}})
    assert accepts(grammar, '{"b": null}')
    assert not accepts(grammar, '{"a": null, "b": null}')


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "maxLength": 2000},
        {"type": "string", "minLength": 2000},
        {"type": "array", "items": {"type": "array", "items": {"type": "string", "maxLength": 2000}, "maxItems": 2000}},
        {"type": "array", "prefixItems": [{"type": "integer"}] * 30, "minItems": 1, "maxItems": 2000},
        {
            "type": "object",
            "properties": {f"optional_property_with_a_long_name_{i}": {"type": "integer"} for i in range(60)},
            "additionalProperties": {"type": "string", "maxLength": 2000},
        },
    ],
    ids=["maxLength 2000", "minLength 2000", "nested arrays", "30 prefixItems", "60 optional properties"],
)
def test_large_schemas_stay_within_what_llama_cpp_expands(schema):
    # llama.cpp refuses a repetition of a group that expands into 2000 rules or more.
    grammar = grammar_for_schema(schema)
    assert parses(grammar)
    for text in sentences(grammar, count=5, depth=4):
        assert accepts(grammar, text)
        validate(text, schema)


def test_a_bound_at_the_limit_is_exact():
    grammar = grammar_for_schema({"type": "string", "maxLength": 2000})
    assert accepts(grammar, '"' + "ab" * 1000 + '"')
    assert not accepts(grammar, '"' + "ab" * 1000 + 'c"')
