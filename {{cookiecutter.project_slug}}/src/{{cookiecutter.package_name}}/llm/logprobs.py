"""Token log-probabilities in the two shapes OpenAI's APIs answer with.

A token's text is what the tokenizer decodes it to alone, and its bytes are
that text's UTF-8 (as vLLM reports them): a byte-level token that is part of
a longer character shows as U+FFFD, and the choice's text stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .sampling import TokenLogprob
from .tokenizer import Tokenizer


def _entry(tokenizer: Tokenizer, token: int, logprob: float) -> dict[str, Any]:
    text = tokenizer.decode([token])
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def chat_content(tokenizer: Tokenizer, tokens: Sequence[TokenLogprob]) -> list[dict[str, Any]]:
    """``choices[i].logprobs.content`` of a chat answer (or of one stream chunk)."""
    return [
        {
            **_entry(tokenizer, item.token, item.logprob),
            "top_logprobs": [_entry(tokenizer, t, lp) for t, lp in item.top],
        }
        for item in tokens
    ]


def completion_logprobs(
    tokenizer: Tokenizer, tokens: Sequence[TokenLogprob], text_offset: int = 0
) -> dict[str, Any]:
    """``choices[i].logprobs`` of a completion: parallel lists, offsets into the choice's text.

    ``top_logprobs`` maps text to logprob, the chosen token always included, as
    OpenAI's legacy API and vLLM do (two ids that decode alike share an entry).
    """
    texts = [tokenizer.decode([item.token]) for item in tokens]
    offsets = []
    for text in texts:
        offsets.append(text_offset)
        text_offset += len(text)
    tops = []
    for text, item in zip(texts, tokens, strict=True):
        top = {tokenizer.decode([t]): lp for t, lp in item.top}
        top.setdefault(text, item.logprob)
        tops.append(top)
    return {
        "tokens": texts,
        "token_logprobs": [item.logprob for item in tokens],
        "top_logprobs": tops,
        "text_offset": offsets,
    }
