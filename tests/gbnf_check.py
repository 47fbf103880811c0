"""Ask llama.cpp's own grammar engine whether a GBNF grammar accepts a text.

Only the vocabulary of the bundled SmolLM2 model is loaded (no weights), so this is fast. The text is
tokenized and fed token by token through a grammar sampler exactly as generation would: a token the
grammar forbids gets a logit of -inf from ``llama_sampler_apply``. At the end the end-of-generation
token must be allowed, i.e. the grammar has reached a complete sentence.
"""

from __future__ import annotations

import ctypes
import functools
import math
import random
import re

import llama_cpp

from herd.core.store.bundled import locate_smollm2


class GrammarParseError(ValueError):
    """llama.cpp refused the grammar text (it printed the reason on stderr)."""


@functools.cache
def vocab() -> llama_cpp.llama_vocab_p:
    """The SmolLM2 vocabulary, loaded once per test process and kept for its lifetime."""
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(locate_smollm2()).encode(), params)
    if not model:
        raise RuntimeError("could not load the SmolLM2 vocabulary")
    return llama_cpp.llama_model_get_vocab(model)


def tokenize(text: str) -> list[int]:
    raw = text.encode()
    capacity = len(raw) + 8  # a byte-level BPE never makes more tokens than bytes
    tokens = (llama_cpp.llama_token * capacity)()
    count = llama_cpp.llama_tokenize(vocab(), raw, len(raw), tokens, capacity, False, False)
    if count < 0:
        raise RuntimeError(f"tokenizing needed {-count} tokens, more than {capacity}")
    return list(tokens[:count])


