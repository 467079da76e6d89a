"""Per-sequence KV caches <-> the left-padded batch that one model call takes.

Every running sequence owns its cache: one ``(key, value)`` pair per layer,
each shaped ``(kv_heads, length, head_dim)``. Sequences join and leave the
batch at every step, so a step stacks the caches of the sequences it runs,
left-padded to the longest (the attention mask hides the padding), and splits
what the model returns back into one cache per sequence. The same code serves
numpy arrays (onnxruntime) and torch tensors on any device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LayerKV = tuple[Any, Any]
SequenceKV = tuple[LayerKV, ...]


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
    return int(cache[0][0].shape[1])


def stack_caches(caches: Sequence[SequenceKV]) -> list[LayerKV]:
    """Per layer, ``(batch, kv_heads, longest, head_dim)`` keys and values, left-padded."""
    if len(caches) == 1:  # nothing to pad: a view, no copy
        return [(_contiguous(k[None]), _contiguous(v[None])) for k, v in caches[0]]
    lengths = [cache_length(c) for c in caches]
    longest = max(lengths)
    stacked: list[LayerKV] = []
    for layer in range(len(caches[0])):
        key0, value0 = caches[0][layer]
        heads, _, dim = key0.shape
        keys = _zeros(key0, (len(caches), heads, longest, dim))
        values = _zeros(value0, (len(caches), heads, longest, dim))
        for row, (cache, length) in enumerate(zip(caches, lengths, strict=True)):
            keys[row, :, longest - length :] = cache[layer][0]
            values[row, :, longest - length :] = cache[layer][1]
        stacked.append((keys, values))
    return stacked


def split_caches(present: Sequence[LayerKV], lengths: Sequence[int]) -> list[SequenceKV]:
    """Each sequence's cache (its last ``lengths[row]`` positions) out of the batched output."""
    total = int(present[0][0].shape[2])
    return [
        tuple(
            (keys[row, :, total - length :], values[row, :, total - length :])
            for keys, values in present
        )
        for row, length in enumerate(lengths)
    ]


def _zeros(like: Any, shape: tuple[int, ...]) -> Any:
    new_zeros = getattr(like, "new_zeros", None)  # torch: same dtype and device
    return new_zeros(shape) if new_zeros is not None else np.zeros(shape, dtype=like.dtype)


def _contiguous(array: Any) -> Any:
    return np.ascontiguousarray(array) if isinstance(array, np.ndarray) else array
