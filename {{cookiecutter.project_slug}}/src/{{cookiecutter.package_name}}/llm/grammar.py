"""Structured outputs: answers constrained to a JSON schema (or any JSON object) by llguidance.

At every step a sequence with a grammar gets a mask of the tokens that keep
its text a valid prefix; the others are set to -inf before sampling, so even
a random model writes JSON that parses and validates. When the grammar can
take nothing more (the object is closed), the sequence stops.

Why llguidance (vLLM's ``guidance`` backend): abi3 CPU wheels with no
dependencies, so an onnxruntime service stays free of torch; masks are
computed lazily from the grammar (tens of microseconds per sequence and
step), with no per-schema index over the vocabulary to build first; and it
reads Hugging Face tokenizers natively. xgrammar needs torch, transformers
and triton at run time; outlines-core compiles an index over the whole
vocabulary for every new schema.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from typing import Any

import llguidance
import llguidance.numpy
import numpy as np
from llguidance import LLExecutor, LLMatcher, LLParserLimits, LLTokenizer

from ..serving.errors import InvalidInput
from .tokenizer import Tokenizer

MAX_SCHEMA_BYTES = 32 * 1024  # a schema larger than this answers 400
# JSON as compact as json.dumps writes it: no whitespace the model could pad without end
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class Grammar:
    """A compiled grammar; every sequence gets its own matcher (a copy of the compiled one)."""

    def __init__(self, matcher: LLMatcher) -> None:
        self._matcher = matcher

    def matcher(self) -> LLMatcher:
        return self._matcher.deep_copy()


class GrammarEngine:
    """The model's tokenizer as llguidance sees it (built once, at load), and the compiler.

    A tokenizer takes part through its optional ``grammar_tokenizer(vocab_size)``
    method (``ByteTokenizer`` and the Hugging Face wrapper have one); without
    it, requests for structured output answer 400.
    """

    def __init__(self, tokenizer: Tokenizer, vocab_size: int) -> None:
        build = getattr(tokenizer, "grammar_tokenizer", None)
        self._tokenizer: LLTokenizer | None = build(vocab_size) if build is not None else None
        self._limits = LLParserLimits()  # llguidance's defaults bound a hostile grammar's cost
        self.vocab_size = vocab_size

    def json_schema(self, schema: dict[str, Any] | None, param: str) -> Grammar:
        """A grammar for ``schema`` (None: any JSON object); a bad schema answers 400."""
        text = json.dumps(schema if schema is not None else {"type": "object"})
        self._check_size(text, param)
        try:
            grammar = LLMatcher.grammar_from_json_schema(text, defaults=JSON_OPTIONS)
        except ValueError as exc:
            raise InvalidInput(f"{param}: {exc}", param=param) from None
        return self._compile(grammar, param)

    def lark(self, text: str, param: str) -> Grammar:
        """A grammar in llguidance's Lark dialect (JSON schemas inside: ``%json {...}``)."""
        self._check_size(text, param)
        return self._compile(LLMatcher.grammar_from_lark(text), param)

    def _check_size(self, text: str, param: str) -> None:
        if len(text) > MAX_SCHEMA_BYTES:
            raise InvalidInput(
                f"the schema has {len(text)} bytes; at most {MAX_SCHEMA_BYTES}", param=param
            )

    def _compile(self, grammar: str, param: str) -> Grammar:
        if self._tokenizer is None:
            raise InvalidInput(
                "structured output needs the tokenizer's grammar_tokenizer(), which this "
                "model's tokenizer does not provide",
                param=param,
            )
        failed, messages = LLMatcher.validate_grammar_with_warnings(
            grammar, self._tokenizer, limits=self._limits
        )
        if failed:
            raise InvalidInput(f"{param}: unsupported schema: {messages[0]}", param=param)
        matcher = LLMatcher(self._tokenizer, grammar, log_level=0, limits=self._limits)
        if matcher.is_error():
            raise InvalidInput(f"{param}: {matcher.get_error()}", param=param)
        return Grammar(matcher)


@functools.cache
def _executor() -> LLExecutor:
    return LLExecutor()


def constrain(logits: np.ndarray, rows: Sequence[int], matchers: Sequence[LLMatcher]) -> float:
    """Set the logits of tokens each row's grammar forbids to -inf, in place; seconds spent.

    The masks of all constrained rows are computed in one call (llguidance's
    executor spreads them over its threads, without the GIL).
    """
    started = time.perf_counter()
    vocab = logits.shape[-1]
    words = (vocab + 31) // 32
    bitmask = np.full((len(rows), words), -1, dtype=np.int32)
    llguidance.numpy.fill_next_token_bitmask_par(
        _executor(), [(m, i) for i, m in enumerate(matchers)], bitmask
    )
    allowed = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")[:, :vocab]
    selected = logits[list(rows)]
    selected[allowed == 0] = -np.inf
    logits[list(rows)] = selected
    return time.perf_counter() - started
