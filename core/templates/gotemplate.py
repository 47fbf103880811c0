"""Go's ``text/template``, the part of it Ollama's model templates use: lexer → parse tree → executor.

Written from the language definition (https://pkg.go.dev/text/template) and checked against
Go's behaviour: ``{{- -}}`` trimming, comments, pipelines, variables with Go 1.11 assignment,
``if``/``else if``/``range``/``with``/``break``/``continue``, Go's builtin functions and
Ollama's additions (``json``, ``currentDate``, ``yesterdayDate``, ``toTypeScriptType``).
Templates run with Ollama's ``missingkey=zero``: a missing map key is nil, printed as
``<no value>``. ``define``, ``template`` and ``block`` are not supported; no bundled or
library template uses them.

Templates come from model files, so a template is hostile input. Field access reaches only
dict keys and dataclass fields (never Python attributes such as ``__class__``); nesting,
output size and execution steps are bounded, so a template cannot recurse Python to death,
fill memory or loop forever.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, NoReturn

from herd.core.templates.values import ToolProperty, marshal_json
from herd.gofmt import go_float, go_quote

MAX_NESTING = 100
# Variables in scope at once; library templates use a handful. Lookups scan the scope, so
# this also bounds what one lookup costs.
MAX_VARIABLES = 100
MAX_OUTPUT_CHARS = 4 * 1024 * 1024
# About a second of Python; SmolLM2's template on a 1,000-message chat takes about 36,000.
MAX_STEPS = 2_000_000
# A step is a node walked, a command or argument evaluated, or a range iteration. A function
# call also costs a step per this many characters or elements it reads and returns, and a
# variable lookup one per this many scope entries it passes, so that repeating cheap-looking
# work (len of a 4 MiB string a million times) runs out of steps rather than taking minutes.
_ITEMS_PER_STEP = 256
_VARIABLES_PER_STEP = 16
# Go's fmt refuses widths and precisions above this too.
_MAX_FORMAT_WIDTH = 1_000_000


class TemplateError(Exception):
    """A template failed to parse or to execute; the message says where, Go-style."""


# ---------------------------------------------------------------------------------------- lexer

_SPACE = " \t\r\n"
_KEYWORDS = {
    "if", "else", "end", "range", "with", "break", "continue", "define", "template", "block",
}

# Token kinds.
_TEXT = "text"
_LEFT = "{{"
_RIGHT = "}}"
_SPACE_RUN = "space"
_PIPE = "|"
_LPAREN = "("
_RPAREN = ")"
_DECLARE = ":="
_ASSIGN = "="
_CHAR = "char"
_FIELD = "field"
_DOT = "."
_VARIABLE = "variable"
_IDENTIFIER = "identifier"
_KEYWORD = "keyword"
_BOOL = "bool"
_NIL = "nil"
_NUMBER = "number"
_CHAR_CONSTANT = "character constant"
_STRING = "string"
_RAW_STRING = "raw string"
_EOF = "EOF"

_OPERAND_STARTS = {
    _BOOL, _CHAR_CONSTANT, _DOT, _FIELD, _IDENTIFIER, _NUMBER, _NIL, _RAW_STRING, _STRING,
    _VARIABLE, _LPAREN,
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    value: str
    line: int

    def __str__(self) -> str:
        if self.kind == _EOF:
            return "EOF"
        if self.kind == _KEYWORD:
            return f"<{self.value}>"
        if len(self.value) > 10:
            return go_quote(self.value[:10]) + "..."
        return go_quote(self.value)


def _is_alphanumeric(char: str) -> bool:
    return char == "_" or char.isalpha() or char.isdecimal()


class _Lexer:
    def __init__(self, source: str):
        self.src = source
        self.pos = 0
        self.line = 1
        self.tokens: list[_Token] = []

    def error(self, message: str) -> NoReturn:
        raise TemplateError(f"template: :{self.line}: {message}")

    def emit(self, kind: str, value: str) -> None:
        self.tokens.append(_Token(kind, value, self.line))

    def advance_to(self, pos: int) -> None:
        self.line += self.src.count("\n", self.pos, pos)
        self.pos = pos

    def run(self) -> list[_Token]:
        src = self.src
        while self.pos < len(src):
            delim = src.find("{{", self.pos)
            if delim < 0:
                self.emit(_TEXT, src[self.pos:])
                self.advance_to(len(src))
                break
            text = src[self.pos:delim]
            trim = src.startswith("-", delim + 2) and src[delim + 3 : delim + 4] in tuple(_SPACE)
            if trim:
                text = text.rstrip(_SPACE)
            if text:
                self.emit(_TEXT, text)
            self.advance_to(delim + 2 + (2 if trim else 0))
            if src.startswith("/*", self.pos):
                self.lex_comment()
            else:
                self.emit(_LEFT, "{{")
                self.lex_action()
        self.emit(_EOF, "")
        return self.tokens

    def at_right_delim(self) -> tuple[bool, bool]:
        """Whether the input is at ``}}``, and whether a `` -`` trim marker comes first."""
        src, pos = self.src, self.pos
        if src[pos : pos + 1] in tuple(_SPACE) and src.startswith("-}}", pos + 1):
            return True, True
        return src.startswith("}}", pos), False

    def close_action(self, trim: bool) -> None:
        self.advance_to(self.pos + (2 if trim else 0) + 2)
        if trim:
            end = self.pos
            while end < len(self.src) and self.src[end] in _SPACE:
                end += 1
            self.advance_to(end)

    def lex_comment(self) -> None:
        end = self.src.find("*/", self.pos + 2)
        if end < 0:
            self.error("unclosed comment")
        self.advance_to(end + 2)
        delim, trim = self.at_right_delim()
        if not delim:
            self.error("comment ends before closing delimiter")
        self.close_action(trim)

    def lex_action(self) -> None:
        src = self.src
        paren_depth = 0
        while True:
            delim, trim = self.at_right_delim()
            if delim:
                if paren_depth:
                    self.error("unclosed left paren")
                self.emit(_RIGHT, "}}")
                self.close_action(trim)
                return
            if self.pos >= len(src):
                self.error("unclosed action")
            char = src[self.pos]
            if char in _SPACE:
                self.lex_space()
            elif char == "=":
                self.emit(_ASSIGN, "=")
                self.advance_to(self.pos + 1)
            elif char == ":":
                if not src.startswith(":=", self.pos):
                    self.error("expected :=")
                self.emit(_DECLARE, ":=")
                self.advance_to(self.pos + 2)
            elif char == "|":
                self.emit(_PIPE, "|")
                self.advance_to(self.pos + 1)
            elif char == '"':
                self.lex_quoted('"', _STRING, "unterminated quoted string")
            elif char == "'":
                self.lex_quoted("'", _CHAR_CONSTANT, "unterminated character constant")
            elif char == "`":
                end = src.find("`", self.pos + 1)
                if end < 0:
                    self.error("unterminated raw quoted string")
                self.emit(_RAW_STRING, src[self.pos : end + 1])
                self.advance_to(end + 1)
            elif char == "$":
                self.lex_field_or_variable(_VARIABLE)
            elif char == "." and not src[self.pos + 1 : self.pos + 2].isdecimal():
                self.lex_field_or_variable(_FIELD)
            elif char in "+-." or "0" <= char <= "9":
                self.lex_number()
            elif _is_alphanumeric(char):
                self.lex_identifier()
            elif char == "(":
                paren_depth += 1
                self.emit(_LPAREN, "(")
                self.advance_to(self.pos + 1)
            elif char == ")":
                paren_depth -= 1
                if paren_depth < 0:
                    self.error("unexpected right paren")
                self.emit(_RPAREN, ")")
                self.advance_to(self.pos + 1)
            elif char.isascii() and char.isprintable():
                self.emit(_CHAR, char)
                self.advance_to(self.pos + 1)
            else:
                self.error(f"unrecognized character in action: {_go_rune(char)}")

    def lex_space(self) -> None:
        start = end = self.pos
        while end < len(self.src) and self.src[end] in _SPACE:
            end += 1
        # The last space may belong to a " -}}" trim marker.
        if self.src.startswith("-}}", end):
            end -= 1
        if end > start:
            self.emit(_SPACE_RUN, self.src[start:end])
            self.advance_to(end)

    def lex_quoted(self, quote: str, kind: str, unterminated: str) -> None:
        src = self.src
        end = self.pos + 1
        while True:
            if end >= len(src) or src[end] == "\n":
                self.error(unterminated)
            if src[end] == "\\":
                if end + 1 >= len(src) or src[end + 1] == "\n":
                    self.error(unterminated)
                end += 2
                continue
            if src[end] == quote:
                break
            end += 1
        self.emit(kind, src[self.pos : end + 1])
        self.advance_to(end + 1)

    def at_terminator(self, pos: int) -> bool:
        char = self.src[pos : pos + 1]
        return char == "" or char in _SPACE or char in ".,|:()" or self.src.startswith("}}", pos)

    def lex_field_or_variable(self, kind: str) -> None:
        start = self.pos
        end = start + 1
        if end >= len(self.src) or not _is_alphanumeric(self.src[end]):
            # A lone "." is the dot; a lone "$" is the variable holding the data.
            self.emit(_DOT if kind == _FIELD else _VARIABLE, self.src[start])
            self.advance_to(end)
            return
        while end < len(self.src) and _is_alphanumeric(self.src[end]):
            end += 1
        if not self.at_terminator(end):
            self.error(f"bad character {_go_rune(self.src[end])}")
        self.emit(kind, self.src[start:end])
        self.advance_to(end)

    def lex_identifier(self) -> None:
        end = self.pos
        while end < len(self.src) and _is_alphanumeric(self.src[end]):
            end += 1
        if not self.at_terminator(end):
            self.error(f"bad character {_go_rune(self.src[end])}")
        word = self.src[self.pos : end]
        if word in _KEYWORDS:
            kind = _KEYWORD
        elif word in ("true", "false"):
            kind = _BOOL
        elif word == "nil":
            kind = _NIL
        else:
            kind = _IDENTIFIER
        self.emit(kind, word)
        self.advance_to(end)

    def lex_number(self) -> None:
        src = self.src
        end = self.pos

        def accept_run(valid: str) -> None:
            nonlocal end
            while end < len(src) and src[end] in valid:
                end += 1

        if src[end : end + 1] in ("+", "-"):
            end += 1
        digits = "0123456789_"
        prefix = src[end : end + 2].lower()
        if prefix in ("0x", "0o", "0b"):
            end += 2
            digits = {"0x": "0123456789abcdefABCDEF_", "0o": "01234567_", "0b": "01_"}[prefix]
        accept_run(digits)
        if src[end : end + 1] == ".":
            end += 1
            accept_run(digits)
        if digits == "0123456789_" and src[end : end + 1] in ("e", "E"):
            end += 1
            if src[end : end + 1] in ("+", "-"):
                end += 1
            accept_run("0123456789_")
        if prefix == "0x" and src[end : end + 1] in ("p", "P"):
            end += 1
            if src[end : end + 1] in ("+", "-"):
                end += 1
            accept_run("0123456789_")
        if src[end : end + 1] == "i":
            end += 1
        if end < len(src) and _is_alphanumeric(src[end]):
            self.error(f"bad number syntax: {go_quote(src[self.pos : end + 1])}")
        self.emit(_NUMBER, src[self.pos : end])
        self.advance_to(end)


# ---------------------------------------------------------------------------------- parse tree


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Field:
    idents: tuple[str, ...]

    def __str__(self) -> str:
        return "".join("." + ident for ident in self.idents)


@dataclass(frozen=True, slots=True)
class _Variable:
    name: str
    idents: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name + "".join("." + ident for ident in self.idents)


@dataclass(frozen=True, slots=True)
class _Chain:
    node: Any
    idents: tuple[str, ...]

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return inner + "".join("." + ident for ident in self.idents)


@dataclass(frozen=True, slots=True)
class _Identifier:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class _Dot:
    def __str__(self) -> str:
        return "."


@dataclass(frozen=True, slots=True)
class _Nil:
    def __str__(self) -> str:
        return "nil"


@dataclass(frozen=True, slots=True)
class _Literal:
    """A bool, number or string constant; ``text`` is how the template spelled it."""

    value: Any
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class _Command:
    args: tuple[Any, ...]

    def __str__(self) -> str:
        return " ".join(f"({arg})" if isinstance(arg, _Pipe) else str(arg) for arg in self.args)


@dataclass(frozen=True, slots=True)
class _Pipe:
    line: int
    decl: tuple[str, ...]
    is_assign: bool
    cmds: tuple[_Command, ...]

    def __str__(self) -> str:
        text = " | ".join(str(cmd) for cmd in self.cmds)
        if self.decl:
            return ", ".join(self.decl) + (" = " if self.is_assign else " := ") + text
        return text


@dataclass(frozen=True, slots=True)
class _Action:
    line: int
    pipe: _Pipe


@dataclass(frozen=True, slots=True)
class _Branch:
    """``if``, ``with`` or ``range``: ``else_list`` is None when there is no ``{{ else }}``."""

    keyword: str
    line: int
    pipe: _Pipe
    body: tuple[Any, ...]
    else_list: tuple[Any, ...] | None


@dataclass(frozen=True, slots=True)
class _LoopControl:
    keyword: str  # "break" or "continue"
    line: int


@dataclass(frozen=True, slots=True)
class _End:
    line: int

    def __str__(self) -> str:
        return "{{end}}"


@dataclass(frozen=True, slots=True)
class _Else:
    line: int

    def __str__(self) -> str:
        return "{{else}}"


def _go_rune(char: str) -> str:
    """A character as Go's ``%#U`` writes it: ``U+0041 'A'``."""
    code = f"U+{ord(char):04X}"
    return f"{code} '{char}'" if char.isprintable() else code


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unquote(text: str, line: int) -> str:
    """The value of a Go string or character literal, as ``strconv.Unquote`` reads it."""
    if text[0] == "`":
        return text[1:-1].replace("\r", "")
    quote, body = text[0], text[1:-1]
    out = bytearray()
    index = 0

    def fail() -> NoReturn:
        raise TemplateError(f"template: :{line}: invalid syntax in {text}")

    while index < len(body):
        char = body[index]
        if char != "\\":
            if char == quote:
                fail()
            out += char.encode("utf-8", "surrogatepass")
            index += 1
            continue
        escape = body[index + 1 : index + 2]
        index += 2
        if escape in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[escape].encode()
        elif escape == quote:
            out += quote.encode()
        elif escape in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[escape]
            digits = body[index : index + size]
            if len(digits) != size or any(d not in "0123456789abcdefABCDEF" for d in digits):
                fail()
            index += size
            if escape == "x":
                out.append(int(digits, 16))
            else:
                code = int(digits, 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    fail()
                out += chr(code).encode()
        elif escape in "01234567" and escape:
            digits = body[index - 1 : index + 2]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                fail()
            index += 2
            out.append(int(digits, 8))
        else:
            fail()
    return out.decode("utf-8", "replace")


def _number_value(token: _Token) -> int | float:
    """The value of a number or character constant, typed as Go's ideal constants are."""
    text = token.value
    if token.kind == _CHAR_CONSTANT:
        value = _unquote(text, token.line)
        if len(value) != 1:
            raise TemplateError(f"template: :{token.line}: malformed character constant: {text}")
        return ord(value)
    if text.endswith("i"):
        raise TemplateError(f"template: :{token.line}: complex numbers are not supported: {text}")
    body = text.lstrip("+-")
    negative = text.startswith("-")
    try:
        if len(body) > 1 and body[0] == "0" and body[1] in "01234567_":
            value: int | float = int(body.replace("_", ""), 8)  # Go's legacy octal: 017
        else:
            value = int(body, 0)
        return -value if negative else value
    except ValueError:
        pass
    try:
        if body[:2].lower() == "0x":
            value = float.fromhex(body.replace("_", ""))
        else:
            value = float(body)
    except ValueError:
        raise TemplateError(f"template: :{token.line}: illegal number syntax: {go_quote(text)}") from None
    return -value if negative else value


def _builtin_names() -> frozenset[str]:
    return frozenset(_FUNCTIONS) | {"and", "or"}


class _Parser:
    def __init__(self, tokens: list[_Token]):
        self.tokens = tokens
        self.index = 0
        self.vars = ["$"]
        self.range_depth = 0
        self.depth = 0
        self.functions = _builtin_names()

    # Token access, as Go's parser: spaces are tokens, skipped where they don't matter.
    def next(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def peek(self) -> _Token:
        return self.tokens[min(self.index, len(self.tokens) - 1)]

    def backup(self) -> None:
        self.index -= 1

    def next_non_space(self) -> _Token:
        token = self.next()
        while token.kind == _SPACE_RUN:
            token = self.next()
        return token

    def peek_non_space(self) -> _Token:
        while self.peek().kind == _SPACE_RUN:
            self.index += 1
        return self.peek()

    def error(self, message: str) -> NoReturn:
        token = self.tokens[min(max(self.index - 1, 0), len(self.tokens) - 1)]
        raise TemplateError(f"template: :{token.line}: {message}")

    def unexpected(self, token: _Token, context: str) -> NoReturn:
        self.error(f"unexpected {token} in {context}")

    def expect(self, kind: str, context: str) -> _Token:
        token = self.next_non_space()
        if token.kind != kind:
            self.unexpected(token, context)
        return token

    def declare(self, name: str) -> None:
        if len(self.vars) >= MAX_VARIABLES:
            self.error(f"template declares more than {MAX_VARIABLES} variables in one scope")
        self.vars.append(name)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.error(f"template nests deeper than {MAX_NESTING} levels")

    def leave(self) -> None:
        self.depth -= 1

    # Grammar.
    def parse(self) -> tuple[Any, ...]:
        nodes = []
        while self.peek().kind != _EOF:
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                self.error(f"unexpected {node}")
            nodes.append(node)
        return tuple(nodes)

    def text_or_action(self) -> Any:
        token = self.next_non_space()
        if token.kind == _TEXT:
            return _Text(token.value)
        if token.kind == _LEFT:
            return self.action()
        self.unexpected(token, "input")

    def action(self) -> Any:
        token = self.next_non_space()
        if token.kind == _KEYWORD:
            keyword = token.value
            if keyword in ("break", "continue"):
                return self.loop_control(keyword, token.line)
            if keyword == "else":
                return self.else_control(token.line)
            if keyword == "end":
                self.expect(_RIGHT, "end")
                return _End(token.line)
            if keyword in ("if", "with", "range"):
                return self.branch(keyword, token.line)
            self.error(f"{{{{{keyword}}}}} is not supported")
        self.backup()
        return _Action(token.line, self.pipeline("command", _RIGHT))

    def loop_control(self, keyword: str, line: int) -> _LoopControl:
        token = self.next_non_space()
        if token.kind != _RIGHT:
            self.unexpected(token, f"{{{{{keyword}}}}}")
        if self.range_depth == 0:
            self.error(f"{{{{{keyword}}}}} outside {{{{range}}}}")
        return _LoopControl(keyword, line)

    def else_control(self, line: int) -> _Else:
        # "{{else if ...}}" and "{{else with ...}}" leave the keyword for the enclosing branch.
        peek = self.peek_non_space()
        if not (peek.kind == _KEYWORD and peek.value in ("if", "with")):
            self.expect(_RIGHT, "else")
        return _Else(line)

    def branch(self, keyword: str, line: int) -> _Branch:
        self.enter()
        vars_mark = len(self.vars)
        pipe = self.pipeline(keyword, _RIGHT)
        if keyword == "range":
            self.range_depth += 1
        body, next_node = self.item_list()
        if keyword == "range":
            self.range_depth -= 1
        else_list = None
        if isinstance(next_node, _Else):
            peek = self.peek()
            if keyword in ("if", "with") and peek.kind == _KEYWORD and peek.value == keyword:
                # {{if a}}x{{else if b}}y{{end}} is {{if a}}x{{else}}{{if b}}y{{end}}{{end}}
                # with the inner {{end}} shared.
                self.next()
                else_list = (self.branch(keyword, peek.line),)
            else:
                else_list, next_node = self.item_list()
                if not isinstance(next_node, _End):
                    self.error(f"expected end; found {next_node}")
        del self.vars[vars_mark:]
        self.leave()
        return _Branch(keyword, line, pipe, body, else_list)

    def item_list(self) -> tuple[tuple[Any, ...], Any]:
        nodes = []
        while self.peek_non_space().kind != _EOF:
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                return tuple(nodes), node
            nodes.append(node)
        self.error("unexpected EOF")

    def pipeline(self, context: str, end: str) -> _Pipe:
        line = self.peek_non_space().line
        decl: list[str] = []
        is_assign = False
        while (variable := self.peek_non_space()).kind == _VARIABLE:
            variable_index = self.index
            self.next()
            following = self.peek_non_space()
            if following.kind in (_DECLARE, _ASSIGN):
                self.next()
                is_assign = following.kind == _ASSIGN
                decl.append(variable.value)
                self.declare(variable.value)
                break
            if following.kind == _CHAR and following.value == ",":
                self.next()
                decl.append(variable.value)
                self.declare(variable.value)
                if context == "range" and len(decl) < 2:
                    if self.peek_non_space().kind in (_VARIABLE, _RIGHT, _RPAREN):
                        continue
                    self.error("range can only initialize variables")
                self.error(f"too many declarations in {context}")
            # Not a declaration: the variable is the pipeline's first operand.
            self.index = variable_index
            break
        cmds = []
        while True:
            token = self.next_non_space()
            if token.kind == end:
                if not cmds:
                    self.error(f"missing value for {context}")
                for stage, cmd in enumerate(cmds[1:], start=2):
                    if isinstance(cmd.args[0], (_Literal, _Dot, _Nil)):
                        self.error(f"non executable command in pipeline stage {stage}")
                return _Pipe(line, tuple(decl), is_assign, tuple(cmds))
            if token.kind not in _OPERAND_STARTS:
                self.unexpected(token, context)
            self.backup()
            cmds.append(self.command())

    def command(self) -> _Command:
        args = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            token = self.next()
            if token.kind == _SPACE_RUN:
                continue
            if token.kind in (_RIGHT, _RPAREN):
                self.backup()
            elif token.kind != _PIPE:
                self.unexpected(token, "operand")
            break
        if not args:
            self.error("empty command")
        return _Command(tuple(args))

    def operand(self) -> Any:
        node = self.term()
        if node is None or self.peek().kind != _FIELD:
            return node
        idents = []
        while self.peek().kind == _FIELD:
            idents.append(self.next().value[1:])
        if isinstance(node, _Field):
            return _Field(node.idents + tuple(idents))
        if isinstance(node, _Variable):
            return _Variable(node.name, node.idents + tuple(idents))
        if isinstance(node, (_Literal, _Nil, _Dot)):
            self.error(f"unexpected . after term {go_quote(str(node))}")
        return _Chain(node, tuple(idents))

    def term(self) -> Any:
        token = self.next_non_space()
        kind = token.kind
        if kind == _IDENTIFIER:
            if token.value not in self.functions:
                self.error(f"function {go_quote(token.value)} not defined")
            return _Identifier(token.value)
        if kind == _DOT:
            return _Dot()
        if kind == _NIL:
            return _Nil()
        if kind == _VARIABLE:
            if token.value not in self.vars:
                self.error(f"undefined variable {go_quote(token.value)}")
            return _Variable(token.value)
        if kind == _FIELD:
            return _Field((token.value[1:],))
        if kind == _BOOL:
            return _Literal(token.value == "true", token.value)
        if kind in (_NUMBER, _CHAR_CONSTANT):
            return _Literal(_number_value(token), token.value)
        if kind in (_STRING, _RAW_STRING):
            return _Literal(_unquote(token.value, token.line), token.value)
        if kind == _LPAREN:
            self.enter()
            pipe = self.pipeline("parenthesized pipeline", _RPAREN)
            self.leave()
            return pipe
        self.backup()
        return None


# ----------------------------------------------------------------------------- tree analysis


def _identifiers(node: Any) -> Iterator[str]:
    """Every field and variable name a node refers to, as Ollama's ``template.Identifiers``."""
    if isinstance(node, tuple):
        for child in node:
            yield from _identifiers(child)
    elif isinstance(node, _Action):
        yield from _identifiers(node.pipe)
    elif isinstance(node, _Branch):
        yield from _identifiers(node.pipe)
        yield from _identifiers(node.body)
        if node.else_list is not None:
            yield from _identifiers(node.else_list)
    elif isinstance(node, _Pipe):
        for cmd in node.cmds:
            yield from _identifiers(cmd.args)
    elif isinstance(node, _Field):
        yield from node.idents
    elif isinstance(node, _Variable):
        yield node.name
        yield from node.idents
    elif isinstance(node, _Chain):
        # Ollama's walker stops at chains; looking inside finds (index .Messages 0).Content's
        # .Messages, which is what a template using it depends on.
        yield from _identifiers(node.node)
        yield from node.idents


class _ResponseCut:
    """Ollama's ``deleteNode`` pass: keep the tree up to the first ``.Response`` field, drop the rest.

    The walk visits nodes in Ollama's order and, like it, never looks inside the condition
    of a branch; the ``.Response`` field itself is kept.
    """

    def __init__(self) -> None:
        self.cut = False

    def list(self, nodes: tuple[Any, ...]) -> tuple[Any, ...]:
        kept = []
        for node in nodes:
            node = self.node(node)
            if node is not None:
                kept.append(node)
        return tuple(kept)

    def node(self, node: Any) -> Any:
        if self.cut:
            return None
        if isinstance(node, _Branch):
            body = self.list(node.body)
            # After a cut inside the body the else branch is gone (where Ollama panics).
            else_list = None if node.else_list is None or self.cut else self.list(node.else_list)
            return _Branch(node.keyword, node.line, node.pipe, body, else_list)
        if isinstance(node, _Action):
            pipe = self.pipe(node.pipe)
            return None if pipe is None else _Action(node.line, pipe)
        if isinstance(node, _Pipe):
            return self.pipe(node)
        if isinstance(node, _Field) and "Response" in node.idents:
            self.cut = True
        return node

    def pipe(self, pipe: _Pipe) -> _Pipe | None:
        cmds = []
        for cmd in pipe.cmds:
            args = tuple(arg for arg in map(self.node, cmd.args) if arg is not None)
            if not args:
                return None
            cmds.append(_Command(args))
        return _Pipe(pipe.line, pipe.decl, pipe.is_assign, tuple(cmds))


# ---------------------------------------------------------------------------------- executor

_MISSING = object()  # no value piped in from the previous command


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _FunctionError(Exception):
    """A builtin function's error; the executor adds which function and where."""


def _truth(value: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false; everything else true."""
    if value is None or value is _MISSING:
        return False
    if isinstance(value, (bool, int, float)):
        return value != 0
    if isinstance(value, (str, bytes, list, tuple, Mapping)):
        return len(value) > 0
    return True


def _has_own_str(value: Any) -> bool:
    """Whether ``value`` prints through a ``__str__`` of ours, as a Go type with a String() method."""
    for cls in type(value).__mro__:
        if "__str__" in cls.__dict__:
            return cls.__module__ != "builtins"
    return False


def _go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "[]uint8"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    return type(value).__name__


def format_value(value: Any) -> str:
    """``value`` as Go's fmt prints it with ``%v``."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if _has_own_str(value):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, (bytes, bytearray)):
        return "[" + " ".join(str(byte) for byte in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{format_value(k)}:{format_value(v)}" for k, v in _sorted_items(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(format_value(item) for item in value) + "]"
    if is_dataclass(value) and not isinstance(value, type):
        return "{" + " ".join(format_value(getattr(value, f.name)) for f in fields(value)) + "}"
    return f"<{type(value).__name__}>"


def _sorted_items(mapping: Mapping) -> list[tuple[Any, Any]]:
    # Go visits and prints map entries in key order.
    try:
        return sorted(mapping.items(), key=lambda item: item[0])
    except TypeError:
        return list(mapping.items())


class _Execution:
    """One run of a template: the variable stack, the output so far, and the budgets."""

    def __init__(self, data: Any, max_output: int, max_steps: int):
        self.vars: list[list[Any]] = [["$", data]]
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.max_output = max_output
        self.max_steps = max_steps
        self.line = 0
        self.node: Any = None

    def error(self, message: str) -> NoReturn:
        where = f" at <{self.node}>" if self.node is not None else ""
        raise TemplateError(f"template: :{self.line}: executing{where}: {message}")

    def step(self, cost: int = 1) -> None:
        self.steps += cost
        if self.steps > self.max_steps:
            self.error(f"template took more than {self.max_steps} steps")

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.max_output:
            self.error(f"template output exceeds {self.max_output} characters")
        self.out.append(text)

    # Walking the tree.
    def walk_list(self, dot: Any, nodes: tuple[Any, ...]) -> None:
        for node in nodes:
            self.walk(dot, node)

    def walk(self, dot: Any, node: Any) -> None:
        self.step()
        if isinstance(node, _Text):
            self.write(node.text)
        elif isinstance(node, _Action):
            self.line, self.node = node.line, node.pipe
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.write("<no value>" if value is None or value is _MISSING else format_value(value))
        elif isinstance(node, _Branch):
            self.line, self.node = node.line, node.pipe
            if node.keyword == "range":
                self.walk_range(dot, node)
            else:
                self.walk_if_or_with(dot, node)
        elif isinstance(node, _LoopControl):
            raise _Break() if node.keyword == "break" else _Continue()

    def walk_if_or_with(self, dot: Any, node: _Branch) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if _truth(value):
                self.walk_list(value if node.keyword == "with" else dot, node.body)
            elif node.else_list is not None:
                self.walk_list(dot, node.else_list)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: Any, node: _Branch) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            body_mark = len(self.vars)
            decl = node.pipe.decl
            ran = False
            for index, element in self.range_items(value, len(decl)):
                ran = True
                self.step()
                if node.pipe.is_assign:
                    if len(decl) > 1:
                        self.set_var(decl[0], index)
                        self.set_var(decl[1], element)
                    elif decl:
                        self.set_var(decl[0], element)
                elif decl:
                    # The declared variables are the top of the stack: element last, index before it.
                    self.vars[-1][1] = element
                    if len(decl) > 1:
                        self.vars[-2][1] = index
                try:
                    self.walk_list(element, node.body)
                except _Continue:
                    pass
                except _Break:
                    break
                finally:
                    del self.vars[body_mark:]
            if not ran and node.else_list is not None:
                self.walk_list(dot, node.else_list)
        finally:
            del self.vars[mark:]

    def range_items(self, value: Any, variables: int) -> Iterator[tuple[Any, Any]]:
        if value is None:
            return iter(())
        if isinstance(value, (list, tuple, bytes)):
            return enumerate(value)
        if isinstance(value, Mapping):
            return iter(_sorted_items(value))
        if isinstance(value, int) and not isinstance(value, bool):
            if variables > 1:
                self.error(f"can't use {value} to iterate over more than one variable")
            return ((number, number) for number in range(value))
        self.error(f"range can't iterate over {format_value(value)}")

    # Variables: a stack of [name, value], innermost last, searched from the top.
    def find_var(self, name: str) -> list[Any]:
        for depth, entry in enumerate(reversed(self.vars)):
            if entry[0] == name:
                self.step(depth // _VARIABLES_PER_STEP)
                return entry
        self.error(f"undefined variable: {name}")

    def var_value(self, name: str) -> Any:
        return self.find_var(name)[1]

    def set_var(self, name: str, value: Any) -> None:
        self.find_var(name)[1] = value

    # Evaluation.
    def eval_pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.vars.append([name, value])
        return value

    def eval_command(self, dot: Any, cmd: _Command, final: Any) -> Any:
        self.step()
        first = cmd.args[0]
        if isinstance(first, _Field):
            return self.eval_field_chain(dot, first, first.idents, cmd.args, final)
        if isinstance(first, _Chain):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, _Identifier):
            return self.eval_function(dot, first, cmd.args, final)
        if isinstance(first, _Variable):
            return self.eval_variable(dot, first, cmd.args, final)
        if len(cmd.args) > 1 or final is not _MISSING:
            self.error(f"can't give argument to non-function {first}")
        if isinstance(first, _Pipe):
            return self.eval_pipeline(dot, first)
        if isinstance(first, _Dot):
            return dot
        if isinstance(first, _Nil):
            self.error("nil is not a command")
        return first.value

    def eval_arg(self, dot: Any, node: Any) -> Any:
        self.step()
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _Field):
            return self.eval_field_chain(dot, node, node.idents, (node,), _MISSING)
        if isinstance(node, _Variable):
            return self.eval_variable(dot, node, (node,), _MISSING)
        if isinstance(node, _Pipe):
            return self.eval_pipeline(dot, node)
        if isinstance(node, _Identifier):
            return self.eval_function(dot, node, (node,), _MISSING)
        if isinstance(node, _Chain):
            return self.eval_chain(dot, node, (node,), _MISSING)
        return node.value

    def eval_variable(self, dot: Any, node: _Variable, args: tuple[Any, ...], final: Any) -> Any:
        value = self.var_value(node.name)
        if not node.idents:
            if len(args) > 1 or final is not _MISSING:
                self.error(f"can't give argument to non-function {node}")
            return value
        return self.eval_field_chain(value, node, node.idents, args, final)

    def eval_chain(self, dot: Any, node: _Chain, args: tuple[Any, ...], final: Any) -> Any:
        if isinstance(node.node, _Nil):
            self.error(f"indirection through explicit nil in {node}")
        receiver = self.eval_arg(dot, node.node)
        return self.eval_field_chain(receiver, node, node.idents, args, final)

    def eval_field_chain(
        self, receiver: Any, node: Any, idents: tuple[str, ...], args: tuple[Any, ...], final: Any
    ) -> Any:
        for ident in idents[:-1]:
            receiver = self.eval_field(receiver, ident, node, has_args=False)
        return self.eval_field(receiver, idents[-1], node, has_args=len(args) > 1 or final is not _MISSING)

    def eval_field(self, receiver: Any, name: str, node: Any, has_args: bool) -> Any:
        if receiver is None or receiver is _MISSING:
            self.error(f"nil pointer evaluating {node}")
        if isinstance(receiver, Mapping):
            if has_args:
                self.error(f"{name} is not a method but has arguments")
            # missingkey=zero, as Ollama parses templates: a missing key is nil.
            return receiver.get(name)
        if is_dataclass(receiver) and not isinstance(receiver, type):
            if any(f.name == name for f in fields(receiver)):
                if has_args:
                    self.error(f"{name} has arguments but cannot be invoked as function")
                return getattr(receiver, name)
        self.error(f"can't evaluate field {name} in type {_go_type(receiver)}")

    def eval_function(self, dot: Any, node: _Identifier, args: tuple[Any, ...], final: Any) -> Any:
        name = node.name
        operands = args[1:]
        count = len(operands) + (final is not _MISSING)
        if name in ("and", "or"):
            # Go 1.18+: arguments are evaluated only until the result is known.
            if count == 0:
                self.error(f"wrong number of args for {name}: want at least 1 got 0")
            value: Any = None
            for operand in operands:
                value = self.eval_arg(dot, operand)
                if _truth(value) == (name == "or"):
                    return value
            return final if final is not _MISSING else value
        function, least, most = _FUNCTIONS[name]
        values = [self.eval_arg(dot, operand) for operand in operands]
        if final is not _MISSING:
            values.append(final)
        if count < least or (most is not None and count > most):
            want = f"{least}" if least == most else f"at least {least}"
            self.error(f"wrong number of args for {name}: want {want} got {count}")
        try:
            result = function(*values)
        except _FunctionError as exc:
            self.error(f"error calling {name}: {exc}")
        if isinstance(result, str) and len(result) > self.max_output:
            self.error(f"{name} result exceeds {self.max_output} characters")
        self.step(sum(map(_size, values), _size(result)) // _ITEMS_PER_STEP)
        return result


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, bytearray, list, tuple, Mapping)) else 0


