"""Choosing the next tokens from a batch of logits: penalties, bias, greedy or sampled, logprobs.

One call per model step handles every sequence of the batch with its own
options. The logit adjustments (logit_bias, presence/frequency/repetition
penalties, min_tokens) are gathered over the whole batch into index arrays
and applied in one numpy operation each, so a step's cost barely grows with
the options in use; greedy rows take one batched argmax. Only sampled rows
(temperature > 0) need a row each, because each sequence draws from its own
seeded generator: a seeded request samples alike whatever batch it runs in.

A sequence with a grammar (structured output) then has every token its
grammar forbids masked out (``grammar.constrain``, all such rows in one call).

Log-probabilities are those of the model's own distribution, before any
adjustment or temperature (vLLM's default ``raw_logprobs`` mode): what the
model thought of the token, not what the sampler was told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
from llguidance import LLMatcher

from .grammar import Grammar, constrain


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """What one request asked for (validated by the API before it gets here)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    min_tokens: int = 0
    stop_token_ids: frozenset[int] = frozenset()
    ignore_eos: bool = False
    logprobs: int | None = None  # None: none; k >= 0: the chosen token's and the k most likely
    grammar: Grammar | None = None  # structured output: the text must match it

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def for_choice(self, index: int) -> SamplingParams:
        """The parameters of choice ``index`` of ``n``: a seed gives each choice its own stream."""
        if self.seed is None or index == 0:
            return self
        return replace(self, seed=self.seed + index)


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """The chosen token's log-probability and, most likely first, the ``logprobs`` best ones."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(slots=True)
class SequenceSampling:
    """One sequence's sampling state: its options, generator and the tokens it has produced."""

    params: SamplingParams
    stop_ids: frozenset[int]  # end of sequence for this request: EOS (unless ignored) + stop ids
    rng: np.random.Generator
    generated: int = 0
    counts: dict[int, int] = field(default_factory=dict)  # token -> times generated
    seen: set[int] | None = None  # prompt and generated tokens (repetition penalty only)
    matcher: LLMatcher | None = None  # this sequence's place in its grammar
    grammar_done: bool = False  # the grammar takes no more tokens: the sequence is complete

    @classmethod
    def start(
        cls, params: SamplingParams, prompt_ids: Sequence[int], eos: frozenset[int]
    ) -> SequenceSampling:
        stop_ids = params.stop_token_ids | (frozenset() if params.ignore_eos else eos)
        seen = set(prompt_ids) if params.repetition_penalty != 1.0 else None
        matcher = params.grammar.matcher() if params.grammar is not None else None
        return cls(params, stop_ids, new_rng(params.seed), seen=seen, matcher=matcher)

    def record(self, token: int) -> None:
        self.generated += 1
        if self.matcher is not None:
            self.matcher.consume_token(token)
            self.grammar_done = self.matcher.is_stopped()
        params = self.params
        if params.presence_penalty or params.frequency_penalty:
            self.counts[token] = self.counts.get(token, 0) + 1
        if self.seen is not None:
            self.seen.add(token)


def new_rng(seed: int | None) -> np.random.Generator:
    """One generator per sequence: a seeded request samples alike whatever its batch."""
    # any integer is a valid seed (OpenAI accepts negative ones): fold it into 64 bits
    return np.random.default_rng(None if seed is None else seed % 2**64)


class Choices(NamedTuple):
    tokens: list[int]
    logprobs: list[TokenLogprob | None]
    grammar_s: float  # time the grammar engine took for the batch's masks


def next_tokens(logits: np.ndarray, states: Sequence[SequenceSampling]) -> Choices:
    """The next token of each row of ``logits`` ``(batch, vocab)``; its logprobs where asked."""
    raw = np.asarray(logits)
    adjusted = _adjust(raw, states)
    grammar_s = 0.0
    constrained = [row for row, state in enumerate(states) if state.matcher is not None]
    if constrained:
        if adjusted is raw:
            adjusted = np.array(raw, dtype=np.float32)
        matchers = [states[row].matcher for row in constrained]
        grammar_s = constrain(adjusted, constrained, matchers)  # type: ignore[arg-type]
    tokens: list[int] = adjusted.argmax(axis=-1).tolist()  # greedy rows: one call for the batch
    for row, state in enumerate(states):
        if not state.params.greedy:
            tokens[row] = sample(adjusted[row], state.params, state.rng)
    logprobs: list[TokenLogprob | None] = [None] * len(states)
    asking = [row for row, state in enumerate(states) if state.params.logprobs is not None]
    if asking:
        rows = raw[asking].astype(np.float64)
        rows -= rows.max(axis=-1, keepdims=True)
        rows -= np.log(np.exp(rows).sum(axis=-1, keepdims=True))
        for values, row in zip(rows, asking, strict=True):
            logprobs[row] = _token_logprob(values, tokens[row], states[row].params.logprobs or 0)
    return Choices(tokens, logprobs, grammar_s)


