"""The speech model and what surrounds it: batch parity, lengths, text chunks, WAV, streams."""

from __future__ import annotations

import asyncio
import io
import re
import threading
import wave
from pathlib import Path
from typing import Literal, get_args, get_origin

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.errors import InvalidInput, NotReady, Overloaded
from {{ cookiecutter.package_name }}.tts import service as workload
from {{ cookiecutter.package_name }}.tts.audio import fit_length, to_pcm16, wav_header
from {{ cookiecutter.package_name }}.tts.chunk_stream import ChunkStream
from {{ cookiecutter.package_name }}.tts.speech_service import SpeechService
from {{ cookiecutter.package_name }}.tts.text_chunks import chunk_limit, split_text

from .conftest import make_settings, run_async

# two voice names that the contract maps to different voices of the model
VOICE = next(iter(Model.voices))
OTHER_VOICE = next(
    (name for name, index in Model.voices.items() if index != Model.voices[VOICE]), VOICE
)

# batched and single calls may round differently (padding changes a backend's kernels):
# within -60 dB of full scale is the same audio
TOLERANCE = 1e-3
TEXTS = [
    "Hi.",
    "The quick brown fox jumps over the lazy dog.",
    "Numbers 1234 and punctuation, too; why not?",
    "A much longer sentence, with clauses, pauses and enough words to be the longest one here.",
]


@pytest.fixture(scope="module")
def model(model_path: Path) -> Model:
    loaded = Model(make_settings(model_path))
    loaded.load()
    return loaded


@pytest.mark.reference
def test_the_demo_model_speaks_at_24_khz_in_every_voice_openai_names() -> None:
    from openai.types.audio.speech_create_params import Voice

    # the names the official client's type lists (its Literal), as OpenAI documents them
    (names,) = [get_args(arg) for arg in get_args(Voice) if get_origin(arg) is Literal]
    assert Model.sample_rate == 24_000
    assert sorted(Model.voices) == sorted(names)
    assert sorted(Model.voices.values()) == list(range(len(names)))  # a voice each


def test_batched_and_single_calls_give_the_same_audio(model: Model) -> None:
    names = list(model.voices)
    utterances = [model.prepare(text, names[i % len(names)], 1.0) for i, text in enumerate(TEXTS)]
    alone = [model.predict([utterance])[0] for utterance in utterances]
    together = model.predict(utterances)
    for single, batched in zip(alone, together, strict=True):
        assert single.shape == batched.shape
        np.testing.assert_allclose(batched, single, atol=TOLERANCE)
    # and through the workload's batch glue, payloads of several utterances each
    grouped = workload.run_batch(model, [utterances[:1], utterances[1:3], utterances[3:]])
    assert [len(group) for group in grouped] == [1, 2, 1]
    np.testing.assert_allclose(grouped[1][1], alone[2], atol=TOLERANCE)


def test_length_is_known_up_front_and_grows_with_the_text(model: Model) -> None:
    lengths = []
    for count in (1, 2, 4):
        utterance = model.prepare(" ".join([TEXTS[1]] * count), VOICE, 1.0)
        audio = model.predict([utterance])[0]
        assert audio.dtype == np.float32
        assert len(audio) == model.num_samples(utterance)
        lengths.append(len(audio))
    assert lengths[0] < lengths[1] < lengths[2]
    assert lengths[2] > 3.5 * lengths[0]


def test_speed_scales_the_duration(model: Model) -> None:
    normal = model.num_samples(model.prepare(TEXTS[3], VOICE, 1.0))
    assert normal is not None
    fast = model.num_samples(model.prepare(TEXTS[3], VOICE, 2.0))
    slow = model.num_samples(model.prepare(TEXTS[3], VOICE, 0.25))
    assert fast is not None and slow is not None
    assert 0.4 < fast / normal < 0.6
    assert 3.6 < slow / normal < 4.4


def test_audio_is_audible_bounded_and_repeatable(model: Model) -> None:
    utterance = model.prepare(TEXTS[1], VOICE, 1.0)
    first, again = model.predict([utterance])[0], model.predict([utterance])[0]
    np.testing.assert_array_equal(first, again)
    assert np.abs(first).max() <= 1.0
    assert np.sqrt(np.mean(first**2)) > 0.02
    if OTHER_VOICE == VOICE:
        return  # one voice: nothing to tell apart
    other_voice = model.predict([model.prepare(TEXTS[1], OTHER_VOICE, 1.0)])[0]
    assert len(other_voice) == len(first) and not np.allclose(other_voice, first, atol=1e-3)


@pytest.mark.reference
def test_the_demo_front_end_speaks_any_text(model: Model) -> None:
    assert model.num_samples(model.prepare("Crème brûlée, 日本語 ✓", VOICE, 1.0))


def test_nothing_to_speak_is_invalid_input(model: Model) -> None:
    with pytest.raises(InvalidInput) as raised:
        model.prepare("", VOICE, 1.0)
    assert raised.value.param == "input"


def test_warmup_inputs_cover_the_widest_chunk(model: Model) -> None:
    examples = workload.example_payload(model, 3)
    assert len(examples) == 3
    assert all(len(u.ids) == model.settings.tts_chunk_chars for u in examples)
    assert all(u.durations.max() == 1 for u in examples)  # the least audio for those inputs


