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

from collections.abc import Iterator, Sequence
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
    return extend_inputs(prompts, [0] * len(prompts))


def extend_inputs(tokens: Sequence[Sequence[int]], past_lengths: Sequence[int]) -> TokenBatch:
    """Each sequence's new tokens after its cached past (a prompt after its cached prefix).

    The pasts are left-padded to the longest, the new tokens to the longest run of
    them: a sequence with fewer new tokens than that has masked padding between
    its past and its new positions (``split_extended`` closes the gap).
    """
    past, width = max(past_lengths), max(len(t) for t in tokens)
    input_ids = np.zeros((len(tokens), width), dtype=np.int64)
    attention_mask = np.zeros((len(tokens), past + width), dtype=np.int64)
    position_ids = np.zeros((len(tokens), width), dtype=np.int64)
    for row, (new, length) in enumerate(zip(tokens, past_lengths, strict=True)):
        pad = width - len(new)
        input_ids[row, pad:] = new
        attention_mask[row, past - length : past] = 1
        attention_mask[row, past + pad :] = 1
        position_ids[row, pad:] = np.arange(length, length + len(new))
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
    runs = [(present, list(_runs(rows, sources))) for present, rows, sources in groups.values()]
    stacked: list[LayerKV] = []
    for layer in range(len(first)):
        keys0, values0 = first[layer]
        shape = (len(caches), keys0.shape[1], longest, keys0.shape[3])
        keys, values = _empty(keys0, shape), _empty(values0, shape)
        for present, spans in runs:
            source_keys, source_values = present[layer]
            total = source_keys.shape[2]
            width = min(longest, total)
            # slices, not fancy indexing: one contiguous copy per run of rows (a sequence
            # that left the batch splits a run in two); rows shorter than ``width`` carry
            # masked padding along, and what lies before ``width`` is zeroed
            for row, source, count in spans:
                for out, source_array in ((keys, source_keys), (values, source_values)):
                    out[row : row + count, :, longest - width :] = source_array[
                        source : source + count, :, total - width :
                    ]
                    if width < longest:
                        out[row : row + count, :, : longest - width] = 0
        stacked.append((keys, values))
    return stacked


def _runs(rows: list[int], sources: list[int]) -> Iterator[tuple[int, int, int]]:
    """(first row, first source row, count) of each stretch where both advance by one."""
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i] != rows[i - 1] + 1 or sources[i] != sources[i - 1] + 1:
            yield rows[start], sources[start], i - start
            start = i


def split_caches(present: Sequence[LayerKV], lengths: Sequence[int]) -> list[SequenceKV]:
    """One cache per sequence (its last ``lengths[row]`` positions) over the batched output."""
    shared = tuple(present)
    return [SequenceKV(shared, row, length) for row, length in enumerate(lengths)]


def split_extended(
    present: Sequence[LayerKV], past_lengths: Sequence[int], new_lengths: Sequence[int]
) -> list[SequenceKV]:
    """After an ``extend_inputs`` call: one cache per sequence, its past then its new positions.

    A sequence whose positions are contiguous (as many new tokens as the widest,
    or no past) gets a window, as ``split_caches`` gives; one with padding
    between past and new positions gets a compact copy without it.
    """
    shared = tuple(present)
    width, total = max(new_lengths), shared[0][0].shape[2]
    caches = []
    for row, (past, new) in enumerate(zip(past_lengths, new_lengths, strict=True)):
        if new == width or past == 0:
            caches.append(SequenceKV(shared, row, past + new))
            continue
        layers = []
        for keys, values in shared:
            joined = []
            for source in (keys, values):
                out = _empty(source, (1, source.shape[1], past + new, source.shape[3]))
                out[0, :, :past] = source[row, :, total - width - past : total - width]
                out[0, :, past:] = source[row, :, total - new :]
                joined.append(out)
            layers.append((joined[0], joined[1]))
        caches.append(SequenceKV(tuple(layers), 0, past + new))
    return caches


def copy_positions(cache: SequenceKV, start: int, stop: int) -> tuple[LayerKV, ...]:
    """Positions ``[start, stop)`` of one sequence's cache, every layer, as compact copies
    shaped ``(kv_heads, stop - start, head_dim)`` (they outlive the batch they came from)."""
    copies = []
    for index in range(len(cache.present)):
        keys, values = cache.layer(index)
        copies.append((_copy(keys[:, start:stop]), _copy(values[:, start:stop])))
    return tuple(copies)


def join_positions(runs: Sequence[tuple[LayerKV, ...]]) -> SequenceKV:
    """Consecutive runs of positions (``copy_positions``) as one sequence's cache."""
    length = sum(run[0][0].shape[1] for run in runs)
    layers = []
    for index in range(len(runs[0])):
        joined = []
        for kind in (0, 1):
            first = runs[0][index][kind]
            out = _empty(first, (1, first.shape[0], length, first.shape[2]))
            at = 0
            for run in runs:
                part = run[index][kind]
                out[0, :, at : at + part.shape[1]] = part
                at += part.shape[1]
            joined.append(out)
        layers.append((joined[0], joined[1]))
    return SequenceKV(tuple(layers), 0, length)


def cache_bytes(layers: tuple[LayerKV, ...]) -> int:
    return sum(keys.nbytes + values.nbytes for keys, values in layers)


def _empty(like: Any, shape: tuple[int, ...]) -> Any:
    new_empty = getattr(like, "new_empty", None)  # torch: same dtype and device
    return new_empty(shape) if new_empty is not None else np.empty(shape, dtype=like.dtype)


def _copy(array: Any) -> Any:
    clone = getattr(array, "clone", None)  # torch
    return clone() if clone is not None else array.copy()
