"""Token ids -> text deltas, for streaming: never split a character, stop at stop strings.

Decoding one token at a time is wrong for most tokenizers: a UTF-8 character
may span several byte tokens, and SentencePiece-style tokens change how the
previous one renders (leading spaces). ``TextStream`` decodes a short window
of recent tokens and emits only the text that is final (the technique vLLM
uses). Stop strings may span token boundaries, so text that could still
become a stop string is held back until it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence

from .tokenizer import Tokenizer

REPLACEMENT = "\ufffd"
# prompt tokens decoded with the first generated ones, so they render in context
CONTEXT_TOKENS = 6


class TextStream:
    def __init__(
        self, tokenizer: Tokenizer, prompt_ids: Sequence[int], stop: Sequence[str] = ()
    ) -> None:
        self._tokenizer = tokenizer
        self._ids = list(prompt_ids[-CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)
        self._stop = tuple(s for s in stop if s)
        self._text = ""  # everything decoded so far (cut at a stop string)
        self._released = 0  # how much of _text has been emitted
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text that became final (often "")."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        decode = self._tokenizer.decode
        prefix = decode(self._ids[self._prefix_offset : self._read_offset])
        text = decode(self._ids[self._prefix_offset :])
        if len(text) <= len(prefix) or text.endswith(REPLACEMENT):
            return ""  # an incomplete character, or nothing new yet
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return self._add(text[len(prefix) :])

    def flush(self) -> str:
        """At the end: whatever is still held back (an incomplete character included)."""
        out = ""
        if not self.stopped:
            decode = self._tokenizer.decode
            prefix = decode(self._ids[self._prefix_offset : self._read_offset])
            text = decode(self._ids[self._prefix_offset :])
            self._prefix_offset = self._read_offset = len(self._ids)
            if len(text) > len(prefix):
                out = self._add(text[len(prefix) :], final=True)
        out += self._text[self._released :]
        self._released = len(self._text)
        return out

    @property
    def text(self) -> str:
        """The whole completion so far, emitted or held back."""
        return self._text

    def _add(self, delta: str, final: bool = False) -> str:
        start = max(0, len(self._text) - max((len(s) for s in self._stop), default=0) + 1)
        self._text += delta
        if self._stop:
            found = [i for i in (self._text.find(s, start) for s in self._stop) if i >= 0]
            if found:
                self._text = self._text[: min(found)]
                self.stopped = True
                out = self._text[self._released :]
                self._released = len(self._text)
                return out
        hold = 0 if final else self._partial_stop_length()
        end = len(self._text) - hold
        out = self._text[self._released : end]
        self._released = max(self._released, end)
        return out

    def _partial_stop_length(self) -> int:
        """Length of the longest tail of the text that begins some stop string."""
        for length in range(
            min(len(self._text), max((len(s) for s in self._stop), default=1) - 1), 0, -1
        ):
            tail = self._text[-length:]
            if any(s.startswith(tail) for s in self._stop):
                return length
        return 0
