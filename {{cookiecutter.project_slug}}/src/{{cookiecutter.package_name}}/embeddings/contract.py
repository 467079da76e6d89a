"""Start-up checks of a text encoder against the contract that ``model.py`` declares.

Each check fails start-up with one line that says what disagrees and what to
change, before the first request (or warmup) could meet the runtime's own,
less helpful, error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

# Encoded at load: a tokenizer that turns it into no tokens is not this model's.
PROBE_TEXT = "warm up the model"


class ContractError(ValueError):
    """The model on disk disagrees with what model.py declares."""


# What the service reads of a Model besides its methods, with the line that provides it:
# a model.py written for an older template lacks them (see the CHANGELOG)
REQUIRED_ATTRIBUTES = {
    "matryoshka_dimensions": "the class attribute `matryoshka_dimensions: tuple[int, ...] = ()` "
    "(it replaced supports_dimensions: list the sizes, or () for none)",
    "vocab_size": "`self.vocab_size = 0` in __init__ and `self.vocab_size = "
    "vocabulary_size(config, self._tokenizer)` in load()",
}


def require_attributes(model: Any) -> Any:
    """The model, if it has every attribute the service reads; else one line saying what to add."""
    for name, fix in REQUIRED_ATTRIBUTES.items():
        if not hasattr(model, name):
            raise ContractError(f"model.py's Model has no {name}: add {fix}")
    return model


def input_limit(declared: int, requested: int | None) -> int:
    """The token limit to serve: the declared one, or MAX_INPUT_TOKENS when that lowers it."""
    if requested is None:
        return declared
    if requested > declared:
        raise ContractError(
            f"MAX_INPUT_TOKENS={requested} exceeds the model's limit of {declared} tokens "
            "(Model.max_input_tokens in model.py); lower it"
        )
    return requested


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` beside the weights, or ``{}`` when there is none."""
    path = folder / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def check_config(config: dict[str, Any], dimensions: int, max_input_tokens: int) -> None:
    """The declared size and limit against a Hugging Face ``config.json`` (when it has them)."""
    hidden = config.get("hidden_size")
    if hidden is not None and hidden != dimensions:
        raise ContractError(
            f"config.json has hidden_size {hidden} but model.py declares dimensions = "
            f"{dimensions}: set Model.dimensions = {hidden}"
        )
    positions = config.get("max_position_embeddings")
    if positions is not None and max_input_tokens > positions:
        raise ContractError(
            f"model.py declares max_input_tokens = {max_input_tokens} but the model has "
            f"{positions} position embeddings (config.json): set Model.max_input_tokens "
            f"to at most {positions}"
        )


def check_matryoshka(sizes: tuple[int, ...], dimensions: int) -> None:
    """The declared shorter sizes must be shorter than the vectors (and whole numbers)."""
    wrong = [size for size in sizes if type(size) is not int or not 1 <= size <= dimensions]
    if wrong:
        raise ContractError(
            f"model.py declares matryoshka_dimensions = {sizes!r}, but {wrong[0]!r} is not a "
            f"size from 1 to dimensions = {dimensions}: list the sizes the model was trained "
            "to be cut to, or () for none"
        )


def vocabulary_size(config: dict[str, Any], tokenizer: Tokenizer) -> int:
    """The ids a token array may hold: the embedding table's rows when config.json says."""
    return config.get("vocab_size") or tokenizer.get_vocab_size(with_added_tokens=True)


def load_tokenizer(path: Path, max_tokens: int, vocab_size: int | None) -> Tokenizer:
    """Open the tokenizer file, truncating at ``max_tokens``, not padding (batches pad).

    Refused: no file; one that encodes the probe text to no tokens; one whose
    ids run past the model's embedding table (``vocab_size``, when known).
    """
    if not path.is_file():
        raise ContractError(
            f"no tokenizer {path.name} beside the model ({path} is missing): save the model's "
            f"tokenizer there (tokenizers' Tokenizer.save, or copy {path.name} from its "
            "Hugging Face folder)"
        )
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    # the special tokens added around the text count toward the limit, as in transformers
    tokenizer.enable_truncation(max_tokens)
    encoding = tokenizer.encode(PROBE_TEXT)
    if not any(not special for special in encoding.special_tokens_mask):
        raise ContractError(
            f"{path.name} encodes {PROBE_TEXT!r} to no tokens (ids {encoding.ids}): it is not "
            "a tokenizer for this model's text; save the one the model was trained with"
        )
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab_size is not None and size > vocab_size:
        raise ContractError(
            f"{path.name} has {size} tokens but the model embeds only {vocab_size}: "
            "save the tokenizer the model was trained with"
        )
    return tokenizer


def probe_ids(tokenizer: Tokenizer, length: int) -> list[int]:
    """Token ids of a real text, exactly ``length`` long: the longest input the service sends."""
    ids = tokenizer.encode(" ".join([PROBE_TEXT] * length)).ids  # truncated at the limit
    return (ids * length)[:length] if len(ids) < length else ids


def check_vectors(vectors: np.ndarray, dimensions: int) -> None:
    """The probe's output against the declared size: one vector per input, unit length or not."""
    if vectors.ndim != 2 or vectors.shape[1] != dimensions:
        found = vectors.shape[-1] if vectors.ndim else "no"
        raise ContractError(
            f"the model returns {found}-dimensional vectors (shape {tuple(vectors.shape)}) "
            f"but model.py declares dimensions = {dimensions}: set Model.dimensions = {found}"
        )
    if not np.isfinite(vectors).all():
        raise ContractError("the model returns NaN or infinite vectors for a plain text")
