"""The GGUF ``tokenizer.chat_template`` fallback: Hugging Face chat templates in sandboxed Jinja.

A chat template ships inside a model file, so it is hostile input (CVE-2024-34359 ran code
from one). It renders only in Jinja's ImmutableSandboxedEnvironment, with the globals and
filters Hugging Face's ``apply_chat_template`` provides, and under limits: on the source
size, the output size, the render time, the memory a render may grow by, and the size of
any one string or number an expression may build.
"""

from __future__ import annotations

import functools
import json
import re
import resource
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from herd.core.templates.gotemplate import MAX_OUTPUT_CHARS, TemplateError
from herd.core.templates.values import Values

MAX_SOURCE_CHARS = 1024 * 1024
RENDER_SECONDS = 2.0
RENDER_MEMORY_GROWTH = 256 * 1024 * 1024
# Larger than any width, repeat count or argument a chat template needs; small enough that
# the string it asks for is harmless.
MAX_ARGUMENT = 1_000_000
_WIDE_FORMAT = re.compile(r"\d{7,}")  # a format width or precision of a million or more


def _raise_exception(message: str) -> None:
    """What templates call to reject a conversation (``raise_exception('Roles must alternate')``)."""
    raise TemplateError(str(message))


def _strftime_now(layout: str) -> str:
    return datetime.now().strftime(layout)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Hugging Face's tojson: plain json.dumps, without Jinja's HTML escaping or key sorting,
    # which is what the templates were written against.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationTag(Extension):
    """``{% generation %}…{% endgeneration %}``: Hugging Face marks assistant text with it; it renders its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _check_argument(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT:
        raise SecurityError(f"argument {value} is too large")


def _check_format(layout: str) -> None:
    if _WIDE_FORMAT.search(layout):
        raise SecurityError("format width is too large")


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class _ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
    """Hugging Face's chat-template environment, sandboxed and bounded."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, max_output: int) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationTag])
        self.max_output = max_output
        self.filters = {name: _bounded_filter(function) for name, function in self.filters.items()}
        self.filters["tojson"] = _bounded_filter(_tojson)
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
                    if len(sequence) * count > self.max_output:
                        raise SecurityError("repetition result is too large")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
                if right * abs(left).bit_length() > 64 * 1024:
                    raise SecurityError("power result is too large")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        for value in (*args, *kwargs.values()):
            _check_argument(value)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format(value.__self__)
        return wrapped


def _bounded_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` refusing huge extra arguments (``center(10**9)``) and huge format widths."""
    # Filters that take the context or environment get it before the value.
    leading = 2 if hasattr(function, "jinja_pass_arg") else 1

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[leading:], *kwargs.values()):
            _check_argument(value)
        if function.__name__ == "do_format" and len(args) >= leading and isinstance(args[leading - 1], str):
            _check_format(args[leading - 1])
        return function(*args, **kwargs)

    return bounded


class _RenderBudget:
    """Aborts a render that runs too long or grows the process too much.

    A trace function sees each line the compiled template executes (and only those). Every
    line is checked, because one line can double a string: a template looping forever, or
    doubling a string on every iteration, stops at the first line past a limit.
    """

    def __init__(self, seconds: float, memory_growth: int) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.memory_limit = _max_rss_bytes() + memory_growth

    def trace_calls(self, frame: Any, event: str, arg: Any) -> Callable[..., Any] | None:
        return self.trace_lines if frame.f_code.co_filename == "<template>" else None

    def trace_lines(self, frame: Any, event: str, arg: Any) -> Callable[..., Any]:
        if time.monotonic() > self.deadline:
            raise TemplateError(f"chat template took longer than {self.seconds:g}s to render")
        if _max_rss_bytes() > self.memory_limit:
            raise TemplateError("chat template used too much memory")
        return self.trace_lines


class JinjaPromptTemplate:
    """A GGUF chat template, rendered as Hugging Face's ``apply_chat_template(add_generation_prompt=True)``."""

    def __init__(
        self,
        source: str,
        bos_token: str = "",
        eos_token: str = "",
        *,
        max_output: int = MAX_OUTPUT_CHARS,
        render_seconds: float = RENDER_SECONDS,
    ) -> None:
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(f"chat template is larger than {MAX_SOURCE_CHARS} characters")
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.max_output = max_output
        self.render_seconds = render_seconds
        try:
            self._template = _ChatTemplateEnvironment(max_output).from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"chat template: line {exc.lineno}: {exc.message}") from None
        except (jinja2.TemplateError, RecursionError, MemoryError) as exc:
            raise TemplateError(f"chat template: {_describe(exc)}") from None

    def variables(self) -> set[str]:
        """``messages``, and ``tools`` when the template mentions tools (which makes the model tool-capable)."""
        return {"messages", "tools"} if "tools" in self.source else {"messages"}

    def render(self, values: Values) -> str:
        messages = [message.to_dict() for message in values.messages]
        if not messages and values.prompt:
            messages = [{"role": "user", "content": values.prompt}]
        context = {
            "messages": messages,
            "tools": [tool.to_dict() for tool in values.tools] or None,
            "add_generation_prompt": True,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        }
        budget = _RenderBudget(self.render_seconds, RENDER_MEMORY_GROWTH)
        pieces: list[str] = []
        size = 0
        previous_trace = sys.gettrace()
        sys.settrace(budget.trace_calls)
        try:
            for piece in self._template.generate(context):
                size += len(piece)
                if size > self.max_output:
                    raise TemplateError(f"chat template output exceeds {self.max_output} characters")
                pieces.append(piece)
        except TemplateError:
            raise
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"chat template: line {exc.lineno}: {exc.message}") from None
        except Exception as exc:  # a hostile or broken template can raise anything Python can
            raise TemplateError(f"chat template: {_describe(exc)}") from None
        finally:
            sys.settrace(previous_trace)
        return "".join(pieces)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "recursion too deep"
    if isinstance(exc, MemoryError):
        return "out of memory"
    message = str(exc)
    if isinstance(exc, jinja2.TemplateError):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