# -------------------------------------------------------------------------------- functions

_BASIC_KINDS = ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"))


def _basic_kind(value: Any) -> str | None:
    for cls, kind in _BASIC_KINDS:
        if isinstance(value, cls):
            return kind
    return None


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise _FunctionError("missing argument for comparison")
    first_kind = _basic_kind(first)
    for other in others:
        other_kind = _basic_kind(other)
        if first_kind != other_kind:
            if first is not None and other is not None:
                raise _FunctionError("incompatible types for comparison")
            equal = False
        elif first_kind is not None:
            equal = first == other
        elif first is None or other is None:
            equal = first is None and other is None
        elif type(first) is not type(other):
            raise _FunctionError(f"non-comparable types {_go_type(first)} and {_go_type(other)}")
        elif isinstance(first, (list, tuple, Mapping, bytes, bytearray)):
            raise _FunctionError(f"non-comparable type {_go_type(first)}")
        else:
            equal = first == other
        if equal:
            return True
    return False


def _ne(first: Any, second: Any) -> bool:
    return not _eq(first, second)


def _lt(first: Any, second: Any) -> bool:
    first_kind, second_kind = _basic_kind(first), _basic_kind(second)
    if first_kind in (None, "bool") or second_kind in (None, "bool"):
        raise _FunctionError("invalid type for comparison")
    if first_kind != second_kind:
        raise _FunctionError("incompatible types for comparison")
    return first < second


