"""OpenAI-compatible text to speech: ``POST /v1/audio/speech`` -> audio, streamed as it is made.

The input is split into chunks (sentences, at most TTS_CHUNK_CHARS long).
Chunks go through the batcher in order, TTS_CHUNKS_IN_FLIGHT at a time, so
concurrent requests share batches, and each chunk's audio is encoded
(``encoders``: mp3 by default, opus, aac, flac, wav, pcm) and sent as soon as
it is ready, as raw bytes (``stream_format="audio"``) or as OpenAI's
server-sent events (``"sse"``, ``speech_events``). The request is admitted
once, with its first chunk (503 when the queue is full); a stream that started
is finished, even while draining. A WAV header needs the length up front: the
model knows it before synthesis (``Model.num_samples``), so WAV streams too,
with an exact header.

Errors before the first audio answer the usual JSON error. After it, an
error (a later chunk timing out or failing) cuts the connection, which the
client sees as an incomplete body, never as a complete-looking file.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from ..serving import tracing
from ..serving.deps import disconnect_waiter, get_settings
from ..serving.errors import InvalidInput
from ..serving.openai_models import check_model
from ..serving.responses import ERROR_RESPONSES, ErrorBody
from . import speech_events
from .audio import fit_length
from .chunk_stream import ChunkStream
from .encoders import (
    DEFAULT_FORMAT,
    FORMATS,
    Encoder,
    encoded_rate,
    exact_length,
    open_encoder,
)
from .speech_events import SpeechUsage
from .speech_service import SpeechService, SpeechServiceDep
from .text_chunks import chunk_limit, split_text

logger = logging.getLogger(__name__)
router = APIRouter(tags=["audio"])

SAMPLE_RATE_HEADER = "X-Sample-Rate"


class VoiceRef(BaseModel):
    """OpenAI's object form of a voice, ``{"id": "<name>"}``."""

    model_config = ConfigDict(extra="forbid")
    id: str


STREAM_FORMATS = ("audio", "sse")


class SpeechRequest(BaseModel):
    """The body of OpenAI's ``POST /v1/audio/speech``; unknown fields answer 400."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The served model name (MODEL_NAME).")
    input: str = Field(
        min_length=1, description="The text to speak, at most TTS_MAX_INPUT_CHARS characters."
    )
    voice: str | VoiceRef = Field(
        description="One of OpenAI's voice names that model.py maps to a voice of the model."
    )
    response_format: str = Field(
        DEFAULT_FORMAT,
        description="`mp3` (default), `opus` (Ogg), `aac` (ADTS), `flac`, `wav` (16-bit mono) "
        "or `pcm` (raw signed 16-bit little-endian mono samples); the sample rate is in the "
        "X-Sample-Rate response header.",
    )
    speed: float = Field(
        1.0, ge=0.25, le=4.0, description="Speaking rate: 0.25 (slow) to 4.0 (fast)."
    )
    instructions: str | None = Field(
        None,
        description="How to speak: accepted and ignored, since this model takes no "
        "instructions (the audio is the same with or without them).",
    )
    stream_format: str = Field(
        "audio",
        description="`audio` (the file's bytes, streamed) or `sse` (OpenAI's "
        "`speech.audio.delta` events with base64 audio, then `speech.audio.done` with usage).",
    )


def _check(body: SpeechRequest, request: Request, model: Any) -> str:
    """Validate what the schema cannot; return the voice name."""
    settings = get_settings(request)
    check_model(body.model, settings)
    if len(body.input) > settings.tts_max_input_chars:
        raise InvalidInput(
            f"input is {len(body.input)} characters; the limit is {settings.tts_max_input_chars}",
            param="input",
            code="input_too_long",
        )
    voice = body.voice if isinstance(body.voice, str) else body.voice.id
    if voice not in model.voices:
        raise InvalidInput(
            f"voice {voice!r} is not available; choose one of {', '.join(model.voices)}",
            param="voice",
            code="invalid_voice",
        )
    if body.response_format not in FORMATS:
        raise InvalidInput(
            f"response_format {body.response_format!r} is not supported; "
            f"choose one of {', '.join(FORMATS)}",
            param="response_format",
            code="unsupported_response_format",
        )
    if body.stream_format not in STREAM_FORMATS:
        raise InvalidInput(
            f"stream_format {body.stream_format!r} is not supported; "
            f"choose one of {', '.join(STREAM_FORMATS)}",
            param="stream_format",
        )
    return voice


@router.post(
    "/v1/audio/speech",
    response_class=StreamingResponse,
    summary="Speak text (OpenAI-compatible); the audio streams as each sentence is synthesised",
    responses={
        200: {
            "content": {spec.media_type: {} for spec in FORMATS.values()}
            | {speech_events.MEDIA_TYPE: {}},
            "description": "The audio, or with `stream_format=sse` its events",
        },
        404: {"model": ErrorBody, "description": "Unknown `model`"},
        **ERROR_RESPONSES,
    },
)
async def create_speech(
    body: SpeechRequest, request: Request, service: SpeechServiceDep
) -> Response:
    model = service.model
    voice = _check(body, request, model)
    settings = get_settings(request)
    chunks = split_text(body.input, chunk_limit(settings.tts_chunk_chars, body.speed))
    if not chunks:
        raise InvalidInput("input contains no text to speak", param="input")
    # admitted first, so the batcher knows this request is on its way (and waits for it
    # rather than dispatching a lone chunk); the model's front end (a phonemizer, for real
    # models) then runs off the event loop
    with service.admit() as admission:
        utterances = await service.preprocess(prepare_all, model, chunks, voice, body.speed)
        planned = [model.num_samples(utterance) for utterance in utterances]
        stream = ChunkStream(
            service,
            [[u] for u in utterances],
            in_flight=settings.tts_chunks_in_flight,
            admission=admission,
        )
    response_format = body.response_format
    total = None if None in planned else sum(planned)
    usage = SpeechUsage(input_tokens=sum(map(len, chunks)))
    headers = {SAMPLE_RATE_HEADER: str(encoded_rate(response_format, model.sample_rate))}
    encoder: Encoder | None = None
    try:
        first = (await stream.next(disconnect_waiter(request)))[0]
        if response_format == "wav" and total is None:
            # the length is only known at the end: send the WAV once complete
            audio = [first] + [(await stream.next())[0] for _ in range(len(stream) - 1)]
            samples = np.concatenate(audio)
            usage.output_tokens = len(samples)
            with tracing.span("encode"):
                content = await service.run_off_loop(encode_whole, response_format, model, samples)
            stream.close()
            if body.stream_format == "audio":
                return Response(content, media_type=FORMATS["wav"].media_type, headers=headers)
            pieces = _once(content)
        else:
            encoder = await service.run_off_loop(
                open_encoder, response_format, model.sample_rate, total
            )
            # PCM costs nothing to encode: each chunk goes whole; a codec's, in quarter seconds
            slices = model.sample_rate // 4 if FORMATS[response_format].codec else None
            pieces = _encoded(service, encoder, first, stream, planned, usage, slices)
    except BaseException:
        stream.close()
        raise

    def close() -> None:
        stream.close()
        if encoder is not None:
            encoder.close()

    if body.stream_format == "sse":
        return _ClosingStreamingResponse(
            speech_events.speech_events(pieces, usage),
            on_close=close,
            media_type=speech_events.MEDIA_TYPE,
            headers=headers | speech_events.HEADERS,
        )
    length = exact_length(response_format, total)
    if length is not None:
        headers["Content-Length"] = str(length)
    return _ClosingStreamingResponse(
        pieces, on_close=close, media_type=FORMATS[response_format].media_type, headers=headers
    )


def prepare_all(model: Any, chunks: list[str], voice: str, speed: float) -> list[Any]:
    """Every chunk's model input, in order (``InvalidInput`` for text the model cannot speak)."""
    return [model.prepare(chunk, voice, speed) for chunk in chunks]


