"""The Go text/template engine: what a template prints, and the errors it raises, as Go's would."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from herd.core.templates.gotemplate import MAX_NESTING, MAX_VARIABLES, GoTemplate, TemplateError
from herd.core.templates.values import JsonMap, Message, Tool, ToolCall, ToolCallFunction, ToolList


def render(source: str, data: Any = None) -> str:
    return GoTemplate(source).execute({} if data is None else data)


# --- text, trimming and comments ----------------------------------------------------------------


def test_text_without_actions_is_copied() -> None:
    assert render("plain text\n with newlines\n") == "plain text\n with newlines\n"


def test_trim_markers_remove_whitespace_on_their_side_only() -> None:
    assert render("a \n {{- .X -}} \n b", {"X": 1}) == "a1b"
    assert render("a \n {{- .X }} \n b", {"X": 1}) == "a1 \n b"
    assert render("a \n {{ .X -}} \n b", {"X": 1}) == "a \n 1b"


def test_minus_without_space_is_a_negative_number_not_a_trim() -> None:
    assert render("a {{-3}} b") == "a -3 b"


def test_comments_print_nothing_and_may_trim() -> None:
    assert render("a{{/* a comment */}}b") == "ab"
    assert render("a \n{{- /* spans\nlines */ -}}\n b") == "ab"


# --- printing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 42 }}", "42"),
        ("{{ -7 }}", "-7"),
        ("{{ 0x1F }}", "31"),
        ("{{ 1.5 }}", "1.5"),
        ("{{ 1.0 }}", "1"),
        ("{{ 1e6 }}", "1e+06"),
        ("{{ 123456.0 }}", "123456"),
        ("{{ 0.00001 }}", "1e-05"),
        ("{{ true }} {{ false }}", "true false"),
        ("{{ 'a' }}", "97"),
        ('{{ "tab\\there" }}', "tab\there"),
        ("{{ `raw\\n` }}", "raw\\n"),
    ],
)
def test_literals_print_as_go_prints_them(source: str, expected: str) -> None:
    assert render(source) == expected


def test_values_print_as_go_fmt_prints_them() -> None:
    data = {"List": [1, "a", 2.5], "Map": {"b": 1, "a": [2]}, "Nil": None, "Empty": []}
    assert render("{{ .List }}|{{ .Map }}|{{ .Empty }}", data) == "[1 a 2.5]|map[a:[2] b:1]|[]"


def test_missing_key_and_nil_print_no_value() -> None:
    assert render("[{{ .Missing }}][{{ .Nil }}]", {"Nil": None}) == "[<no value>][<no value>]"


def test_values_with_a_string_method_print_through_it() -> None:
    arguments = JsonMap({"city": "Paris", "days": 3})
    assert render("{{ .Args }}", {"Args": arguments}) == '{"city":"Paris","days":3}'


# --- fields and variables -----------------------------------------------------------------------


def test_fields_chain_through_dicts_and_dataclasses() -> None:
    message = Message("assistant", ToolCalls=(ToolCall(ToolCallFunction("get_weather", {"city": "Paris"})),))
    data = {"Outer": {"Inner": message}}
    assert render("{{ .Outer.Inner.Role }}", data) == "assistant"
    assert render("{{ range .Outer.Inner.ToolCalls }}{{ .Function.Name }}{{ end }}", data) == "get_weather"


def test_python_attributes_are_not_fields() -> None:
    with pytest.raises(TemplateError, match="can't evaluate field __class__ in type Message"):
        render("{{ .M.__class__ }}", {"M": Message("user")})
    with pytest.raises(TemplateError, match="can't evaluate field upper"):
        render("{{ .S.upper }}", {"S": "text"})


def test_dollar_is_the_data_inside_range() -> None:
    data = {"Items": ["a", "b"], "Sep": "-"}
    assert render("{{ range .Items }}{{ . }}{{ $.Sep }}{{ end }}", data) == "a-b-"


def test_declared_variable_lives_until_the_end_of_its_block() -> None:
    assert render("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}") == "21"
    with pytest.raises(TemplateError, match='undefined variable "\\$y"'):
        GoTemplate("{{ range .L }}{{ $y := . }}{{ end }}{{ $y }}")


def test_assignment_inside_range_updates_the_outer_variable() -> None:
    source = '{{ $last := "" }}{{ range .Items }}{{ $last = . }}{{ end }}{{ $last }}'
    assert render(source, {"Items": ["a", "b", "c"]}) == "c"


def test_with_can_declare_a_variable() -> None:
    assert render("{{ with $v := .X }}{{ $v }}{{ end }}", {"X": "hi"}) == "hi"


# --- control structures -------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "expected"), [(1, "one"), (2, "two"), (3, "three"), (9, "many")])
def test_else_if_chains_take_the_first_true_branch(number: int, expected: str) -> None:
    source = '{{ if eq .N 1 }}one{{ else if eq .N 2 }}two{{ else if eq .N 3 }}three{{ else }}many{{ end }}'
    assert render(source, {"N": number}) == expected


@pytest.mark.parametrize(
    ("value", "truth"),
    [("", False), ("x", True), (0, False), (0.0, False), (-1, True), ([], False), ([0], True),
     ({}, False), ({"k": 0}, True), (None, False), (False, False), (Message("user"), True)],
)
def test_truth_is_go_truth(value: Any, truth: bool) -> None:
    assert render("{{ if .V }}yes{{ else }}no{{ end }}", {"V": value}) == ("yes" if truth else "no")


def test_range_with_index_and_element() -> None:
    assert render("{{ range $i, $v := .L }}{{ $i }}={{ $v }};{{ end }}", {"L": ["a", "b"]}) == "0=a;1=b;"


def test_range_over_a_map_visits_keys_in_order() -> None:
    assert render("{{ range $k, $v := .M }}{{ $k }}={{ $v }};{{ end }}", {"M": {"b": 2, "a": 1}}) == "a=1;b=2;"


@pytest.mark.parametrize("empty", [[], {}, None, 0])
def test_range_else_runs_when_there_is_nothing_to_range_over(empty: Any) -> None:
    assert render("{{ range .L }}x{{ else }}empty{{ end }}", {"L": empty}) == "empty"


def test_range_over_an_integer_counts_from_zero() -> None:
    assert render("{{ range 3 }}{{ . }}{{ end }}") == "012"


def test_break_and_continue_apply_to_the_innermost_range() -> None:
    source = "{{ range .L }}{{ if eq . 3 }}{{ break }}{{ end }}{{ if eq . 1 }}{{ continue }}{{ end }}{{ . }}{{ end }}"
    assert render(source, {"L": [0, 1, 2, 3, 4]}) == "02"


def test_with_sets_the_dot_or_takes_else() -> None:
    source = "{{ with .X }}[{{ . }}]{{ else }}none{{ end }}"
    assert render(source, {"X": "v"}) == "[v]"
    assert render(source, {"X": ""}) == "none"


def test_else_with_chains() -> None:
    source = "{{ with .A }}a={{ . }}{{ else with .B }}b={{ . }}{{ else }}neither{{ end }}"
    assert render(source, {"A": "", "B": "x"}) == "b=x"


# --- functions ----------------------------------------------------------------------------------


def test_eq_compares_against_each_following_argument() -> None:
    assert render('{{ eq .R "user" "tool" }}', {"R": "tool"}) == "true"
    assert render('{{ eq .R "user" "tool" }}', {"R": "system"}) == "false"
    assert render('{{ eq .Missing "x" }}') == "false"


def test_comparisons_of_mismatched_types_fail_as_in_go() -> None:
    with pytest.raises(TemplateError, match="incompatible types for comparison"):
        render("{{ eq 1 1.0 }}")
    with pytest.raises(TemplateError, match="invalid type for comparison"):
        render("{{ lt true false }}")


def test_ordering_functions() -> None:
    assert render('{{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1 2 }} {{ ne 1 2 }}') == "true true true false true"


def test_and_or_return_the_deciding_value_and_stop_evaluating() -> None:
    assert render('{{ and 1 0 2 }}|{{ and 1 2 }}|{{ or 0 "" "x" }}|{{ or 0 "" }}') == "0|2|x|"
    # The failing index is never evaluated once the answer is known.
    assert render("{{ or .Set (index .L 5) }}", {"Set": "yes", "L": []}) == "yes"


def test_not_len_index_slice() -> None:
    data = {"L": [1, 2, 3], "M": {"a": "A"}}
    assert render("{{ not 0 }} {{ len .L }} {{ len .M }} {{ index .L 2 }} {{ index .M \"a\" }}", data) == "true 3 1 3 A"
    assert render("{{ slice .L 1 }} {{ slice .L 1 2 }} {{ slice .L }}", data) == "[2 3] [2] [1 2 3]"
    assert render('{{ slice "hello" 1 3 }}') == "el"


def test_len_of_a_string_counts_bytes_as_go() -> None:
    assert render('{{ len "héllo" }}') == "6"


def test_index_and_slice_bounds_are_checked() -> None:
    with pytest.raises(TemplateError, match="error calling index: index out of range: 5"):
        render("{{ index .L 5 }}", {"L": [1]})
    with pytest.raises(TemplateError, match="invalid slice index: 2 > 1"):
        render("{{ slice .L 2 1 }}", {"L": [1, 2, 3]})


def test_print_functions_space_operands_as_go() -> None:
    assert render('{{ print 1 2 "a" "b" 3 }}') == "1 2ab3"
    assert render('{{ println 1 "a" }}') == "1 a\n"


def test_printf_verbs_and_complaints() -> None:
    assert render('{{ printf "%d-%s-%v-%q-%5.2f-%x-%t-%03d" 42 "s" 1.5 "q" 3.14159 255 true 7 }}') == (
        '42-s-1.5-"q"- 3.14-ff-true-007'
    )
    assert render('{{ printf "%s %d" 1 }}') == "%!s(int=1) %!d(MISSING)"
    assert render('{{ printf "%d" 1 2 }}') == "1%!(EXTRA int=2)"


def test_pipelines_pass_the_value_as_the_last_argument() -> None:
    assert render('{{ "x" | printf "%s-%s" "y" }}') == "y-x"
    assert render("{{ .L | len }}", {"L": [1, 2]}) == "2"
    assert render('{{ (print "a" "b") }}') == "ab"


def test_escaping_functions() -> None:
    assert render("{{ html .S }}", {"S": "<a href='x'>&\""}) == "&lt;a href=&#39;x&#39;&gt;&amp;&#34;"
    assert render("{{ js .S }}", {"S": "a'b<c>\n"}) == "a\\'b\\u003Cc\\u003E\\u000A"
    assert render("{{ urlquery .S }}", {"S": "a b&c=d/é"}) == "a+b%26c%3Dd%2F%C3%A9"


def test_json_marshals_like_go() -> None:
    data = {"V": {"b": [1, 2.5, None, True], "a": "<x>"}}
    assert render("{{ json .V }}", data) == '{"a":"\\u003cx\\u003e","b":[1,2.5,null,true]}'


def test_json_of_template_values_uses_go_field_names() -> None:
    call = ToolCall(ToolCallFunction("f", {"b": 1, "a": 2}), ID="call_1")
    assert render("{{ json .C }}", {"C": call}) == '{"ID":"call_1","Function":{"Index":0,"Name":"f","Arguments":{"a":2,"b":1}}}'


def test_current_date_is_todays_date() -> None:
    before = datetime.date.today().isoformat()
    printed = render("{{ currentDate }}")
    assert printed in (before, datetime.date.today().isoformat())


def test_tool_properties_range_with_their_types() -> None:
    tool = Tool.from_dict({
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"b": {"type": ["string", "null"]}, "a": {"type": "integer"}}},
        },
    })
    source = (
        "{{ range .Tools }}{{ range $name, $p := .Function.Parameters.Properties }}"
        "{{ $name }}:{{ $p.Type }}:{{ toTypeScriptType $p }};{{ end }}{{ end }}"
    )
    assert render(source, {"Tools": ToolList([tool])}) == "a:integer:number;b:[string null]:string | null;"


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("line one\nline two\n{{ if }}", "template: :3: missing value for if"),
        ("{{ .X }", "template: :1: unclosed action"),
        ("a\nb\n{{ end }}", "template: :3: unexpected {{end}}"),
        ("{{ if .X }}never closed", "unexpected EOF"),
        ("{{ foo }}", 'function "foo" not defined'),
        ("{{ $x }}", 'undefined variable "$x"'),
        ('{{ "open }}', "unterminated quoted string"),
        ("{{ 12ab }}", "bad number syntax"),
        ("{{ ) }}", "unexpected right paren"),
        ("{{ . | 1 }}", "non executable command in pipeline stage 2"),
        ("{{ break }}", "{{break}} outside {{range}}"),
        ("{{/* open", "unclosed comment"),
        ('{{ template "x" }}', "{{template}} is not supported"),
        ('{{ .A"b" }}', "bad character U+0022"),
        ("{{ (1)2 }}", 'unexpected "2" in operand'),
    ],
)
def test_parse_errors_say_what_and_where(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        GoTemplate(source)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("source", "data", "message"),
    [
        ("{{ .A.B }}", {"A": None}, "nil pointer evaluating .A.B"),
        ("{{ .Missing.B }}", {}, "nil pointer evaluating .Missing.B"),
        ("{{ len }}", {}, "wrong number of args for len: want 1 got 0"),
        ("{{ eq 1 }}", {}, "missing argument for comparison"),
        ("{{ range .S }}{{ end }}", {"S": "text"}, "range can't iterate over text"),
        ("{{ nil }}", {}, "nil is not a command"),
        ("{{ .M.Role 1 }}", {"M": Message("user")}, "Role has arguments but cannot be invoked as function"),
    ],
)
def test_execution_errors_name_the_line_and_the_action(source: str, data: dict, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(source, data)
    assert str(caught.value).startswith("template: :1: executing at <")
    assert message in str(caught.value)


# --- hostile templates --------------------------------------------------------------------------


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(TemplateError, match="nests deeper than"):
        GoTemplate("{{ " + "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1) + " }}")
    with pytest.raises(TemplateError, match="nests deeper than"):
        GoTemplate("{{ if 1 }}" * (MAX_NESTING + 1) + "{{ end }}" * (MAX_NESTING + 1))


def test_nesting_within_the_limit_works() -> None:
    depth = MAX_NESTING - 1
    assert render("{{ if 1 }}" * depth + "x" + "{{ end }}" * depth) == "x"


def test_output_is_bounded() -> None:
    with pytest.raises(TemplateError, match="output exceeds"):
        GoTemplate("{{ range 1000 }}0123456789{{ end }}", max_output=5000).execute({})


def test_endless_loops_run_out_of_steps() -> None:
    with pytest.raises(TemplateError, match="steps"):
        render("{{ range 1000000000000 }}{{ end }}")


def test_repeated_work_on_big_values_runs_out_of_steps() -> None:
    with pytest.raises(TemplateError, match="steps"):
        render("{{ range 1000000 }}{{ $n := len $.Big }}{{ end }}", {"Big": "x" * 4_000_000})


def test_every_argument_evaluated_costs_a_step() -> None:
    source = "{{ range 1000 }}{{ print " + "$ " * 100 + "}}{{ end }}"
    with pytest.raises(TemplateError, match="steps"):
        GoTemplate(source, max_steps=50_000).execute({})


def test_variables_in_one_scope_are_bounded() -> None:
    declarations = "".join(f"{{{{ $v{number} := {number} }}}}" for number in range(MAX_VARIABLES))
    with pytest.raises(TemplateError, match="more than 100 variables"):
        GoTemplate(declarations)


def test_strings_built_without_printing_are_bounded() -> None:
    source = '{{ $s := "ab" }}{{ range 64 }}{{ $s = printf "%s%s" $s $s }}{{ end }}'
    with pytest.raises(TemplateError, match="printf result exceeds"):
        render(source)


def test_huge_printf_width_is_refused_as_go_does() -> None:
    assert render('{{ printf "%999999999d" 1 }}') == "%!(BADWIDTH)1"


# --- analysis: variables and the legacy cut -----------------------------------------------------


def test_variables_lists_every_name_the_template_refers_to() -> None:
    template = GoTemplate(
        "{{ if .System }}{{ .System }}{{ end }}"
        "{{ range $i, $m := .Messages }}{{ $m.Content }}{{ if $.Tools }}{{ end }}{{ end }}"
    )
    # As Ollama's Vars(): names used, not names declared ($i is never read).
    assert template.variables() == {"system", "messages", "$m", "content", "$", "tools"}


def test_cut_at_response_keeps_the_response_and_drops_what_follows() -> None:
    template = GoTemplate("<s>{{ .Prompt }}</s>{{ .Response }}<end>{{ if .Prompt }}more{{ end }}")
    data = {"Prompt": "hi", "Response": "partial"}
    assert template.execute(data) == "<s>hi</s>partial<end>more"
    assert template.execute_cut_at_response(data) == "<s>hi</s>partial"


def test_cut_at_response_inside_a_branch_drops_its_else() -> None:
    template = GoTemplate("{{ if .Prompt }}[{{ .Response }}]{{ else }}no prompt{{ end }}after")
    assert template.execute_cut_at_response({"Prompt": "p", "Response": "r"}) == "[r"
    assert template.execute_cut_at_response({"Prompt": "", "Response": "r"}) == ""