def _le(first: Any, second: Any) -> bool:
    return _lt(first, second) or _eq(first, second)


def _gt(first: Any, second: Any) -> bool:
    return not _le(first, second)


def _ge(first: Any, second: Any) -> bool:
    return not _lt(first, second)


def _not(value: Any) -> bool:
    return not _truth(value)


def _len(value: Any) -> int:
    if value is None:
        raise _FunctionError("len of nil pointer")
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))  # Go counts bytes
    if isinstance(value, (bytes, bytearray, list, tuple, Mapping)):
        return len(value)
    raise _FunctionError(f"len of type {_go_type(value)}")


def _index_arg(index: Any, limit: int) -> int:
    if index is None:
        raise _FunctionError("cannot index slice/array with nil")
    if not isinstance(index, int) or isinstance(index, bool):
        raise _FunctionError(f"cannot index slice/array with type {_go_type(index)}")
    if index < 0 or index > limit:
        raise _FunctionError(f"index out of range: {index}")
    return index


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise _FunctionError("index of untyped nil")
    for index in indexes:
        if isinstance(item, str):
            item = item.encode("utf-8", "surrogatepass")
        if isinstance(item, (bytes, bytearray, list, tuple)):
            position = _index_arg(index, len(item))
            if position == len(item):
                raise _FunctionError(f"index out of range: {position}")
            item = item[position]
        elif isinstance(item, Mapping):
            if not isinstance(index, str):
                raise _FunctionError(f"value has type {_go_type(index)}; should be string")
            item = item.get(index)
        elif item is None:
            raise _FunctionError("index of nil pointer")
        else:
            raise _FunctionError(f"can't index item of type {_go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise _FunctionError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FunctionError(f"too many slice indexes: {len(indexes)}")
    is_string = isinstance(item, str)
    if is_string:
        if len(indexes) == 3:
            raise _FunctionError("cannot 3-index slice a string")
        sequence: Any = item.encode("utf-8", "surrogatepass")
    elif isinstance(item, (bytes, bytearray, list, tuple)):
        sequence = item
    else:
        raise _FunctionError(f"can't slice item of type {_go_type(item)}")
    bounds = [0, len(sequence), len(sequence)]
    for position, index in enumerate(indexes):
        bounds[position] = _index_arg(index, len(sequence))
    if bounds[0] > bounds[1]:
        raise _FunctionError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(indexes) == 3 and bounds[1] > bounds[2]:
        raise _FunctionError(f"invalid slice index: {bounds[1]} > {bounds[2]}")
    result = sequence[bounds[0] : bounds[1]]
    return result.decode("utf-8", "replace") if is_string else result


def _sprint(*values: Any) -> str:
    """Go's ``fmt.Sprint``: a space between operands when neither side is a string."""
    out = []
    for position, value in enumerate(values):
        if position and not isinstance(value, str) and not isinstance(values[position - 1], str):
            out.append(" ")
        out.append(format_value(value))
    return "".join(out)


def _sprintln(*values: Any) -> str:
    return " ".join(format_value(value) for value in values) + "\n"


def _escape_args(values: tuple[Any, ...]) -> str:
    if len(values) == 1 and isinstance(values[0], str):
        return values[0]
    return _sprint(*values)


_HTML_ESCAPES = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}


