"""What an embeddings request's ``input`` holds, checked item by item.

OpenAI's ``input`` is a string, a list of strings, one token array (a list of
token ids) or a list of token arrays. Every refusal names the item it is about
in ``param``: ``input``, ``input[2]``, or ``input[2][5]`` for one token id.

Token arrays are embedded exactly as given, as vLLM takes prompt token ids: no
special tokens are added. The model's own tokenizer adds them when it encodes
a text (BERT's ``[CLS] ... [SEP]``, with ``tokenizers`` and ``transformers``
defaults), so the ids a client gets from that tokenizer give the same vectors as
the text itself. Ids from another tokenizer (LangChain sends tiktoken's) are
only checked to lie in this model's vocabulary: what they mean is the client's
business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..serving.errors import InvalidInput
from .tokens import Tokens

SHAPES = "a non-empty string, a list of strings, a list of token ids or a list of such lists"
ITEMS = "a string, a token id or a list of token ids"


@dataclass(frozen=True, slots=True)
class Inputs:
    """A request's inputs: texts, or token arrays, in request order."""

    items: list[Any]  # list[str] or list[list[int]]
    token_arrays: bool
    single: bool  # one input, sent bare: errors name `input`, not `input[0]`

    def name(self, index: int) -> str:
        return "input" if self.single else f"input[{index}]"


def parse_input(value: Any) -> Inputs:
    """Tell the four shapes of ``input`` apart, refusing anything else by the item's name."""
    if isinstance(value, str):
        check_text(value, "input")
        return Inputs([value], token_arrays=False, single=True)
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"input must be {SHAPES}", param="input")
    first = value[0]
    if is_token_id(first):
        check_ids(value, "input")
        return Inputs([value], token_arrays=True, single=True)
    if isinstance(first, list):
        for index, item in enumerate(value):
            name = f"input[{index}]"
            if not isinstance(item, list):
                raise InvalidInput(f"{name} is not a list of token ids, as input[0] is", param=name)
            check_ids(item, name)
        return Inputs(value, token_arrays=True, single=False)
    for index, item in enumerate(value):
        name = f"input[{index}]"
        if not isinstance(item, str):
            kind = "a string, as input[0] is" if isinstance(first, str) else ITEMS
            raise InvalidInput(f"{name} is not {kind}", param=name)
        check_text(item, name)
    return Inputs(value, token_arrays=False, single=False)


def check_text(text: str, name: str) -> None:
    if not text:
        raise InvalidInput(f"{name} is an empty string", param=name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # JSON allows "\ud800"; tokenizers refuse it
        raise InvalidInput(f"{name} is not valid Unicode (a lone surrogate)", param=name) from None


def is_token_id(item: object) -> bool:
    return type(item) is int  # not bool, which JSON's true/false become


def check_ids(ids: list[Any], name: str) -> None:
    """A non-empty list of integers (their range is the model's: see ``token_inputs``)."""
    if not ids:
        raise InvalidInput(f"{name} is an empty token array", param=name)
    if set(map(type, ids)) != {int}:  # C speed for the common, valid case
        index = next(i for i, item in enumerate(ids) if not is_token_id(item))
        raise InvalidInput(
            f"{name}[{index}] is not a token id (an integer)", param=f"{name}[{index}]"
        )


def token_inputs(inputs: Inputs, vocab_size: int, limit: int) -> list[Tokens]:
    """The token arrays as ``Tokens``, each id checked against the vocabulary.

    Arrays longer than ``limit`` are cut to their first ``limit`` ids and flagged,
    as the tokenizer cuts texts (TRUNCATE decides whether that is refused).
    """
    tokens = []
    for index, ids in enumerate(inputs.items):
        if min(ids) < 0 or max(ids) >= vocab_size:
            position = next(i for i, item in enumerate(ids) if not 0 <= item < vocab_size)
            name = f"{inputs.name(index)}[{position}]"
            raise InvalidInput(
                f"{name} is not a token id of this model (its vocabulary has ids 0 to "
                f"{vocab_size - 1})",
                param=name,
            )
        tokens.append(Tokens(ids[:limit], truncated=len(ids) > limit))
    return tokens
