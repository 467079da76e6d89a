"""Helpers for the generation tests: a scripted fake model and polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from {{ cookiecutter.package_name }}.llm.tokenizer import ByteTokenizer
from {{ cookiecutter.package_name }}.serving.oom import SimulatedOutOfMemory


def next_token(sequence: list[int]) -> int:
    """The fake model's greedy choice: a printable byte that depends on the whole sequence."""
    return 32 + (sum(t * (i + 1) for i, t in enumerate(sequence)) * 31 + len(sequence)) % 95


class FakeModel:
    """Deterministic stand-in for model.py: its "KV cache" is the token list itself.

    ``gate``, when given, must be released once per decode call (tests step the
    engine one call at a time); ``script`` maps a sequence length to a forced
    next token (for EOS and multi-byte characters); ``fail_when`` raises inside
    a call whose batch it returns true for.
    """

    def __init__(
        self,
        *,
        gate: threading.Semaphore | None = None,
        script: dict[int, int] | None = None,
        fail_when: Callable[[str, int], BaseException | None] | None = None,
    ) -> None:
        self.tokenizer = ByteTokenizer()
        self.vocab_size = self.tokenizer.vocab_size
        self.context_length = 64
        self.device = None
        self.gate = gate
        self.script = script or {}
        self.fail_when = fail_when
        self.prefill_batches: list[list[int]] = []  # prompt lengths per call
        self.decode_batches: list[list[int]] = []  # past lengths per call

    def load(self) -> None:
        pass

    def _logits(self, sequences: list[list[int]]) -> np.ndarray:
        logits = np.zeros((len(sequences), self.tokenizer.vocab_size), dtype=np.float32)
        for row, sequence in enumerate(sequences):
            logits[row, self.script.get(len(sequence), next_token(sequence))] = 10.0
        return logits

    def prefill(self, prompts: list[list[int]]) -> tuple[np.ndarray, list[list[int]]]:
        self._maybe_fail("prefill", len(prompts))
        self.prefill_batches.append([len(p) for p in prompts])
        caches = [list(p) for p in prompts]
        return self._logits(caches), caches

    def decode(
        self, tokens: list[int], caches: list[list[int]]
    ) -> tuple[np.ndarray, list[list[int]]]:
        if self.gate is not None and not self.gate.acquire(timeout=10):
            raise RuntimeError("the test never released this decode step")
        self._maybe_fail("decode", len(tokens))
        self.decode_batches.append([len(c) for c in caches])
        grown = [[*cache, token] for cache, token in zip(caches, tokens, strict=True)]
        return self._logits(grown), grown

    def _maybe_fail(self, call: str, size: int) -> None:
        if self.fail_when is not None:
            error = self.fail_when(call, size)
            if error is not None:
                raise error


def oom_above(limit: int) -> Callable[[str, int], BaseException | None]:
    """Fail any call with more than ``limit`` sequences as out-of-memory."""
    return lambda call, size: SimulatedOutOfMemory("fake OOM") if size > limit else None


def greedy_continuation(prompt: list[int], count: int) -> list[int]:
    sequence = list(prompt)
    for _ in range(count):
        sequence.append(next_token(sequence))
    return sequence[len(prompt) :]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)
