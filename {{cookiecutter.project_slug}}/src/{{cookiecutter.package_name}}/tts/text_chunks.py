"""Split speech input into chunks that are synthesised, batched and streamed one by one.

Chunks end at sentence boundaries where possible (so prosody is not cut
mid-phrase), else at a clause or word boundary, else hard at the limit. The
first chunk is the first sentence, so the first audio arrives early.
"""

from __future__ import annotations

import re

_WHITESPACE = re.compile(r"\s+")
# a sentence ends at . ! ? (or ; :) followed by whitespace, or at a line break
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\s*\n\s*")
_MIN_CHUNK_CHARS = 16


def chunk_limit(chunk_chars: int, speed: float) -> int:
    """Characters per chunk: slower speech gets shorter chunks (each holds about as much audio)."""
    return max(_MIN_CHUNK_CHARS, int(chunk_chars * min(1.0, speed)))


def split_text(text: str, max_chars: int) -> list[str]:
    """Sentences of ``text`` with whitespace collapsed, each at most ``max_chars`` long.

    No character other than whitespace is dropped, reordered or duplicated.
    """
    chunks: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = _WHITESPACE.sub(" ", sentence).strip()
        while len(sentence) > max_chars:
            cut = _break_point(sentence, max_chars)
            chunks.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        if sentence:
            chunks.append(sentence)
    return chunks


def _break_point(sentence: str, max_chars: int) -> int:
    """Where to cut a too-long sentence: after a clause mark, else at a space, else hard."""
    after_clause = max(sentence.rfind(mark, 0, max_chars) for mark in ",;:") + 1
    if after_clause > max_chars // 2:
        return after_clause
    space = sentence.rfind(" ", 0, max_chars + 1)
    return space if space > max_chars // 2 else max_chars