def encode_whole(response_format: str, model: Any, samples: np.ndarray) -> bytes:
    """The whole file at once (a WAV whose length was not known before synthesis)."""
    encoder = open_encoder(response_format, model.sample_rate, len(samples))
    return encoder.encode(samples) + encoder.finish()


async def _once(content: bytes) -> AsyncGenerator[bytes, None]:
    yield content


async def _encoded(
    service: SpeechService,
    encoder: Encoder,
    first: np.ndarray,
    stream: ChunkStream,
    planned: list[int | None],
    usage: SpeechUsage,
    slice_samples: int | None,
) -> AsyncGenerator[bytes, None]:
    """Each chunk's audio, encoded, in order, as each is ready; then what the encoder held.

    A codec is fed ``slice_samples`` at a time, off the event loop (MP3 costs ~4 ms CPU per
    second of audio: on the loop it would stall every stream), so the first bytes leave once
    the first slice is encoded rather than the whole sentence.
    """
    try:
        audio = first
        for index in range(len(stream)):
            if index:
                try:
                    audio = (await stream.next())[0]
                except Exception as exc:
                    logger.warning(
                        "speech stream cut off at chunk %d of %d: %s", index + 1, len(stream), exc
                    )
                    raise
            audio = _exact(audio, planned[index])
            usage.output_tokens += len(audio)
            step = max(1, slice_samples or len(audio))
            for start in range(0, len(audio), step):
                with tracing.span("encode", chunk=index):
                    encoded = await service.run_off_loop(
                        encoder.encode, audio[start : start + step]
                    )
                if encoded:
                    yield encoded
        with tracing.span("encode", chunk="end"):
            encoded = await service.run_off_loop(encoder.finish)
        if encoded:
            yield encoded
    finally:
        encoder.close()
        stream.close()  # client gone or stream cut: the rest never reach the model


class _ClosingStreamingResponse(StreamingResponse):
    """Runs ``on_close`` however the response ends, even if its body was never started
    (a client that left before the first byte)."""

    def __init__(
        self, content: AsyncIterator[bytes], *, on_close: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _exact(audio: np.ndarray, planned: int | None) -> np.ndarray:
    if planned is None or len(audio) == planned:
        return audio
    logger.error("the model made %d samples where num_samples promised %d", len(audio), planned)
    return fit_length(audio, planned)
