"""Per-sequence KV caches <-> the left-padded batch that one model call takes.

Every running sequence owns its cache: per layer, keys and values shaped
``(kv_heads, length, head_dim)``. Sequences join and leave the batch at every
step, so a step stacks the caches of the sequences it runs, left-padded to the
longest (the attention mask hides the padding), and splits what the model
returns back into one cache per sequence. A cache is a window onto the batched
output it came from, not a copy: when the next step runs the same sequences,
that output is passed back as it is, and otherwise each group of sequences
from one output is gathered in one copy per layer. The same code serves numpy
arrays (onnxruntime) and torch tensors on any device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LayerKV = tuple[Any, Any]


@dataclass(frozen=True, slots=True)
class SequenceKV:
    """One sequence's cache: row ``row`` of a batched ``present``, its last ``length`` positions."""

    present: tuple[LayerKV, ...]
    row: int
    length: int

    def layer(self, index: int) -> LayerKV:
        keys, values = self.present[index]
        start = keys.shape[2] - self.length
        return keys[self.row, :, start:], values[self.row, :, start:]


@dataclass(frozen=True, slots=True)
class TokenBatch:
    """Left-padded model inputs, shaped ``(batch, tokens)`` and ``(batch, past + tokens)``."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    position_ids: np.ndarray


def prefill_inputs(prompts: Sequence[Sequence[int]]) -> TokenBatch:
    """Prompts as one left-padded batch: the last column holds every prompt's last token."""
    width = max(len(p) for p in prompts)
    input_ids = np.zeros((len(prompts), width), dtype=np.int64)
    attention_mask = np.zeros((len(prompts), width), dtype=np.int64)
    position_ids = np.zeros((len(prompts), width), dtype=np.int64)
    for row, prompt in enumerate(prompts):
        pad = width - len(prompt)
        input_ids[row, pad:] = prompt
        attention_mask[row, pad:] = 1
        position_ids[row, pad:] = np.arange(len(prompt))
    return TokenBatch(input_ids, attention_mask, position_ids)


def decode_inputs(tokens: Sequence[int], past_lengths: Sequence[int]) -> TokenBatch:
    """One new token per sequence, after pasts left-padded to the longest."""
    past = max(past_lengths)
    attention_mask = np.zeros((len(tokens), past + 1), dtype=np.int64)
    for row, length in enumerate(past_lengths):
        attention_mask[row, past - length :] = 1
    return TokenBatch(
        np.asarray(tokens, dtype=np.int64).reshape(-1, 1),
        attention_mask,
        np.asarray(past_lengths, dtype=np.int64).reshape(-1, 1),
    )


def cache_length(cache: SequenceKV) -> int:
    return cache.length


def stack_caches(caches: Sequence[SequenceKV]) -> list[LayerKV]:
    """Per layer, ``(batch, kv_heads, longest, head_dim)`` keys and values, left-padded."""
    longest = max(c.length for c in caches)
    first = caches[0].present
    if (
        len(first[0][0]) == len(caches)
        and first[0][0].shape[2] == longest
        and all(c.present is first and c.row == row for row, c in enumerate(caches))
    ):
        return list(first)  # the same sequences as the last step, in order: no copy
    groups: dict[int, tuple[tuple[LayerKV, ...], list[int], list[int]]] = {}
    for row, cache in enumerate(caches):
        _, rows, sources = groups.setdefault(id(cache.present), (cache.present, [], []))
        rows.append(row)
        sources.append(cache.row)
    stacked: list[LayerKV] = []
    for layer in range(len(first)):
        keys0, values0 = first[layer]
        shape = (len(caches), keys0.shape[1], longest, keys0.shape[3])
        keys, values = _zeros(keys0, shape), _zeros(values0, shape)
        for present, rows, sources in groups.values():
            source_keys, source_values = present[layer]
            total = source_keys.shape[2]
            width = min(longest, total)
            # one gather per group; rows shorter than ``width`` carry masked padding along
            keys[rows, :, longest - width :] = source_keys[sources, :, total - width :]
            values[rows, :, longest - width :] = source_values[sources, :, total - width :]
        stacked.append((keys, values))
    return stacked


def split_caches(present: Sequence[LayerKV], lengths: Sequence[int]) -> list[SequenceKV]:
    """One cache per sequence (its last ``lengths[row]`` positions) over the batched output."""
    shared = tuple(present)
    return [SequenceKV(shared, row, length) for row, length in enumerate(lengths)]


def _zeros(like: Any, shape: tuple[int, ...]) -> Any:
    new_zeros = getattr(like, "new_zeros", None)  # torch: same dtype and device
    return new_zeros(shape) if new_zeros is not None else np.zeros(shape, dtype=like.dtype)
