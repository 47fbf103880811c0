"""Model names as Ollama writes them: ``[scheme://][host/][namespace/]model[:tag]``.

The grammar is the one in Ollama's ``types/model/name.go``. Every part is limited to ASCII letters,
digits, ``_`` and a few separators, and must start with a letter, digit or ``_``, so a valid name
can never spell ``..`` or ``/`` inside a part: the four parts are safe to use as directory names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_MODEL_OR_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")


class InvalidModelName(ValueError):
    """The text is not a model name; the message is the text as given."""


@dataclass(frozen=True, eq=False)
class ModelName:
    """A fully qualified, valid model name.

    Equality and hashing ignore case, because Ollama looks names up case-insensitively;
    the parts keep the case they were written in.
    """

    host: str
    namespace: str
    model: str
    tag: str

    def __post_init__(self) -> None:
        parts = (
            (_HOST, self.host),
            (_NAMESPACE, self.namespace),
            (_MODEL_OR_TAG, self.model),
            (_MODEL_OR_TAG, self.tag),
        )
        for pattern, part in parts:
            if not isinstance(part, str) or pattern.fullmatch(part) is None:
                raise InvalidModelName(self._joined())

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse ``[scheme://][host/][namespace/]model[:tag]``, filling in Ollama's defaults.

        A separator promises a part: ``m:`` or ``/m`` is invalid rather than defaulted.
        """
        if not isinstance(text, str):
            raise InvalidModelName(repr(text))
        rest = text
        tag: str | None = None
        # ":" after the last "/" starts the tag; before it, it is a host's port.
        if rest.rfind(":") > rest.rfind("/"):
            rest, _, tag = rest.rpartition(":")
        namespace: str | None = None
        host: str | None = None
        # rpartition puts the whole text last when the separator is absent.
        rest, slash, model = rest.rpartition("/")
        if slash:
            rest, slash, namespace = rest.rpartition("/")
            if slash:
                scheme, separator, after_scheme = rest.partition("://")
                host = after_scheme if separator else scheme
        try:
            return cls(
                host=DEFAULT_HOST if host is None else host,
                namespace=DEFAULT_NAMESPACE if namespace is None else namespace,
                model=model,
                tag=DEFAULT_TAG if tag is None else tag,
            )
        except InvalidModelName:
            raise InvalidModelName(text) from None

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The case-insensitive identity of the name."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelName):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self._joined()

    def _joined(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def display_shortest(self) -> str:
        """The name as ``ollama list`` shows it: default host and namespace dropped, tag kept."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def manifest_path(self, root: Path) -> Path:
        """Where the manifest lives under a models directory: ``manifests/<host>/<ns>/<model>/<tag>``."""
        return Path(root) / "manifests" / self.host / self.namespace / self.model / self.tag
