"""``POST /v1/audio/speech`` through the official ``openai`` client, and its streaming behaviour.

The first half drives a real server (uvicorn on a local port) with the
client: WAV and PCM, durations, concurrency, errors (the compressed formats,
SSE and voices: ``test_speech_formats.py``). The second half drives
the ASGI app directly to watch every message it sends: audio leaves before
later chunks are made, draining finishes open streams, a client that leaves
stops the work, a failure after the first audio cuts the stream.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import wave
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np
import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import live_server, make_settings, run_async

MODEL = Settings(_env_file=None).model_name
SAMPLE_RATE = Model.sample_rate
VOICES = list(Model.voices)
SENTENCE = "The quick brown fox jumps over the lazy dog."
# small chunks, so that short texts still stream in several parts
SMALL = {"tts_chunk_chars": 48}
# batches form only when the generated service batches (batching=none keeps one item per call)
BATCHING = {"max_batch_size": 4, "max_batch_wait_ms": 20.0}
if Settings(_env_file=None).max_batch_size == 1:
    BATCHING = {}


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[tuple[str, FastAPI]]:
    app = create_app(make_settings(model_path, **SMALL, **BATCHING))
    with live_server(app) as address:
        yield address, app


@pytest.fixture(scope="module")
def api(server: tuple[str, FastAPI]) -> openai.OpenAI:
    url = f"http://{server[0]}/v1"
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=30)


def speak(api: openai.OpenAI, text: str, **options: Any) -> bytes:
    options.setdefault("voice", VOICES[0])
    options.setdefault("response_format", "wav")
    return api.audio.speech.create(model=MODEL, input=text, **options).content


def read_wav(data: bytes) -> np.ndarray:
    """The samples of a WAV file, checking it is exactly what the header declares."""
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, SAMPLE_RATE)
        frames = wav.readframes(wav.getnframes())
        assert len(frames) == 2 * wav.getnframes() == len(data) - 44
    return np.frombuffer(frames, dtype="<i2")


def seconds(samples: np.ndarray) -> float:
    return len(samples) / SAMPLE_RATE


# --- through the openai client ---------------------------------------------------------------


def test_wav_parses_with_the_declared_sample_rate(api: openai.OpenAI) -> None:
    response = api.audio.speech.with_raw_response.create(
        model=MODEL, voice=VOICES[0], input=SENTENCE, response_format="wav"
    )
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["x-sample-rate"] == str(SAMPLE_RATE)
    data = response.content
    assert int(response.headers["content-length"]) == len(data)
    samples = read_wav(data)
    assert 0.02 * len(SENTENCE) < seconds(samples) < 0.2 * len(SENTENCE)
    assert np.sqrt(np.mean((samples / 32768.0) ** 2)) > 0.01  # not silence


def test_duration_grows_with_the_input_and_shrinks_with_speed(api: openai.OpenAI) -> None:
    one, two, four = (seconds(read_wav(speak(api, " ".join([SENTENCE] * n)))) for n in (1, 2, 4))
    assert one < two < four
    assert 3.5 < four / one < 4.5
    fast = seconds(read_wav(speak(api, SENTENCE, speed=2.0)))
    slow = seconds(read_wav(speak(api, SENTENCE, speed=0.5)))
    assert 0.4 < fast / one < 0.6
    assert 1.8 < slow / one < 2.2


def test_pcm_is_the_wav_samples_without_the_header(api: openai.OpenAI) -> None:
    text = f"{SENTENCE} And a second sentence follows it."
    response = api.audio.speech.with_raw_response.create(
        model=MODEL, voice=VOICES[-1], input=text, response_format="pcm"
    )
    assert response.headers["content-type"] == "audio/pcm"
    assert response.headers["x-sample-rate"] == str(SAMPLE_RATE)
    pcm = response.content
    wav = speak(api, text, voice=VOICES[-1], response_format="wav")
    assert len(pcm) % 2 == 0
    assert pcm == wav[44:]


def test_streamed_response_is_the_same_audio(api: openai.OpenAI) -> None:
    text = " ".join(f"Sentence number {n} is here." for n in range(6))
    with api.audio.speech.with_streaming_response.create(
        model=MODEL, voice=VOICES[0], input=text, response_format="wav"
    ) as response:
        streamed = b"".join(response.iter_bytes())
    assert streamed == speak(api, text, voice=VOICES[0])
    read_wav(streamed)


def test_voice_object_form_is_accepted(api: openai.OpenAI) -> None:
    by_object = speak(api, SENTENCE, voice={"id": VOICES[-1]})  # type: ignore[arg-type]
    assert by_object == speak(api, SENTENCE, voice=VOICES[-1])


def test_concurrent_requests_each_get_their_own_audio(
    api: openai.OpenAI, server: tuple[str, FastAPI]
) -> None:
    jobs = [(f"Request {i}. " + "word " * (3 + 2 * i), VOICES[i % len(VOICES)]) for i in range(8)]
    alone = [read_wav(speak(api, text, voice=voice)) for text, voice in jobs]
    stats = server[1].state.service.batcher.stats
    batches, items = stats.batches, stats.items
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: read_wav(speak(api, job[0], voice=job[1])), jobs))
    for single, concurrent in zip(alone, together, strict=True):
        assert len(single) == len(concurrent)
        # batched and single calls may round differently: within -60 dB is the same audio
        assert np.abs(single.astype(np.int32) - concurrent).max() <= 33
    if BATCHING:
        assert stats.items - items > stats.batches - batches, "no batch held more than one chunk"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"voice": "nobody"}, "voice"),
        ({"response_format": "m4a"}, "response_format"),
        ({"response_format": "MP3"}, "response_format"),
        ({"speed": 4.5}, "speed"),
        ({"speed": 0.1}, "speed"),
        ({"input": "x" * 5000}, "input"),
        ({"input": ""}, "input"),
        ({"input": " \n "}, "input"),
        ({"stream_format": "json"}, "stream_format"),
        ({"extra_body": {"volume": 3}}, "volume"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_requests_answer_400_naming_the_field(
    api: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    options = {"voice": VOICES[0], "input": SENTENCE, **options}
    with pytest.raises(openai.BadRequestError) as raised:
        api.audio.speech.create(model=MODEL, **options)
    assert raised.value.status_code == 400
    assert raised.value.param == param
    assert raised.value.type == "invalid_request_error"


def test_unknown_model_answers_404(api: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        api.audio.speech.create(model="tts-1", voice=VOICES[0], input=SENTENCE)
    assert raised.value.param == "model"


def test_models_lists_the_served_model(api: openai.OpenAI) -> None:
    assert [model.id for model in api.models.list().data] == [MODEL]


def test_wav_is_sent_complete_when_the_length_is_unknown(model_path: Path) -> None:
    class LengthUnknown(Model):
        def num_samples(self, utterance):  # type: ignore[no-untyped-def]
            return None

    body = {
        "model": MODEL,
        "voice": VOICES[0],
        "input": f"{SENTENCE} Then another one.",
        "response_format": "wav",
    }
    settings = make_settings(model_path, **SMALL)
    with TestClient(create_app(settings, model_factory=LengthUnknown)) as client:
        unknown = client.post("/v1/audio/speech", json=body)
        pcm = client.post("/v1/audio/speech", json={**body, "response_format": "pcm"})
        flac = client.post("/v1/audio/speech", json={**body, "response_format": "flac"})
        events = client.post("/v1/audio/speech", json={**body, "stream_format": "sse"})
    assert unknown.status_code == pcm.status_code == flac.status_code == events.status_code == 200
    assert "content-length" in unknown.headers  # sent whole, once its length was known
    assert "content-length" not in pcm.headers  # streamed as it was made
    assert read_wav(unknown.content).tobytes() == pcm.content
    # FLAC streams with "length unknown" in its header (FFmpeg's decoder reads it)
    with av.open(io.BytesIO(flac.content)) as container:
        decoded = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    assert decoded.tobytes() == pcm.content
    # as events: the whole WAV in one delta
    delta, done = (json.loads(line[6:]) for line in events.text.split("\n\n") if line)
    assert base64.b64decode(delta["audio"]) == unknown.content
    assert done["usage"]["output_tokens"] == len(pcm.content) // 2


# --- the ASGI app, message by message ------------------------------------------------------------


async def call(
    app: FastAPI,
    body: dict[str, Any],
    *,
    on_message: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    disconnect: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """One POST /v1/audio/speech, as a server would run it; every message the app sends."""
    payload = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/audio/speech",
        "raw_path": b"/v1/audio/speech",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    request_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await (disconnect or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if on_message is not None:
            await on_message(message)

    await app(scope, receive, send)
    return messages


def status_of(messages: list[dict[str, Any]]) -> int:
    return next(m["status"] for m in messages if m["type"] == "http.response.start")


def body_of(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def completed(messages: list[dict[str, Any]]) -> bool:
    bodies = [m for m in messages if m["type"] == "http.response.body"]
    return bool(bodies) and not bodies[-1].get("more_body", False)


def is_audio(message: dict[str, Any]) -> bool:
    return message["type"] == "http.response.body" and bool(message.get("body"))


EIGHT_SENTENCES = " ".join(f"Part {n} of the text." for n in range(8))
LONG = {"model": MODEL, "voice": VOICES[0], "input": EIGHT_SENTENCES, "response_format": "wav"}


class GatedModel(Model):
    """Once ``armed``, each model call waits for a permit (warmup runs freely)."""

    armed = False
    permits = threading.Semaphore(0)
    calls = 0

    def predict(self, batch):  # type: ignore[no-untyped-def]
        if GatedModel.armed:
            GatedModel.calls += 1
            assert GatedModel.permits.acquire(timeout=10), "held: no permit within 10 s"
        return super().predict(batch)


@pytest.fixture
def gated_app(model_path: Path) -> Iterator[FastAPI]:
    GatedModel.armed, GatedModel.calls, GatedModel.permits = False, 0, threading.Semaphore(0)
    settings = make_settings(model_path, **SMALL, tts_chunks_in_flight=1, request_timeout_s=15)
    yield create_app(settings, model_factory=GatedModel)
    GatedModel.armed = False


@pytest.mark.parametrize("response_format", ["wav", "pcm", "mp3", "opus", "aac", "flac"])
def test_audio_leaves_before_later_chunks_are_made(
    gated_app: FastAPI, response_format: str
) -> None:
    async def scenario() -> None:
        async with gated_app.router.lifespan_context(gated_app):
            GatedModel.armed = True
            GatedModel.permits.release()  # the first chunk only
            sent = 0

            async def on_message(message: dict[str, Any]) -> None:
                nonlocal sent
                if is_audio(message):
                    sent += 1
                    # one chunk in flight: chunk k+2 cannot have started before chunk k was sent
                    assert GatedModel.calls <= sent + 1, "chunks were made before audio was sent"
                    GatedModel.permits.release()  # one more chunk per chunk sent

            body = {**LONG, "response_format": response_format}
            messages = await call(gated_app, body, on_message=on_message)
        assert status_of(messages) == 200 and completed(messages)
        assert GatedModel.calls == 8  # one model call per chunk
        if response_format in ("wav", "pcm"):
            assert sent == 8  # and one message each
        else:  # a codec is fed quarter seconds (a sentence lasts longer), each sent at once
            assert sent > 8
        if response_format == "wav":
            read_wav(body_of(messages))

    run_async(scenario())


def test_drain_finishes_an_open_stream_and_refuses_new_ones(gated_app: FastAPI) -> None:
    async def scenario() -> None:
        async with gated_app.router.lifespan_context(gated_app):
            service = gated_app.state.service
            GatedModel.armed = True
            GatedModel.permits.release()
            first_audio = asyncio.Event()

            async def on_message(message: dict[str, Any]) -> None:
                if is_audio(message):
                    first_audio.set()

            stream = asyncio.ensure_future(call(gated_app, LONG, on_message=on_message))
            await first_audio.wait()
            drain = asyncio.ensure_future(service.drain(15))
            await asyncio.sleep(0.01)
            refused = await call(gated_app, {**LONG, "input": "Too late."})
            assert status_of(refused) == 503
            for _ in range(20):
                GatedModel.permits.release()
            messages = await stream
            assert await drain is True
        assert status_of(messages) == 200 and completed(messages)
        read_wav(body_of(messages))

    run_async(scenario())


def test_a_client_that_leaves_stops_the_work(gated_app: FastAPI) -> None:
    async def scenario() -> None:
        async with gated_app.router.lifespan_context(gated_app):
            service = gated_app.state.service
            GatedModel.armed = True
            GatedModel.permits.release()
            gone = asyncio.Event()

            async def on_message(message: dict[str, Any]) -> None:
                if is_audio(message):
                    gone.set()  # the client hangs up after the first audio

            messages = await call(gated_app, LONG, on_message=on_message, disconnect=gone)
            assert not completed(messages)
            for _ in range(20):
                GatedModel.permits.release()
            assert await asyncio.wait_for(service.drain(5), 2) is True  # no stream left open
        assert GatedModel.calls <= 3  # of 8 chunks

    run_async(scenario())


def test_a_failure_after_the_first_audio_cuts_the_stream(model_path: Path) -> None:
    class FailsOnZebra(Model):
        def predict(self, batch):  # type: ignore[no-untyped-def]
            zebra = self.prepare("zebra", VOICES[0], 1.0).ids.tolist()
            if any(u.ids.tolist() == zebra for u in batch):
                raise RuntimeError("synthetic model failure")
            return super().predict(batch)

    settings = make_settings(model_path, **SMALL, tts_chunks_in_flight=1)
    app = create_app(settings, model_factory=FailsOnZebra)

    async def scenario() -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []

        async def on_message(message: dict[str, Any]) -> None:
            messages.append(message)

        async with app.router.lifespan_context(app):
            with pytest.raises(Exception):  # noqa: B017  the server closes the connection
                await call(app, {**LONG, "input": "First comes this. zebra"}, on_message=on_message)
            failed_first = await call(app, {**LONG, "input": "zebra"})
        assert status_of(failed_first) == 500
        return messages

    messages = run_async(scenario())
    assert status_of(messages) == 200 and any(map(is_audio, messages))
    assert not completed(messages)  # no final empty body: the client sees a cut connection
