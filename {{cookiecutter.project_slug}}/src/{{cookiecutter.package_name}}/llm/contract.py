"""Start-up checks of a loaded language model against ``model.py``'s contract.

Each check fails start-up with one line that says what disagrees and how to
fix it, before warmup could fail with the runtime's own error (an empty
prompt, for one, fails deep inside the model as a reshape of zero elements).
"""

from __future__ import annotations
{%- if cookiecutter.backend == 'onnxruntime' %}

from collections.abc import Sequence
from typing import Any, Protocol
{%- else %}

from typing import Any
{%- endif %}

import numpy as np

from .kv_cache import SequenceKV
from .prefix_cache import BLOCK_TOKENS, PrefixCache
from .tokenizer import Tokenizer

# The text warmup runs through the model: the tokenizer must turn it into tokens.
WARMUP_TEXT = "Warm up"


class ContractError(ValueError):
    """The loaded model disagrees with what ``model.py`` declares."""


def check_tokenizer(tokenizer: Tokenizer, vocab_size: int) -> None:
    """The tokenizer makes tokens, fits the model's logits and names an end of sequence."""
    if not tokenizer.encode(WARMUP_TEXT):
        raise ContractError(
            f"the tokenizer encodes {WARMUP_TEXT!r} to no tokens: "
            "serve the model with the tokenizer it was trained with"
        )
    if tokenizer.vocab_size > vocab_size:
        raise ContractError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model {vocab_size} logits: "
            "pair the weights with their own tokenizer"
        )
    if not tokenizer.eos_token_ids:
        raise ContractError(
            "the tokenizer names no end-of-sequence token: set eos_token_id "
            "(generation_config.json or the tokenizer's special tokens)"
        )
    outside = sorted(i for i in tokenizer.eos_token_ids if not 0 <= i < vocab_size)
    if outside:
        raise ContractError(
            f"end-of-sequence ids {outside} are outside the vocabulary of {vocab_size} tokens: "
            "fix eos_token_id"
        )


def check_extend(model: Any, cache: PrefixCache, context_length: int) -> str:
    """``Model.extend`` after a cached prefix answers as ``Model.prefill`` of the whole prompt.

    Runs once at start-up (it also warms the extend call up) and leaves the cache empty.
    """
    warmup = model.tokenizer.encode(WARMUP_TEXT)
    length = min(2 * BLOCK_TOKENS + 3, context_length - 1)  # at least one block and a token
    prompt = (warmup * (length // len(warmup) + 1))[:length]
    whole, caches = model.prefill([prompt])
    if not isinstance(caches[0], SequenceKV):
        raise ContractError(
            f"Model.prefill returns {type(caches[0]).__name__} caches; prefix caching needs "
            "llm/kv_cache.SequenceKV ones: return those, or set PREFIX_CACHE_MB=0"
        )
    cache.store(prompt, caches[0])
    hit = cache.lookup(prompt)
    extended, grown = model.extend([prompt[hit.length :]], [hit.cache])
    cache.clear()
    whole, extended = np.asarray(whole, np.float32), np.asarray(extended, np.float32)
    finite = np.isfinite(whole)  # a model may rule tokens out with -inf
    agrees = (
        extended.shape == whole.shape
        and grown[0].length == len(prompt)
        and np.array_equal(finite, np.isfinite(extended))
        and int(extended.argmax()) == int(whole.argmax())
    )
    if agrees and finite.any():
        difference = float(np.abs(extended[finite] - whole[finite]).max())
        agrees = difference <= 2e-2 * (1 + float(np.abs(whole[finite]).max()))
    if not agrees:
        raise ContractError(
            "Model.extend after a cached prefix disagrees with Model.prefill of the whole "
            "prompt: fix extend (positions and attention mask after the past), or remove it "
            "(or set PREFIX_CACHE_MB=0) to serve without prefix caching"
        )
    return f"1x{len(prompt) - hit.length} extend after a cached {hit.length}"


def check_context_length(declared: int, maximum: int | None, where: str) -> None:
    if declared < 2:
        raise ContractError(f"model.py declares CONTEXT_LENGTH = {declared}: at least 2 tokens")
    if maximum is not None and declared > maximum:
        raise ContractError(
            f"model.py declares CONTEXT_LENGTH = {declared} but {where} holds at most {maximum} "
            f"positions: set CONTEXT_LENGTH = {maximum} (or less)"
        )
{%- if cookiecutter.backend == 'torch' %}


def check_vocab_size(declared: int, found: int, where: str) -> None:
    if declared != found:
        raise ContractError(
            f"{where} has a vocabulary of {found} tokens but model.py declares "
            f"VOCAB_SIZE = {declared}: set VOCAB_SIZE = {found}"
        )
{%- else %}


# One axis of a graph tensor: a dynamic axis by its name ("batch"), or a
# fixed size with the model.py constant that declares it (("VOCAB_SIZE", 259)).
Axis = str | tuple[str, int]


class TensorSpec(Protocol):
    """What onnxruntime reports of a graph input or output (``NodeArg``)."""

    name: str
    type: str
    shape: Sequence[object]


def check_tensors(
    where: str, kind: str, found: Sequence[TensorSpec], expected: dict[str, tuple[str, list[Axis]]]
) -> None:
    """Names, element types and axes of a graph's inputs or outputs, against the contract."""
    by_name = {tensor.name: tensor for tensor in found}
    for name in expected:
        if name not in by_name:
            raise ContractError(
                f"{where} has no {kind} {name!r} (it has {sorted(by_name)}): export with the "
                "tensor names model.py declares, or declare the graph's names there"
            )
    if kind == "input":
        extra = sorted(set(by_name) - set(expected))
        if extra:
            raise ContractError(
                f"{where} takes inputs model.py does not feed ({', '.join(extra)}): "
                "export without them, or feed them in model.py"
            )
    for name, (dtype, axes) in expected.items():
        tensor = by_name[name]
        if tensor.type != dtype:
            raise ContractError(f"{where} {kind} {name!r} is {tensor.type}; model.py uses {dtype}")
        if len(tensor.shape) != len(axes):
            declared = ", ".join(a if isinstance(a, str) else a[0] for a in axes)
            raise ContractError(
                f"{where} {kind} {name!r} has {len(tensor.shape)} axes, model.py expects "
                f"({declared})"
            )
        for got, want in zip(tensor.shape, axes, strict=True):
            if isinstance(want, str) and isinstance(got, int):
                raise ContractError(
                    f"{where} {kind} {name!r} has a fixed {want} axis of {got}: "
                    f"export with a dynamic {want} axis"
                )
            if isinstance(want, tuple) and isinstance(got, int) and got != want[1]:
                raise ContractError(
                    f"{where} {kind} {name!r} has {got} where model.py declares "
                    f"{want[0]} = {want[1]}: set {want[0]} = {got}"
                )
{%- endif %}