def _token_logprob(values: np.ndarray, token: int, top: int) -> TokenLogprob:
    best: list[tuple[int, float]] = []
    if top:
        candidates = np.argpartition(-values, top - 1)[:top]
        order = candidates[np.argsort(-values[candidates], kind="stable")]
        best = [(int(i), float(values[i])) for i in order]
    return TokenLogprob(token, float(values[token]), tuple(best))


def _adjust(logits: np.ndarray, states: Sequence[SequenceSampling]) -> np.ndarray:
    """The logits after every row's bias and penalties: batched index arrays, one op per kind.

    vLLM's order: logit_bias and the min_tokens ban first, then the repetition
    penalty (on the biased logits), then the frequency and presence penalties.
    """
    bias: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # rows, tokens, added
    banned: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # rows, tokens, -inf
    repeat: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # rows, tokens, penalty
    penalties: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # rows, tokens, added
    for row, state in enumerate(states):
        params = state.params
        if params.logit_bias:
            ids, values = zip(*params.logit_bias, strict=True)
            bias.append(_row_arrays(row, ids, np.asarray(values, dtype=np.float32)))
        if state.generated < params.min_tokens and state.stop_ids:
            ids = tuple(state.stop_ids)
            banned.append(_row_arrays(row, ids, np.full(len(ids), -np.inf, dtype=np.float32)))
        if state.seen:
            penalty = np.full(len(state.seen), params.repetition_penalty, dtype=np.float32)
            repeat.append(_row_arrays(row, tuple(state.seen), penalty))
        if state.counts:
            ids = tuple(state.counts)
            counts = np.fromiter(state.counts.values(), dtype=np.float32, count=len(ids))
            added = -(counts * params.frequency_penalty + params.presence_penalty)
            penalties.append(_row_arrays(row, ids, added))
    if not (bias or banned or repeat or penalties):
        return logits
    adjusted = np.array(logits, dtype=np.float32)
    vocab = adjusted.shape[-1]

    def gathered(
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, ids, values = (np.concatenate(column) for column in zip(*parts, strict=True))
        keep = ids < vocab  # a tokenizer may know fewer ids than the model has logits, or more
        return rows[keep], ids[keep], values[keep]

    if bias:
        rows, ids, values = gathered(bias)
        adjusted[rows, ids] += values  # one entry per token and row: no repeated indices
    if banned:
        rows, ids, values = gathered(banned)
        adjusted[rows, ids] = values
    if repeat:  # CTRL's penalty, as Hugging Face and vLLM apply it: always towards less likely
        rows, ids, penalty = gathered(repeat)
        values = adjusted[rows, ids]
        adjusted[rows, ids] = np.where(values > 0, values / penalty, values * penalty)
    if penalties:
        rows, ids, values = gathered(penalties)
        adjusted[rows, ids] += values
    return adjusted


def _row_arrays(
    row: int, ids: Sequence[int], values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tokens = np.asarray(ids, dtype=np.int64)
    return np.full(len(tokens), row, dtype=np.int64), tokens, values


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """The next token id from one row of logits ``(vocab,)``."""
    if params.greedy:
        return int(np.argmax(logits))
    shifted = logits.astype(np.float64)
    # subtract the maximum first: a tiny temperature then gives 0 and -inf, never inf - inf
    scaled = (shifted - shifted.max()) / params.temperature
    probs = np.exp(scaled)
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        # the smallest set of most likely tokens whose mass reaches top_p (at least one)
        keep = order[: int(np.searchsorted(cumulative, params.top_p)) + 1]
        kept = probs[keep] / probs[keep].sum()
        return int(keep[rng.choice(len(keep), p=kept)])
    return int(rng.choice(len(probs), p=probs))