def _html(*values: Any) -> str:
    return "".join(_HTML_ESCAPES.get(char, char) for char in _escape_args(values))


_JS_ESCAPES = {
    "\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D",
}


def _js(*values: Any) -> str:
    out = []
    for char in _escape_args(values):
        if char in _JS_ESCAPES:
            out.append(_JS_ESCAPES[char])
        elif char < " " or (char >= "\x80" and not char.isprintable()):
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return "".join(out)


def _urlquery(*values: Any) -> str:
    return urllib.parse.quote_plus(_escape_args(values))


def _json(value: Any) -> str:
    try:
        return marshal_json(value)
    except (ValueError, RecursionError):
        return ""  # Ollama's json func ignores the marshal error


def _current_date(*_layout: Any) -> str:
    # Ollama accepts a layout argument and ignores it.
    return datetime.date.today().isoformat()


def _yesterday_date(*_layout: Any) -> str:
    return (datetime.date.today() - datetime.timedelta(days=1)).isoformat()


def _to_typescript_type(value: Any) -> str:
    return value.typescript_type() if isinstance(value, ToolProperty) else "any"


def _printf(layout: Any, *values: Any) -> str:
    if not isinstance(layout, str):
        raise _FunctionError(f"wrong type for value; expected string; got {_go_type(layout)}")
    return _Formatter(layout, values).run()