@pytest.mark.parametrize("max_chars", [16, 40, 200])
def test_split_text_keeps_every_character_in_short_chunks(max_chars: int) -> None:
    text = "First sentence here. Second one!\n\nThird, with a comma; " + "word " * 40 + "x" * 90
    chunks = split_text(text, max_chars)
    assert all(0 < len(chunk) <= max_chars and chunk == chunk.strip() for chunk in chunks)
    assert "".join(chunks).replace(" ", "") == re.sub(r"\s+", "", text)
    assert chunks[0] == "First sentence here." or len(chunks[0]) == max_chars or max_chars < 20


def test_split_text_of_blank_input_is_empty() -> None:
    assert split_text(" \n\t ", 50) == []


def test_chunk_limit_shrinks_for_slow_speech() -> None:
    assert chunk_limit(200, 1.0) == chunk_limit(200, 3.0) == 200
    assert chunk_limit(200, 0.5) == 100
    assert chunk_limit(40, 0.25) == 16  # never below the minimum


def test_wav_header_describes_the_samples() -> None:
    samples = np.sin(np.linspace(0, 100, 12_345)).astype(np.float32)
    data = wav_header(Model.sample_rate, len(samples)) + to_pcm16(samples)
    with wave.open(io.BytesIO(data)) as wav:
        layout = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        assert layout == (1, 2, Model.sample_rate)
        assert wav.getnframes() == len(samples)
        decoded = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    np.testing.assert_allclose(decoded / 32767, samples, atol=1 / 32767)


def test_pcm_is_clipped_little_endian_int16() -> None:
    pcm = to_pcm16(np.array([0.0, 1.0, -1.0, 2.0, -2.0, 0.5], dtype=np.float32))
    assert np.frombuffer(pcm, dtype="<i2").tolist() == [0, 32767, -32767, 32767, -32767, 16384]
    with pytest.raises(ValueError):
        wav_header(24_000, 2**31)


def test_fit_length_pads_or_trims() -> None:
    audio = np.ones(10, dtype=np.float32)
    assert fit_length(audio, 4).tolist() == [1.0] * 4
    assert fit_length(audio, 12).tolist() == [1.0] * 10 + [0.0] * 2


def _echo_service(max_queue_size: int, gate: threading.Semaphore | None = None) -> SpeechService:
    """A service whose 'model' echoes payloads; ``gate`` (if any) admits one call per release."""

    def run_batch(_model: object, payloads: list[object]) -> list[object]:
        if gate is not None:
            assert gate.acquire(timeout=10), "held at the gate for 10 s"
        return payloads

    return SpeechService(
        [object()],
        run_batch,
        example_payload=lambda _model, size: [None] * size,
        max_batch_size=1,
        max_wait_s=0.0,
        max_queue_size=max_queue_size,
        request_timeout_s=5.0,
    )


def test_continuations_skip_the_queue_bound_and_the_drain() -> None:
    async def scenario() -> None:
        gate = threading.Semaphore(0)
        service = _echo_service(max_queue_size=2, gate=gate)
        service.batcher.start()
        service.readiness.ready = True
        queued = [service.submit(0)]
        while service.batcher.depth:  # the worker takes it and waits at the gate
            await asyncio.sleep(0.001)
        queued += [service.submit(1), service.submit(2)]  # the queue is now full
        with pytest.raises(Overloaded):
            service.submit("new request")
        continuation = service.submit("next chunk", continuation=True)
        service.readiness.draining = True
        with pytest.raises(NotReady):
            service.submit("new request while draining")
        late = service.submit("next chunk while draining", continuation=True)
        for _ in range(5):
            gate.release()
        results = await asyncio.gather(*queued, continuation, late)
        assert results == [0, 1, 2, "next chunk", "next chunk while draining"]
        await service.drain(5)

    run_async(scenario())


def test_chunk_stream_returns_parts_in_order_a_few_at_a_time() -> None:
    async def scenario() -> None:
        gate = threading.Semaphore(0)
        service = _echo_service(max_queue_size=8, gate=gate)
        service.batcher.start()
        service.readiness.ready = True
        stream = ChunkStream(service, list(range(7)), in_flight=3)
        await asyncio.sleep(0.05)  # the worker takes part 0 and waits at the gate
        assert service.batcher.depth == 2  # parts 1 and 2 wait; 3..6 are not submitted yet
        for _ in range(7):
            gate.release()
        results = [await stream.next() for _ in range(len(stream))]
        assert results == list(range(7))
        stream.close()
        assert await asyncio.wait_for(service.drain(5), 1)

    run_async(scenario())


def test_drain_waits_for_an_open_stream_and_close_cancels_the_rest() -> None:
    async def scenario() -> None:
        service = _echo_service(max_queue_size=8)
        service.batcher.start()
        service.readiness.ready = True
        stream = ChunkStream(service, ["a", "b", "c", "d"], in_flight=1)
        assert await stream.next() == "a"
        drain = asyncio.ensure_future(service.drain(5))
        await asyncio.sleep(0.05)
        assert not drain.done()  # held open by the stream
        assert await stream.next() == "b"  # the stream goes on while draining
        stream.close()
        assert await asyncio.wait_for(drain, 1) is True
        assert service.batcher.stats.items <= 3  # "d" never reached the model

    run_async(scenario())