def parses(grammar: str) -> bool:
    """Whether llama.cpp parses the grammar with root rule "root"."""
    sampler = llama_cpp.llama_sampler_init_grammar(vocab(), grammar.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def _allowed(sampler: llama_cpp.llama_sampler_p, token: int) -> bool:
    """Whether the grammar sampler lets `token` through next (its logit stays finite)."""
    data = llama_cpp.llama_token_data(id=token, logit=0.0, p=0.0)
    candidates = llama_cpp.llama_token_data_array(data=ctypes.pointer(data), size=1, selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
    return not math.isinf(candidates.data[0].logit)


def accepts(grammar: str, text: str) -> bool:
    """Whether `text` is a complete sentence of `grammar`, as llama.cpp's sampler sees it token by token."""
    sampler = llama_cpp.llama_sampler_init_grammar(vocab(), grammar.encode(), b"root")
    if not sampler:
        raise GrammarParseError("llama.cpp could not parse the grammar (see stderr)")
    try:
        for token in tokenize(text):
            if not _allowed(sampler, token):
                return False
            # Accepting a token the grammar rejected throws inside llama.cpp and aborts the process.
            llama_cpp.llama_sampler_accept(sampler, token)
        return _allowed(sampler, llama_cpp.llama_vocab_eos(vocab()))
    finally:
        llama_cpp.llama_sampler_free(sampler)


# -- random sentences ----------------------------------------------------------------------------------------
# A small reader of the GBNF that herd writes (one rule per line) and a random walk through it, so a test can
# check that what a grammar allows validates against its schema. llama.cpp stays the judge: every sentence is
# also run through `accepts`.

# Characters tried for a character class: ASCII, multi-byte UTF-8, and the JSON specials.
CHARACTER_POOL = [chr(c) for c in range(0x20, 0x7F)] + ["é", "ß", "日", "😀", "\u2028", "\n", "\t", "\x7f"]


class _Reader:
    """Recursive descent over one rule body: alternatives of sequences of (atom, least, most) terms."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def alternatives(self) -> list[list[tuple]]:
        found = [self.sequence()]
        while self._peek() == "|":
            self.pos += 1
            found.append(self.sequence())
        return found

    def sequence(self) -> list[tuple]:
        terms = []
        while self._peek() not in ("", "|", ")"):
            atom = self.atom()
            terms.append((atom, *self.repetition()))
        return terms

    def atom(self) -> tuple:
        start = self.text[self.pos]
        if start == '"':
            self.pos += 1
            chars = []
            while self.text[self.pos] != '"':
                chars.append(self.char())
            self.pos += 1
            return ("literal", "".join(chars))
        if start == "[":
            self.pos += 1
            negated = self.text[self.pos] == "^"
            self.pos += negated
            ranges = []
            while self.text[self.pos] != "]":
                low = self.char()
                high = low
                if self.text[self.pos] == "-" and self.text[self.pos + 1] != "]":
                    self.pos += 1
                    high = self.char()
                ranges.append((low, high))
            self.pos += 1
            return ("class", negated, ranges)
        if start == "(":
            self.pos += 1
            group = self.alternatives()
            assert self._peek() == ")", self.text[self.pos :]
            self.pos += 1
            return ("group", group)
        name = re.match(r"[a-zA-Z0-9-]+", self.text[self.pos :]).group()
        self.pos += len(name)
        return ("rule", name)

    def char(self) -> str:
        char = self.text[self.pos]
        self.pos += 1
        if char != "\\":
            return char
        escape = self.text[self.pos]
        self.pos += 1
        if escape == "x":
            self.pos += 2
            return chr(int(self.text[self.pos - 2 : self.pos], 16))
        return {"n": "\n", "r": "\r", "t": "\t"}.get(escape, escape)

    def repetition(self) -> tuple[int, int | None]:
        suffix = self.text[self.pos : self.pos + 1]
        if suffix in ("*", "+", "?"):
            self.pos += 1
            return {"*": (0, None), "+": (1, None), "?": (0, 1)}[suffix]
        counts = re.match(r"\{(\d+)(,(\d*))?\}", self.text[self.pos :])
        if not counts:
            return 1, 1
        self.pos += len(counts.group())
        least = int(counts.group(1))
        most = least if counts.group(2) is None else int(counts.group(3)) if counts.group(3) else None
        return least, most

    def _peek(self) -> str:
        while self.text[self.pos : self.pos + 1] == " ":
            self.pos += 1
        return self.text[self.pos : self.pos + 1]


class _Sampler:
    """Random sentences of a grammar. Past `depth` rules deep it takes the shortest way out, so it ends."""

    def __init__(self, grammar: str, rng: random.Random, depth: int) -> None:
        self.rules = {}
        for line in grammar.splitlines():
            name, body = line.split(" ::= ", 1)
            self.rules[name] = _Reader(body).alternatives()
        self.rng, self.depth = rng, depth
        # The fewest atoms each rule can produce, to a fixed point; a sequence costs 1 more than its terms so
        # that following the cheapest alternative always gets closer to the end.
        self.cost = dict.fromkeys(self.rules, math.inf)
        changed = True
        while changed:
            changed = False
            for name, alternatives in self.rules.items():
                cost = min(map(self._sequence_cost, alternatives))
                if cost < self.cost[name]:
                    self.cost[name], changed = cost, True

    def _sequence_cost(self, sequence: list[tuple]) -> float:
        return 1 + sum(self._atom_cost(atom) * least for atom, least, _ in sequence if least)

    def _atom_cost(self, atom: tuple) -> float:
        if atom[0] == "rule":
            return self.cost[atom[1]]
        if atom[0] == "group":
            return min(map(self._sequence_cost, atom[1]))
        return 1

    def sentence(self) -> str:
        return self._alternatives(self.rules["root"], 0)

    def _alternatives(self, alternatives: list[list[tuple]], depth: int) -> str:
        if depth > self.depth:
            chosen = min(alternatives, key=self._sequence_cost)
        else:
            chosen = self.rng.choice(alternatives)
        return "".join(self._term(atom, least, most, depth) for atom, least, most in chosen)

    def _term(self, atom: tuple, least: int, most: int | None, depth: int) -> str:
        if depth > self.depth:
            times = least
        elif most is not None and most <= least + 50 and self.rng.random() < 0.3:
            times = most  # the bound itself, where it stays short: nested long bounds would multiply
        else:
            times = self.rng.randint(least, least + 3 if most is None else min(most, least + 3))
        return "".join(self._atom(atom, depth) for _ in range(times))

    def _atom(self, atom: tuple, depth: int) -> str:
        kind = atom[0]
        if kind == "literal":
            return atom[1]
        if kind == "rule":
            return self._alternatives(self.rules[atom[1]], depth + 1)
        if kind == "group":
            return self._alternatives(atom[1], depth)
        _, negated, ranges = atom
        matches = [c for c in CHARACTER_POOL if any(low <= c <= high for low, high in ranges) != negated]
        return self.rng.choice(matches)


def sentences(grammar: str, count: int, seed: int = 0, depth: int = 8) -> list[str]:
    """`count` random sentences of a grammar written by herd (one rule per line)."""
    sampler = _Sampler(grammar, random.Random(seed), depth)
    return [sampler.sentence() for _ in range(count)]
