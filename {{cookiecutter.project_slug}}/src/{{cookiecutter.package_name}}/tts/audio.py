"""16-bit little-endian PCM and the WAV header in front of it (every format starts from these
samples; ``encoders`` turns them into the response)."""

from __future__ import annotations

import struct

import numpy as np

SAMPLE_WIDTH = 2  # bytes: signed 16-bit
CHANNELS = 1
WAV_HEADER_BYTES = 44


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] (clipped) -> signed 16-bit little-endian bytes."""
    scaled = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0
    return np.rint(scaled).astype("<i2").tobytes()


def wav_header(sample_rate: int, num_samples: int) -> bytes:
    """The 44-byte RIFF/WAVE header of a mono 16-bit PCM file of ``num_samples`` samples.

    Written before the audio exists, so the length must be known up front; a
    streamed WAV whose header declares the exact size is an ordinary file to
    every reader (Python's ``wave``, ffmpeg, browsers).
    """
    data_bytes = num_samples * SAMPLE_WIDTH * CHANNELS
    if data_bytes > 0xFFFFFFFF - (WAV_HEADER_BYTES - 8):
        raise ValueError("audio too long for a WAV file (4 GiB)")
    byte_rate = sample_rate * SAMPLE_WIDTH * CHANNELS
    return b"".join(
        [
            struct.pack("<4sI4s", b"RIFF", WAV_HEADER_BYTES - 8 + data_bytes, b"WAVE"),
            struct.pack(
                "<4sIHHIIHH",
                b"fmt ",
                16,  # size of this PCM format chunk
                1,  # format: integer PCM
                CHANNELS,
                sample_rate,
                byte_rate,
                SAMPLE_WIDTH * CHANNELS,  # block align
                SAMPLE_WIDTH * 8,  # bits per sample
            ),
            struct.pack("<4sI", b"data", data_bytes),
        ]
    )


def fit_length(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Trim or zero-pad to exactly ``num_samples`` (a streamed WAV already declared its size)."""
    if len(audio) >= num_samples:
        return audio[:num_samples]
    return np.concatenate([audio, np.zeros(num_samples - len(audio), dtype=audio.dtype)])