class _Formatter:
    """Go's ``fmt.Sprintf`` for the verbs templates use, with Go's ``%!verb(type=value)`` complaints."""

    def __init__(self, layout: str, values: tuple[Any, ...]):
        self.layout = layout
        self.values = values
        self.next_value = 0

    def run(self) -> str:
        layout, out = self.layout, []
        position = 0
        while position < len(layout):
            percent = layout.find("%", position)
            if percent < 0:
                out.append(layout[position:])
                break
            out.append(layout[position:percent])
            position = percent + 1
            flags = ""
            while position < len(layout) and layout[position] in "-+# 0":
                flags += layout[position]
                position += 1
            width, position, bad_width = self.number(position)
            precision = None
            bad_precision = False
            if layout[position : position + 1] == ".":
                precision, position, bad_precision = self.number(position + 1)
                precision = precision or 0
            if position >= len(layout):
                out.append("%!(NOVERB)")
                break
            verb = layout[position]
            position += 1
            if bad_width:
                out.append("%!(BADWIDTH)")
            if bad_precision:
                out.append("%!(BADPREC)")
            if verb == "%":
                out.append("%")
                continue
            if self.next_value >= len(self.values):
                out.append(f"%!{verb}(MISSING)")
                continue
            value = self.values[self.next_value]
            self.next_value += 1
            out.append(_format_verb(verb, value, flags, width, precision))
        if self.next_value < len(self.values):
            extra = ", ".join(f"{_go_type(value)}={format_value(value)}" for value in self.values[self.next_value :])
            out.append(f"%!(EXTRA {extra})")
        return "".join(out)

    def number(self, position: int) -> tuple[int | None, int, bool]:
        """A width or precision: digits, or ``*`` taking an int argument. Returns (value, position, bad)."""
        layout = self.layout
        if layout[position : position + 1] == "*":
            if self.next_value >= len(self.values):
                return None, position + 1, True
            value = self.values[self.next_value]
            self.next_value += 1
            if not isinstance(value, int) or isinstance(value, bool) or abs(value) > _MAX_FORMAT_WIDTH:
                return None, position + 1, True
            return value, position + 1, False
        end = position
        while end < len(layout) and layout[end].isdigit() and layout[end].isascii():
            end += 1
        if end == position:
            return None, position, False
        value = int(layout[position:end])
        if value > _MAX_FORMAT_WIDTH:
            return None, end, True
        return value, end, False


