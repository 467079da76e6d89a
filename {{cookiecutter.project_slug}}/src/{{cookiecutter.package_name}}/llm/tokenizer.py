"""Byte-level tokenizer: any UTF-8 text, no vocabulary file, nothing to download.

Ids 0-255 are the bytes of the text's UTF-8 encoding, so every string
round-trips exactly and no character is ever unknown. Three special tokens
follow. Text never encodes to a special token (a prompt that contains the
characters ``<|im_end|>`` gets their bytes), so users cannot forge the chat
template's markers.

A model with its own vocabulary brings its own tokenizer with the same four
members (``llm/hf_causal_lm.py`` wraps a Hugging Face one), and for
structured outputs (``llm/grammar.py``) a fifth, optional one:
``grammar_tokenizer(vocab_size)``, the vocabulary as llguidance reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import llguidance

ChatMessage = Mapping[str, str]  # {"role": ..., "content": ...}


class Tokenizer(Protocol):
    vocab_size: int
    eos_token_ids: frozenset[int]

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def apply_chat_template(self, messages: Sequence[ChatMessage]) -> list[int]: ...


class ByteTokenizer:
    END_OF_TEXT = 256
    IM_START = 257
    IM_END = 258
    vocab_size = 259
    # generation stops at either: end of text, or the end of the assistant's turn
    eos_token_ids = frozenset({END_OF_TEXT, IM_END})

    def encode(self, text: str) -> list[int]:
        # "replace": a lone surrogate (possible in JSON strings) becomes "?", never an error
        return list(text.encode("utf-8", errors="replace"))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the byte tokens (special tokens are dropped); invalid UTF-8 becomes U+FFFD."""
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def grammar_tokenizer(self, vocab_size: int) -> llguidance.LLTokenizer:
        """Every id's bytes for llguidance; special tokens are marked by its 0xFF prefix."""
        specials = {self.END_OF_TEXT: b"<|endoftext|>", self.IM_START: b"<|im_start|>"}
        specials[self.IM_END] = b"<|im_end|>"
        tokens = [bytes([i]) for i in range(256)] + [
            b"\xff" + specials[i] for i in sorted(specials)
        ]
        tokens += [b"\xff<|unused|>"] * (vocab_size - len(tokens))  # ids past the tokenizer's
        vocabulary = _Vocabulary(tokens, min(self.eos_token_ids))
        return llguidance.LLTokenizer(
            llguidance.TokenizerWrapper(vocabulary),
            n_vocab=vocab_size,
            eos_token=sorted(self.eos_token_ids),
        )

    def apply_chat_template(self, messages: Sequence[ChatMessage]) -> list[int]:
        """ChatML: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then the reply."""
        ids: list[int] = []
        for message in messages:
            ids.append(self.IM_START)
            ids += self.encode(f"{message['role']}\n{message['content']}")
            ids.append(self.IM_END)
            ids += self.encode("\n")
        ids.append(self.IM_START)
        ids += self.encode("assistant\n")
        return ids


class _Vocabulary:
    """What ``llguidance.TokenizerWrapper`` reads: token bytes, specials, and bytes -> ids."""

    bos_token_id = None

    def __init__(self, tokens: list[bytes], eos_token_id: int) -> None:
        self.tokens = tokens
        self.eos_token_id = eos_token_id
        self.special_token_ids = [i for i, t in enumerate(tokens) if t.startswith(b"\xff")]

    def __call__(self, text: bytes) -> list[int]:
        return list(text)  # byte ids are the bytes
