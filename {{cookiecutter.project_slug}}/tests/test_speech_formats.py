"""Every ``response_format``, ``stream_format="sse"``, every voice and ``instructions``, through
the official ``openai`` client against a real server; then the encoders on their own.

Each encoded answer is decoded by a decoder apart from the service's encoding path:
libsndfile (``soundfile``: its own WAV and FLAC readers, mpg123 for MP3, libopus's
decoder for Ogg Opus) and, for AAC, which libsndfile does not read, FFmpeg's native
AAC decoder through PyAV (the service encodes with FFmpeg's AAC *encoder*). The
decoded sample rate and length are checked against the ``pcm`` answer of the same
request, and the lossy formats' waveform against its samples. The tests read the
contract (``Model.sample_rate``, ``Model.voices``), so they hold for any model.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import openai
import pytest
import soundfile

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tts.encoders import (
    CodecEncoder,
    EncoderClosed,
    encoded_rate,
    open_encoder,
)

from .conftest import live_server, make_settings

MODEL = Settings(_env_file=None).model_name
SAMPLE_RATE = Model.sample_rate
VOICES = list(Model.voices)
TEXT = "The quick brown fox jumps over the lazy dog. A second sentence follows. And a third."
SMALL = {"tts_chunk_chars": 48}  # several chunks, so every format streams in parts

MPEG_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
AAC_RATES = (7350, *MPEG_RATES, 64000, 88200, 96000)
# format: (Content-Type, the rates the codec takes (None: any), samples a decoder may add:
# MP3 and AAC streams cannot say the encoder's delay and padding, about two codec frames)
FORMATS: dict[str, tuple[str, tuple[int, ...] | None, int]] = {
    "mp3": ("audio/mpeg", MPEG_RATES, 3 * 1152),
    "opus": ("audio/opus", OPUS_RATES, 0),
    "aac": ("audio/aac", AAC_RATES, 3 * 1024),
    "flac": ("audio/flac", None, 0),
    "wav": ("audio/wav", None, 0),
    "pcm": ("audio/pcm", None, 0),
}


def rate_of(response_format: str) -> int:
    """The documented rate: the model's where the codec takes it, else the next higher one."""
    rates = FORMATS[response_format][1]
    if rates is None or SAMPLE_RATE in rates:
        return SAMPLE_RATE
    return min((rate for rate in rates if rate > SAMPLE_RATE), default=max(rates))


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[str]:
    with live_server(create_app(make_settings(model_path, **SMALL))) as address:
        yield address