def _bad_verb(verb: str, value: Any) -> str:
    if value is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_go_type(value)}={format_value(value)})"


def _pad(text: str, flags: str, width: int | None, numeric: bool = False) -> str:
    if width is None or len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if "0" in flags and numeric:
        sign = text[0] if text[:1] in ("+", "-", " ") else ""
        return sign + text[len(sign):].rjust(width - len(sign), "0")
    return text.rjust(width)


def _signed(text: str, negative: bool, flags: str) -> str:
    if negative:
        return "-" + text
    if "+" in flags:
        return "+" + text
    if " " in flags:
        return " " + text
    return text


def _format_verb(verb: str, value: Any, flags: str, width: int | None, precision: int | None) -> str:
    if value is None:
        return _pad("<nil>", flags, width) if verb == "v" else _bad_verb(verb, value)
    if isinstance(value, bool):
        if verb in "vt":
            return _pad("true" if value else "false", flags, width)
        return _bad_verb(verb, value)
    if isinstance(value, int):
        return _format_int(verb, value, flags, width, precision)
    if isinstance(value, float):
        return _go_float(verb, value, flags, width, precision)
    if isinstance(value, str) or (_has_own_str(value) and verb in "vsqxX"):
        return _format_string(verb, value if isinstance(value, str) else str(value), flags, width, precision)
    if verb in "vs":
        return _pad(format_value(value), flags, width)
    return _bad_verb(verb, value)


