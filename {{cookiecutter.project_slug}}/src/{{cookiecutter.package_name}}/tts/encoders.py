"""Encode one response's audio as it is made: an encoder per response, fed chunk by chunk.

``response_format`` (OpenAI's six) -> what the body is:

======  ==============================  ==========================  ==============  ===========
format  codec (library)                 container                   bitrate         Content-Type
======  ==============================  ==========================  ==============  ===========
mp3     LAME (libmp3lame)               MPEG audio frames           64 kbit/s CBR   audio/mpeg
opus    libopus                         Ogg (RFC 7845), 60 ms pages 32 kbit/s VBR   audio/opus
aac     FFmpeg's AAC-LC encoder         ADTS                        64 kbit/s       audio/aac
flac    FFmpeg's FLAC encoder           FLAC                        lossless        audio/flac
wav     16-bit PCM (written here)       RIFF/WAVE, exact header     lossless        audio/wav
pcm     16-bit PCM (written here)       none: raw s16le samples     lossless        audio/pcm
======  ==============================  ==========================  ==============  ===========

All are mono, quantised to 16 bits exactly as ``pcm`` is. The sample rate is
the model's wherever the codec takes it, else the next higher rate it does
(``encoded_rate``; FFmpeg's resampler converts): MP3 takes 8 to 48 kHz (the
MPEG rates), Opus 8, 12, 16, 24 and 48 kHz, AAC 7.35 to 96 kHz; FLAC, WAV and
PCM take any. The response's ``X-Sample-Rate`` header says the rate.

The codecs run in PyAV (FFmpeg's libraries in the wheel, LGPL, no system
packages). Their output goes to an in-memory sink that ``encode`` empties, so
each chunk's bytes leave as soon as the chunk is encoded. Codecs work in frames
(MP3 1152 samples, AAC 1024, Opus 20 ms) and look ahead, so up to about 100 ms
of a chunk's end stays in the encoder until the next chunk or ``finish``.
MP3 and AAC streams cannot carry the encoder's delay and padding (a header
saying them is written by seeking back, which a stream cannot), so a decoder
plays up to about 100 ms of extra silence; Opus and FLAC are sample-exact. A
FLAC stream's header states the total length when it is known up front (the
encoder writes it only by seeking back, so it is filled in here), else it says
"unknown", as the format allows.

Encoding costs CPU (MP3 about 4 ms per second of audio on one core, see
``FORMATS``), so the route runs ``encode`` and ``finish`` off the event loop,
a quarter second of audio at a time; one encoder is never used by two threads
at once, and ``close`` may be called from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import av
import numpy as np

from .audio import SAMPLE_WIDTH, WAV_HEADER_BYTES, to_pcm16, wav_header


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """One ``response_format``: its codec and container (``None``: PCM written here)."""

    media_type: str
    codec: str | None = None
    container: str | None = None
    bit_rate: int | None = None
    container_options: dict[str, str] = field(default_factory=dict)
    codec_options: dict[str, str] = field(default_factory=dict)


# Identical requests give identical bytes: no library version strings, a fixed Ogg serial.
_BITEXACT = {"fflags": "+bitexact"}
# Encoder effort, measured on the demo's audio (ms of CPU per second of audio, one core):
# LAME -q 7 4.2 (its default -q 3: 7.4), FFmpeg's AAC "fast" coder 2.6 (its default
# "twoloop": 12.3); Opus stays at its best complexity (3.1).
FORMATS: dict[str, AudioFormat] = {
    "mp3": AudioFormat(
        "audio/mpeg",
        "libmp3lame",
        "mp3",
        64_000,
        {**_BITEXACT, "id3v2_version": "0"},
        {"compression_level": "7"},
    ),
    # an Ogg page is sent once the next one starts: short pages hold back little audio
    # (about 90 ms at a chunk's end, as MP3 does) for ~3.6 kbit/s of page headers
    "opus": AudioFormat(
        "audio/opus", "libopus", "ogg", 32_000, {**_BITEXACT, "page_duration": "60000"}
    ),
    "aac": AudioFormat("audio/aac", "aac", "adts", 64_000, _BITEXACT, {"aac_coder": "fast"}),
    "flac": AudioFormat("audio/flac", "flac", "flac", None, _BITEXACT),
    "wav": AudioFormat("audio/wav"),
    "pcm": AudioFormat("audio/pcm"),
}
DEFAULT_FORMAT = "mp3"  # OpenAI's default


class Encoder(Protocol):
    sample_rate: int  # of the encoded audio

    def encode(self, samples: np.ndarray) -> bytes:
        """The next chunk of float samples in [-1, 1] -> the bytes ready to send (maybe none)."""
        ...

    def finish(self) -> bytes:
        """Everything still held back, and the container's end; the encoder is then closed."""
        ...

    def close(self) -> None:
        """Free the codec (idempotent; a response that ends early calls only this)."""
        ...


