"""Prefix caching: a prompt that starts like an earlier one reuses that prompt's KV cache.

System prompts, few-shot examples and chat history repeat at the start of
many prompts. After every prefill, the prompt's keys and values are kept in
blocks of ``BLOCK_TOKENS`` positions, each named by a SHA-256 chained over its
tokens and every token before it, so a block is only ever reused behind the
very same prefix. vLLM's automatic prefix caching names its blocks so: a
non-cryptographic hash would let a client craft a collision and read another
prompt's cache. A new prompt looks up its longest run of cached blocks,
leaving at least one token to compute (the model needs one for the next
token's logits), and only the rest of it runs through the model
(``Model.extend``).

Memory is bounded by ``max_bytes``: the least recently used block goes first.
A lookup or store touches its blocks from the last to the first, so a
prefix's first block is younger than the blocks behind it and eviction
shortens chains from their ends.

The engine thread alone calls it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .kv_cache import LayerKV, SequenceKV, cache_bytes, copy_positions, join_positions

BLOCK_TOKENS = 16


@dataclass(frozen=True, slots=True)
class Block:
    layers: tuple[LayerKV, ...]  # per layer (keys, values), (kv_heads, BLOCK_TOKENS, head_dim)
    nbytes: int


@dataclass(frozen=True, slots=True)
class PrefixHit:
    """The cache of a prompt's first ``length`` tokens (``length`` may be 0: no hit)."""

    length: int
    cache: SequenceKV | None


class PrefixCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._blocks: OrderedDict[bytes, Block] = OrderedDict()  # least recently used first

    @property
    def blocks(self) -> int:
        return len(self._blocks)

    def clear(self) -> None:
        self._blocks.clear()
        self.bytes = 0

    def cached_length(self, prompt: Sequence[int]) -> int:
        """What ``lookup`` would find, without touching or copying anything (for budgets)."""
        return len(self._cached_keys(prompt)) * BLOCK_TOKENS

    def lookup(self, prompt: Sequence[int]) -> PrefixHit:
        """The longest cached prefix of ``prompt`` that leaves at least one token to compute."""
        keys = self._cached_keys(prompt)
        if not keys:
            return PrefixHit(0, None)
        for key in reversed(keys):  # the first block ends up the most recently used
            self._blocks.move_to_end(key)
        cache = join_positions([self._blocks[key].layers for key in keys])
        return PrefixHit(len(keys) * BLOCK_TOKENS, cache)

    def _cached_keys(self, prompt: Sequence[int]) -> list[bytes]:
        keys = []
        for key, _ in block_keys(prompt[: len(prompt) - 1]):
            if key not in self._blocks:
                break
            keys.append(key)
        return keys

    def store(self, prompt: Sequence[int], cache: SequenceKV) -> None:
        """Keep the whole blocks of a prefilled prompt that are not cached yet."""
        keys = []
        for key, start in block_keys(prompt):
            if key not in self._blocks:
                layers = copy_positions(cache, start, start + BLOCK_TOKENS)
                block = Block(layers, cache_bytes(layers))
                if block.nbytes > self.max_bytes:
                    break
                self._blocks[key] = block
                self.bytes += block.nbytes
            keys.append(key)
        for key in reversed(keys):
            self._blocks.move_to_end(key)
        while self.bytes > self.max_bytes:
            _, evicted = self._blocks.popitem(last=False)
            self.bytes -= evicted.nbytes


def block_keys(tokens: Sequence[int]) -> Iterator[tuple[bytes, int]]:
    """Each whole block's key (a digest of it and every token before it) and its start."""
    digest = b""
    for start in range(0, len(tokens) - BLOCK_TOKENS + 1, BLOCK_TOKENS):
        block = np.asarray(tokens[start : start + BLOCK_TOKENS], dtype=np.int64)
        digest = hashlib.sha256(digest + block.tobytes()).digest()
        yield digest, start