@pytest.fixture(scope="module")
def api(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{server}/v1", api_key="unused", max_retries=0)


def create(api: openai.OpenAI, **options: Any) -> Any:
    options = {"model": MODEL, "voice": VOICES[0], "input": TEXT, **options}
    return api.audio.speech.with_raw_response.create(**options)


def pcm_of(api: openai.OpenAI, **options: Any) -> np.ndarray:
    return np.frombuffer(create(api, response_format="pcm", **options).content, dtype="<i2")


def decode(response_format: str, data: bytes) -> tuple[np.ndarray, int]:
    """16-bit samples and their rate, by a decoder independent of the service's encoders."""
    if response_format == "pcm":
        return np.frombuffer(data, dtype="<i2"), SAMPLE_RATE
    if response_format == "aac":  # libsndfile reads no AAC: FFmpeg's native decoder
        with av.open(io.BytesIO(data), format="aac") as container:
            frames = [frame.to_ndarray()[0] for frame in container.decode(audio=0)]  # float
            rate = container.streams.audio[0].codec_context.sample_rate
        return np.rint(np.clip(np.concatenate(frames), -1, 1) * 32767).astype(np.int16), rate
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    return samples, rate


def best_lag(decoded: np.ndarray, reference: np.ndarray, most: int) -> int:
    """How many samples ``decoded`` starts late (0..most): the peak of the cross-correlation."""
    size = len(decoded) + len(reference)
    spectrum = np.fft.rfft(decoded, size) * np.conj(np.fft.rfft(reference, size))
    return int(np.argmax(np.fft.irfft(spectrum, size)[: most + 1]))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


@pytest.mark.parametrize("response_format", list(FORMATS))
def test_each_format_decodes_to_the_pcm_audio(api: openai.OpenAI, response_format: str) -> None:
    media_type, _, padding = FORMATS[response_format]
    reference = pcm_of(api)
    response = create(api, response_format=response_format)
    assert response.headers["content-type"] == media_type
    assert response.headers["x-sample-rate"] == str(rate_of(response_format))
    samples, rate = decode(response_format, response.content)
    assert rate == rate_of(response_format)
    extra = len(samples) - round(len(reference) * rate / SAMPLE_RATE)
    assert 0 <= extra <= padding * rate // SAMPLE_RATE + (rate != SAMPLE_RATE), extra
    if padding == 0 and rate == SAMPLE_RATE and response_format != "opus":
        assert np.array_equal(samples, reference)  # lossless: the very samples
    elif rate == SAMPLE_RATE:  # lossy: the same waveform, once the codec's delay is taken off
        lag = best_lag(samples.astype(np.float64), reference.astype(np.float64), padding)
        assert correlation(samples[lag : lag + len(reference)], reference) > 0.7


def test_mp3_is_the_default_as_openai(api: openai.OpenAI) -> None:
    response = create(api)  # no response_format
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.content == create(api, response_format="mp3").content
    samples, rate = decode("mp3", response.content)
    assert rate == rate_of("mp3") and len(samples) > 0


@pytest.mark.parametrize("response_format", list(FORMATS))
def test_streamed_bytes_are_the_whole_answer(api: openai.OpenAI, response_format: str) -> None:
    options = {"model": MODEL, "voice": VOICES[0], "input": TEXT}
    streaming = api.audio.speech.with_streaming_response
    with streaming.create(response_format=response_format, **options) as response:
        parts = list(response.iter_bytes())
    assert b"".join(parts) == create(api, response_format=response_format).content


def sse_events(api: openai.OpenAI, **options: Any) -> tuple[Any, list[dict[str, Any]]]:
    options = {"model": MODEL, "voice": VOICES[0], "input": TEXT, **options}
    with api.audio.speech.with_streaming_response.create(stream_format="sse", **options) as r:
        lines = list(r.iter_lines())
    # every event is one `data:` line and a blank line
    assert all(line.startswith("data: ") for line in lines[::2]), lines[:4]
    assert not any(lines[1::2])
    return r, [json.loads(line.removeprefix("data: ")) for line in lines[::2]]


@pytest.mark.parametrize("response_format", list(FORMATS))
def test_sse_deltas_carry_the_same_file_then_usage(
    api: openai.OpenAI, response_format: str
) -> None:
    response, events = sse_events(api, response_format=response_format)
    assert response.headers["content-type"].startswith("text/event-stream")
    *deltas, done = events
    assert deltas and all(set(e) == {"type", "audio"} for e in deltas)
    assert {e["type"] for e in deltas} == {"speech.audio.delta"}
    audio = b"".join(base64.b64decode(e["audio"], validate=True) for e in deltas)
    assert audio == create(api, response_format=response_format).content
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert set(usage) == {"input_tokens", "output_tokens", "total_tokens"}
    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] == len(pcm_of(api))  # samples made
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.mark.parametrize("voice", VOICES)
def test_every_voice_of_the_table_speaks(api: openai.OpenAI, voice: str) -> None:
    samples, rate = decode("wav", create(api, voice=voice, response_format="wav").content)
    assert rate == SAMPLE_RATE and np.abs(samples).max() > 0
    # names mapped to one voice of the model sound the same; to different voices, different
    other = next((name for name in VOICES if name != voice), None)
    if other is not None:
        same = Model.voices[other] == Model.voices[voice]
        assert np.array_equal(pcm_of(api, voice=other), pcm_of(api, voice=voice)) == same