def encoded_rate(response_format: str, sample_rate: int) -> int:
    """The sample rate of ``response_format``'s audio for a model making ``sample_rate`` Hz."""
    codec = FORMATS[response_format].codec
    rates = sorted(av.Codec(codec, "w").audio_rates or ()) if codec else []
    if not rates or sample_rate in rates:
        return sample_rate
    return next((rate for rate in rates if rate > sample_rate), rates[-1])


def exact_length(response_format: str, total_samples: int | None) -> int | None:
    """The body's size in bytes when it is known before encoding (PCM and WAV of known length)."""
    if total_samples is None or FORMATS[response_format].codec is not None:
        return None
    return (WAV_HEADER_BYTES if response_format == "wav" else 0) + SAMPLE_WIDTH * total_samples


def open_encoder(response_format: str, sample_rate: int, total_samples: int | None) -> Encoder:
    """An encoder for one response; ``total_samples``: the audio's length when known up front
    (WAV needs it: its header comes first)."""
    spec = FORMATS[response_format]
    if spec.codec is None:
        if response_format == "wav":
            if total_samples is None:
                raise ValueError("a WAV header needs the length: encode the whole audio at once")
            return PcmEncoder(sample_rate, wav_header(sample_rate, total_samples))
        return PcmEncoder(sample_rate, b"")
    rate = encoded_rate(response_format, sample_rate)
    return CodecEncoder(spec, sample_rate, rate, total_samples)


class PcmEncoder:
    """16-bit little-endian PCM, after an optional header (WAV's)."""

    def __init__(self, sample_rate: int, header: bytes) -> None:
        self.sample_rate = sample_rate
        self._header = header

    def encode(self, samples: np.ndarray) -> bytes:
        header, self._header = self._header, b""
        return header + to_pcm16(samples)

    def finish(self) -> bytes:
        header, self._header = self._header, b""
        return header

    def close(self) -> None:
        self._header = b""


class _Sink:
    """Where the muxer writes: a write-only, unseekable stream whose bytes ``take`` hands over."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class EncoderClosed(RuntimeError):
    """The response ended (the client left) while its audio was being encoded."""


class CodecEncoder:
    """One PyAV output container with one mono audio stream, writing into memory."""

    def __init__(
        self, spec: AudioFormat, input_rate: int, output_rate: int, total_samples: int | None
    ) -> None:
        self.sample_rate = output_rate
        self._input_rate = input_rate
        self._sink = _Sink()
        self._container = av.open(
            self._sink, mode="w", format=spec.container, container_options=spec.container_options
        )
        self._stream = self._container.add_stream(
            spec.codec, rate=output_rate, layout="mono", options=spec.codec_options
        )
        if spec.bit_rate:
            self._stream.bit_rate = spec.bit_rate
        # FLAC's header holds the total length; the muxer fills it in only by seeking back
        self._flac_total = total_samples if spec.codec == "flac" else None
        self._sent = 0
        self._state = threading.Lock()  # guards the two flags below, never held while encoding
        self._busy = False
        self._closing = False

    def encode(self, samples: np.ndarray) -> bytes:
        pcm = np.frombuffer(to_pcm16(samples), dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = self._input_rate
        return self._exclusive(lambda: self._mux(frame))

    def finish(self) -> bytes:
        def flush() -> bytes:
            held = self._mux(None)
            self._container.close()  # the container's end (an Ogg stream's last page)
            return held + self._take()

        try:
            return self._exclusive(flush)
        finally:
            self.close()

    def close(self) -> None:
        """Free the codec now, or, while another thread is encoding, as soon as it is done."""
        with self._state:
            self._closing = True
            busy = self._busy
        if not busy:
            self._release()

    def _exclusive(self, work: Callable[[], bytes]) -> bytes:
        with self._state:
            if self._closing:
                raise EncoderClosed("the response was closed")
            self._busy = True
        try:
            return work()
        finally:
            with self._state:
                self._busy = False
                closing = self._closing
            if closing:  # close() came meanwhile and left the release to this thread
                self._release()

    def _release(self) -> None:
        try:
            self._container.close()  # idempotent; writes the trailer into the sink, unread
        finally:
            self._sink.take()

    def _mux(self, frame: av.AudioFrame | None) -> bytes:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._take()

    def _take(self) -> bytes:
        data = self._sink.take()
        if self._flac_total is not None and self._sent == 0 and data:
            data = with_flac_length(data, self._flac_total)
        self._sent += len(data)
        return data


def with_flac_length(head: bytes, total_samples: int) -> bytes:
    """A FLAC stream's first bytes with the STREAMINFO total-samples field set.

    The stream starts ``fLaC``, a 4-byte block header (type 0: STREAMINFO), then
    STREAMINFO, whose bytes 10 to 17 hold the sample rate (20 bits), channels
    (3), bits per sample (5) and the total samples (36), big-endian.
    """
    if len(head) < 26 or head[:4] != b"fLaC" or head[4] & 0x7F or total_samples >= 1 << 36:
        return head
    packed = int.from_bytes(head[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | total_samples
    return head[:18] + packed.to_bytes(8, "big") + head[26:]
