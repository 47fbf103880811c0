"""TEMPLATE and params layers for the bundled models, shaped like Ollama's library entries.

SmolLM2 uses ChatML and, like the library's tool-capable ChatML templates, offers tools in
the system turn and expects calls back as ``<tool_call>[{"name": …, "arguments": {…}}]</tool_call>``.
Gemma 3 uses ``<start_of_turn>``/``<end_of_turn>`` turns with system text folded into the
first user turn, as Gemma has no system role.
"""

SMOLLM2_TEMPLATE = """\
{{- if .Messages }}
{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}
You are an expert in composing functions. You are given a question and a set of possible \
functions. Based on the question, you will need to make one or more function/tool calls to \
achieve the purpose. If none of the functions can be used, answer the question directly.

You have access to the following tools:
<tools>
{{- range .Tools }}
{{ .Function }}
{{- end }}
</tools>

To call tools, answer with nothing but a JSON list inside <tool_call></tool_call> tags:
<tool_call>[{"name": "func_name", "arguments": {"argument1": "value1"}}]</tool_call>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>[
{{- range $j, $call := .ToolCalls }}{{ if $j }}, {{ end }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{- end }}]</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

SMOLLM2_PARAMS = {"stop": ["<|im_start|>", "<|im_end|>"]}

GEMMA3_TEMPLATE = """\
{{- $system := "" }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "system" }}
{{- $system = .Content }}
{{- else if eq .Role "user" }}<start_of_turn>user
{{ if $system }}{{ $system }}

{{ $system = "" }}{{ end }}{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}"""

GEMMA3_PARAMS = {"stop": ["<end_of_turn>"], "temperature": 1, "top_k": 64, "top_p": 0.95}
