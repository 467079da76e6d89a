"""Choosing the next token from the logits: greedy, temperature and nucleus (top-p) sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """What one request asked for (validated by the API before it gets here)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def new_rng(seed: int | None) -> np.random.Generator:
    """One generator per sequence: a seeded request samples alike whatever its batch."""
    # any integer is a valid seed (OpenAI accepts negative ones): fold it into 64 bits
    return np.random.default_rng(None if seed is None else seed % 2**64)


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
