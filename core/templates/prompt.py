"""Turning a conversation into the prompt text a model reads, as Ollama's ``template.Execute`` does.

A model's TEMPLATE layer (Go template) wins; a GGUF without one falls back to its
``tokenizer.chat_template`` (Jinja); with neither, the prompt is the user's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from herd.core.templates.gotemplate import GoTemplate, TemplateError
from herd.core.templates.jinja import MAX_SOURCE_CHARS, JinjaPromptTemplate
from herd.core.templates.values import Message, ToolList, Values

DEFAULT_TEMPLATE = "{{ .Prompt }}"


class PromptTemplate(Protocol):
    def render(self, values: Values) -> str:
        """The prompt for ``values``; raises TemplateError."""
        ...

    def variables(self) -> set[str]:
        """Lower-cased names the template refers to (``messages``, ``tools``, ``suffix``…)."""
        ...


def collate(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """All system texts joined by blank lines, and the messages with same-role runs merged.

    As Ollama: consecutive messages of one role (tool results excepted) become one whose
    content is joined by a blank line; system messages stay in the list too.
    """
    system = []
    collated: list[Message] = []
    for message in messages:
        if message.Role == "system":
            system.append(message.Content)
        if collated and collated[-1].Role == message.Role and message.Role != "tool":
            collated[-1] = replace(collated[-1], Content=collated[-1].Content + "\n\n" + message.Content)
        else:
            collated.append(message)
    return "\n\n".join(system), collated


class GoPromptTemplate:
    """A Go template, executed with the data Ollama gives it for each kind of request."""

    def __init__(self, source: str):
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(f"template is larger than {MAX_SOURCE_CHARS} characters")
        self.source = source
        template = GoTemplate(source)
        names = template.variables()
        if "messages" not in names and "response" not in names:
            # Ollama appends {{ .Response }} to templates that never place the answer, so a
            # conversation's earlier replies still reach the prompt.
            template = GoTemplate(source + "{{ .Response }}")
        self._template = template
        self._variables = template.variables()

    def variables(self) -> set[str]:
        return set(self._variables)

    def render(self, values: Values) -> str:
        think = {"Think": values.think, "ThinkLevel": values.think_level, "IsThinkSet": values.is_think_set}
        if values.prompt and values.suffix:
            return self._template.execute({"Prompt": values.prompt, "Suffix": values.suffix, "Response": "", **think})
        system, messages = collate(values.messages)
        if "messages" in self._variables:
            return self._template.execute({
                "System": system,
                "Messages": tuple(messages),
                "Tools": ToolList(values.tools),
                "Response": "",
                **think,
            })
        return self._render_turns(messages, think)

    def _render_turns(self, messages: list[Message], think: dict[str, Any]) -> str:
        """Ollama's legacy path for templates without ``.Messages``: one execution per exchange.

        Each completed system/user/assistant exchange renders the whole template; the last,
        open one renders only up to ``{{ .Response }}``, where the model takes over.
        """
        parts: list[str] = []
        size = 0
        turn = {"System": "", "Prompt": "", "Response": ""}

        def flush() -> None:
            nonlocal size
            text = self._template.execute({**turn, **think})
            size += len(text)
            if size > self._template.max_output:
                raise TemplateError(f"template output exceeds {self._template.max_output} characters")
            parts.append(text)
            turn.update(System="", Prompt="", Response="")

        for message in messages:
            if message.Role == "system":
                if turn["Prompt"] or turn["Response"]:
                    flush()
                turn["System"] = message.Content
            elif message.Role == "user":
                if turn["Response"]:
                    flush()
                turn["Prompt"] = message.Content
            elif message.Role == "assistant":
                turn["Response"] = message.Content
        last = self._template.execute_cut_at_response({**turn, **think})
        if size + len(last) > self._template.max_output:
            raise TemplateError(f"template output exceeds {self._template.max_output} characters")
        parts.append(last)
        return "".join(parts)


def load_template(go_source: str | None, jinja_source: str | None, bos: str, eos: str) -> PromptTemplate:
    """The model's prompt template: its TEMPLATE layer, else its GGUF chat template, else ``{{ .Prompt }}``.

    Raises TemplateError when the chosen template does not parse.
    """
    if go_source:
        return GoPromptTemplate(go_source)
    if jinja_source:
        return JinjaPromptTemplate(jinja_source, bos_token=bos, eos_token=eos)
    return GoPromptTemplate(DEFAULT_TEMPLATE)
