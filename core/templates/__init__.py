"""Prompt templates: Go text/template as Ollama uses it, and sandboxed Jinja."""