def _format_int(verb: str, value: int, flags: str, width: int | None, precision: int | None) -> str:
    magnitude = abs(value)
    if verb in "vd":
        digits = str(magnitude)
    elif verb in "xX":
        digits = format(magnitude, "x" if verb == "x" else "X")
        if "#" in flags:
            digits = ("0x" if verb == "x" else "0X") + digits
    elif verb == "o":
        digits = format(magnitude, "o")
        if "#" in flags:
            digits = "0" + digits
    elif verb == "O":
        digits = "0o" + format(magnitude, "o")
    elif verb == "b":
        digits = format(magnitude, "b")
    elif verb == "c":
        return _pad(chr(value) if 0 <= value <= 0x10FFFF else "\ufffd", flags, width)
    elif verb == "q":
        return _pad("'" + go_quote(chr(value) if 0 <= value <= 0x10FFFF else "\ufffd")[1:-1] + "'", flags, width)
    elif verb == "U":
        return _pad(f"U+{value:04X}", flags, width)
    else:
        return _bad_verb(verb, value)
    if precision is not None:
        digits = digits.rjust(precision, "0")
    return _pad(_signed(digits, value < 0, flags), flags, width, numeric=precision is None)


def _go_float(verb: str, value: float, flags: str, width: int | None, precision: int | None) -> str:
    if verb not in "vfFeEgG":
        return _bad_verb(verb, value)
    if value != value or value in (float("inf"), float("-inf")):
        text = go_float(value)
        if text == "+Inf" and "+" not in flags:
            text = "Inf"
        return _pad(text, flags, width)
    magnitude = abs(value)
    negative = value < 0 or (value == 0 and str(value).startswith("-"))
    if verb in "vgG" and precision is None:
        text = go_float(magnitude)
        if verb == "G":
            text = text.upper()
    elif verb in "gG":
        text = format(magnitude, f".{max(precision, 1)}{verb.lower()}")
        if verb == "G":
            text = text.upper()
    else:
        text = format(magnitude, f".{6 if precision is None else precision}{verb.lower() if verb != 'F' else 'f'}")
        if verb == "E":
            text = text.upper()
    return _pad(_signed(text, negative, flags), flags, width, numeric=True)