def test_an_unknown_voice_answers_400_listing_the_choices(api: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        create(api, voice="nobody-here")
    assert raised.value.param == "voice"
    assert ", ".join(VOICES) in raised.value.message


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"response_format": "ogg"}, "response_format"),
        ({"response_format": "wave"}, "response_format"),
        ({"stream_format": "events"}, "stream_format"),
        ({"stream_format": "sse", "response_format": "m4a"}, "response_format"),
    ],
)
def test_an_unknown_format_answers_400_naming_the_field(
    api: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        create(api, **options)
    assert raised.value.param == param
    assert "choose one of" in raised.value.message


def test_instructions_are_accepted_and_change_nothing(api: openai.OpenAI) -> None:
    told = create(api, response_format="flac", instructions="Whisper, slowly and sadly.")
    assert told.content == create(api, response_format="flac").content


# --- the encoders on their own ------------------------------------------------------------------


def tone(seconds: float, rate: int, pitch: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * pitch * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("rate", "expected"), [(22_050, 24_000), (44_100, 48_000), (96_000, 48_000)]
)
def test_opus_resamples_a_rate_it_does_not_take(rate: int, expected: int) -> None:
    assert encoded_rate("opus", rate) == expected
    chunks = [tone(0.7, rate), tone(0.5, rate, 330.0)]
    encoder = open_encoder("opus", rate, None)
    data = b"".join([encoder.encode(chunk) for chunk in chunks] + [encoder.finish()])
    samples, decoded_rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert decoded_rate == expected
    assert abs(len(samples) / expected - 1.2) < 0.005


@pytest.mark.parametrize("known", [True, False])
def test_flac_states_its_length_when_known_and_else_says_unknown(known: bool) -> None:
    audio = tone(1.3, 24_000)
    encoder = open_encoder("flac", 24_000, len(audio) if known else None)
    data = encoder.encode(audio[:20_000]) + encoder.encode(audio[20_000:]) + encoder.finish()
    with av.open(io.BytesIO(data)) as container:  # reads either kind
        decoded = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    expected = np.frombuffer(open_encoder("pcm", 24_000, None).encode(audio), dtype="<i2")
    assert np.array_equal(decoded, expected)
    if known:  # a header with the length: readers that trust it (libsndfile) read it whole
        samples, _ = soundfile.read(io.BytesIO(data), dtype="int16")
        assert np.array_equal(samples, expected)
    total = int.from_bytes(data[18:26], "big") & ((1 << 36) - 1)  # STREAMINFO's total samples
    assert total == (len(audio) if known else 0)


def test_close_during_an_encode_waits_for_it_then_frees_the_codec() -> None:
    encoder = open_encoder("mp3", 24_000, None)
    assert isinstance(encoder, CodecEncoder)
    long = tone(120.0, 24_000)  # a second or so of encoding
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.setdefault("bytes", encoder.encode(long)))
    worker.start()
    deadline = time.monotonic() + 10
    while not encoder._busy and time.monotonic() < deadline:  # until it is encoding
        time.sleep(0.001)
    encoder.close()  # from another thread, mid-encode: must neither crash nor wait for it
    assert worker.is_alive()
    worker.join(30)
    assert len(result["bytes"]) > 0  # the encode in flight finished
    with pytest.raises(EncoderClosed):
        encoder.encode(long[:100])
    encoder.close()  # idempotent


def test_a_wav_needs_its_length_up_front() -> None:
    with pytest.raises(ValueError, match="needs the length"):
        open_encoder("wav", 24_000, None)


def test_identical_input_gives_identical_bytes() -> None:
    """No random Ogg serial or version strings: a retried request gets the same file."""
    for response_format in ("mp3", "opus", "aac", "flac"):
        outputs = []
        for _ in range(2):
            encoder = open_encoder(response_format, 24_000, None)
            outputs.append(encoder.encode(tone(0.5, 24_000)) + encoder.finish())
        assert outputs[0] == outputs[1], response_format
