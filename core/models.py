"""The store as the rest of core sees it: models resolved by name, with their parsed templates.

Parsing a GGUF header (Gemma's holds a 262k-token vocabulary) or a template is done once per
manifest digest and template text, not once per request.
"""

from __future__ import annotations

from herd.core.store.store import ModelStore, StoredModel
from herd.core.templates.prompt import PromptTemplate, load_template

_TEMPLATE_CACHE_SIZE = 64


class ModelCatalog:
    def __init__(self, store: ModelStore):
        self.store = store
        # A copy shares its manifest bytes (so its digest) with the original: key by name too.
        self._models: dict[tuple[str, str], StoredModel] = {}
        self._templates: dict[tuple, PromptTemplate] = {}

    def get(self, name: str) -> StoredModel:
        """The model called ``name``; raises InvalidModelName or ModelNotFound."""
        return self._cached(self.store.get(name))

    def list(self) -> list[StoredModel]:
        return [self._cached(m) for m in self.store.list_models()]

    def _cached(self, model: StoredModel) -> StoredModel:
        return self._models.setdefault((model.digest, str(model.name)), model)

    def template(self, model: StoredModel, override: str | None = None) -> PromptTemplate:
        """The model's prompt template: ``override``, its TEMPLATE layer, or its GGUF chat template."""
        go_source = override if override is not None else model.template
        jinja_source = bos = eos = ""
        # A remote model has no weights, so no GGUF chat template: it gets the default.
        if go_source is None and model.model_path is not None:
            meta = model.gguf().metadata
            jinja_source = meta.get("tokenizer.chat_template") or ""
            tokens = meta.get("tokenizer.ggml.tokens") or []
            bos = _token_text(tokens, meta.get("tokenizer.ggml.bos_token_id"))
            eos = _token_text(tokens, meta.get("tokenizer.ggml.eos_token_id"))
        key = (go_source, jinja_source, bos, eos)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= _TEMPLATE_CACHE_SIZE:
                self._templates.pop(next(iter(self._templates)))
            template = self._templates[key] = load_template(go_source, jinja_source or None, bos, eos)
        return template

    def capabilities(self, model: StoredModel) -> list[str]:
        return model.capabilities(self.template(model).variables())


def _token_text(tokens: list, token_id) -> str:
    if isinstance(token_id, int) and 0 <= token_id < len(tokens):
        return tokens[token_id]
    return ""