def _format_string(verb: str, text: str, flags: str, width: int | None, precision: int | None) -> str:
    if precision is not None:
        text = text[:precision]
    if verb in "vs":
        return _pad(text, flags, width)
    if verb == "q":
        return _pad(go_quote(text), flags, width)
    if verb in "xX":
        encoded = text.encode("utf-8", "surrogatepass").hex()
        return _pad(encoded.upper() if verb == "X" else encoded, flags, width)
    return _bad_verb(verb, text)


# name → (function, least arguments, most arguments or None for any number)
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "eq": (_eq, 1, None),
    "ne": (_ne, 2, 2),
    "lt": (_lt, 2, 2),
    "le": (_le, 2, 2),
    "gt": (_gt, 2, 2),
    "ge": (_ge, 2, 2),
    "not": (_not, 1, 1),
    "len": (_len, 1, 1),
    "index": (_index, 1, None),
    "slice": (_slice, 1, None),
    "print": (_sprint, 0, None),
    "printf": (_printf, 1, None),
    "println": (_sprintln, 0, None),
    "html": (_html, 0, None),
    "js": (_js, 0, None),
    "urlquery": (_urlquery, 0, None),
    "json": (_json, 1, 1),
    "currentDate": (_current_date, 0, None),
    "yesterdayDate": (_yesterday_date, 0, None),
    "toTypeScriptType": (_to_typescript_type, 1, 1),
}


# ------------------------------------------------------------------------------------- API


class GoTemplate:
    """A parsed Go template. Parsing raises TemplateError with Go's line-numbered message."""

    def __init__(self, source: str, *, max_output: int = MAX_OUTPUT_CHARS, max_steps: int = MAX_STEPS):
        self.source = source
        self.max_output = max_output
        self.max_steps = max_steps
        self._root = _Parser(_Lexer(source).run()).parse()

    def execute(self, data: Any) -> str:
        """The template's output for ``data`` (dicts and dataclasses, read by Go field name)."""
        return self._execute(self._root, data)

    def execute_cut_at_response(self, data: Any) -> str:
        """Execute everything up to and including the first ``.Response`` field; drop what follows.

        Ollama renders the last turn of a legacy (non-``.Messages``) template this way, so the
        prompt ends where the model's answer begins.
        """
        return self._execute(_ResponseCut().list(self._root), data)

    def variables(self) -> set[str]:
        """Lower-cased names of the fields and variables the template refers to, as Ollama's ``Vars()``.

        ``.Messages`` gives ``messages``; ``$.Tools`` gives ``$`` and ``tools``; fields read off
        the dot inside a range count too (``.Content`` gives ``content``).
        """
        return {name.lower() for name in _identifiers(self._root)}

    def _execute(self, root: tuple[Any, ...], data: Any) -> str:
        execution = _Execution(data, self.max_output, self.max_steps)
        try:
            execution.walk_list(data, root)
        except RecursionError:
            raise TemplateError("template: data nested too deeply to render") from None
        return "".join(execution.out)
