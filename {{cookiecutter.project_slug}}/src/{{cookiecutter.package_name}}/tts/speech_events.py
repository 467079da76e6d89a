"""``stream_format="sse"``: the encoded audio as OpenAI's speech events.

Each piece of the body the ``audio`` stream would send becomes one event::

    data: {"type":"speech.audio.delta","audio":"<base64 of the next bytes>"}

and the stream ends with::

    data: {"type":"speech.audio.done",
           "usage":{"input_tokens":..,"output_tokens":..,"total_tokens":..}}

(one line on the wire)

The decoded deltas, concatenated, are exactly the file the ``audio`` stream
sends, in any ``response_format``. A speech model has no text tokenizer that
OpenAI's counts would match, so ``usage`` counts what this service handles:
``input_tokens`` the characters spoken (the demo model's input tokens are
characters), ``output_tokens`` the audio samples made, at the model's rate.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

MEDIA_TYPE = "text/event-stream"
# no caching, and no proxy buffering (nginx honours X-Accel-Buffering) between the events
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(slots=True)
class SpeechUsage:
    input_tokens: int
    output_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }


async def speech_events(
    pieces: AsyncGenerator[bytes, None], usage: SpeechUsage
) -> AsyncIterator[bytes]:
    """One delta event per piece, then the done event with ``usage`` as the pieces left it."""
    async with aclosing(pieces):
        async for piece in pieces:
            yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode()})
    yield _event({"type": "speech.audio.done", "usage": usage.as_dict()})


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
