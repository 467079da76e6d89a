"""The batcher: routing, dispatch rules, backpressure, timeouts, skips, OOM splits, warmup.

Unit tests drive ``Batcher`` with a fake ``run_batch`` (no model, no HTTP);
a few go through the app over ASGI with a tiny fake model whose ``predict``
can be held on a gate. Nothing here asserts on speed: waits are bounded by
generous safety timeouts, never measured.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.serving.batch_service import InferenceService, warm_up
from {{ cookiecutter.package_name }}.serving.batcher import Batcher, ClientDisconnected
from {{ cookiecutter.package_name }}.serving.device import CPU
from {{ cookiecutter.package_name }}.serving.errors import (
    InvalidInput,
    ModelFailure,
    NotReady,
    OutOfMemory,
    Overloaded,
    RequestTimeout,
)
from {{ cookiecutter.package_name }}.serving.oom import SimulatedOutOfMemory
from {{ cookiecutter.package_name }}.serving.warmup import warmup_batch_sizes
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.vision.arrays import run_stacked
from {{ cookiecutter.package_name }}.vision.contract import ImageClassifier

SAFETY_S = 10  # upper bound on any wait; a correct batcher answers far sooner


class Recorder:
    """A fake ``run_batch``: doubles each payload, records every batch it sees.

    ``gate`` (when cleared) holds every call until it is set again, so tests
    can pile requests up behind a busy model deterministically.
    """

    def __init__(self, fail: Callable[[list[Any]], None] | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, instance: Any, payloads: list[Any]) -> Sequence[Any]:
        with self._lock:
            self.calls += 1
        self.started.set()
        assert self.gate.wait(SAFETY_S), "the test never opened the gate"
        if self.fail is not None:
            self.fail(payloads)
        with self._lock:
            self.batches.append(list(payloads))
        return [(instance, payload * 2) for payload in payloads]

    @property
    def seen(self) -> list[Any]:
        return [payload for batch in self.batches for payload in batch]


def make_batcher(
    run_batch: Callable[[Any, list[Any]], Sequence[Any]],
    *,
    instances: Sequence[Any] = ("model-0",),
    max_batch_size: int = 8,
    max_wait_s: float = 0.0,
    max_queue_size: int = 64,
) -> Batcher[Any]:
    batcher: Batcher[Any] = Batcher(
        run_batch,
        instances,
        max_batch_size=max_batch_size,
        max_wait_s=max_wait_s,
        max_queue_size=max_queue_size,
        keep_batch_sizes=True,
    )
    batcher.start()
    return batcher


async def hold_model(recorder: Recorder, batcher: Batcher[Any]) -> asyncio.Future[Any]:
    """Occupy the (single) model with one request until ``recorder.gate`` opens."""
    recorder.gate.clear()
    recorder.started.clear()
    blocker = batcher.submit(-1)
    assert await asyncio.to_thread(recorder.started.wait, SAFETY_S)
    return blocker


async def settle() -> None:
    """Let every ready callback and task of the event loop run."""
    for _ in range(50):
        await asyncio.sleep(0)


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, SAFETY_S * 3))


# --- routing ------------------------------------------------------------------------
def test_concurrent_requests_each_get_their_own_result() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = make_batcher(recorder, instances=("a", "b"), max_batch_size=8, max_queue_size=128)
        blocker = await hold_model(recorder, batcher)
        tasks = [asyncio.ensure_future(batcher.infer(n, timeout_s=SAFETY_S)) for n in range(100)]
        await settle()
        recorder.gate.set()
        results = await asyncio.gather(*tasks)
        await blocker
        assert [payload for _, payload in results] == [n * 2 for n in range(100)]
        assert {instance for instance, _ in results} <= {"a", "b"}
        assert sorted(recorder.seen) == [-1, *range(100)]  # each computed exactly once
        assert max(batcher.stats.batch_sizes) == 8  # requests were batched
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_multi_row_payloads_get_back_exactly_their_rows() -> None:
    class Doubler(FakeModel):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            return batch * 2

    async def scenario() -> None:
        batcher = make_batcher(run_stacked, instances=(Doubler(),), max_batch_size=16)
        rows = [1, 3, 2, 5, 1, 4]
        payloads = [np.full((n, 2), i, dtype=np.float32) for i, n in enumerate(rows)]
        results = await asyncio.gather(
            *(batcher.infer(p, len(p), timeout_s=SAFETY_S) for p in payloads)
        )
        for payload, result in zip(payloads, results, strict=True):
            np.testing.assert_array_equal(result, payload * 2)
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_payload_larger_than_a_batch_is_refused() -> None:
    async def scenario() -> None:
        batcher = make_batcher(Recorder(), max_batch_size=4)
        with pytest.raises(InvalidInput) as error:
            batcher.submit(1, size=5)
        assert error.value.status_code == 400
        await batcher.drain(SAFETY_S)

    run(scenario())


# --- when a batch is dispatched ------------------------------------------------------
def test_full_batch_is_dispatched_without_waiting() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = make_batcher(recorder, max_batch_size=4, max_wait_s=3600)
        with batcher.admit():  # one more request "on its way": the batcher would wait
            results = await asyncio.gather(
                *(batcher.infer(n, timeout_s=SAFETY_S) for n in range(4))
            )
        assert [r for _, r in results] == [0, 2, 4, 6]
        assert batcher.stats.batch_sizes == [4]
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_partial_batch_waits_for_requests_on_their_way() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = make_batcher(recorder, max_batch_size=4, max_wait_s=3600)
        coming = batcher.admit()
        first = asyncio.ensure_future(batcher.infer(1, timeout_s=SAFETY_S))
        await settle()
        assert recorder.calls == 0  # waits: another request is still being read
        second = asyncio.ensure_future(coming.infer(2, timeout_s=SAFETY_S))
        # the last arrival is queued: nothing else is coming, so the batch goes now
        assert [r for _, r in await asyncio.gather(first, second)] == [2, 4]
        assert batcher.stats.batch_sizes == [2]
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_wait_timer_dispatches_a_partial_batch() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = make_batcher(recorder, max_batch_size=4, max_wait_s=0.01)
        with batcher.admit():  # held open throughout: only the timer can dispatch
            _, result = await batcher.infer(7, timeout_s=SAFETY_S)
        assert result == 14
        assert batcher.stats.batch_sizes == [1]
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_lone_request_is_dispatched_at_once() -> None:
    """With nothing else on its way, waiting cannot fill the batch: no wait at all."""

    async def scenario() -> None:
        batcher = make_batcher(Recorder(), max_batch_size=32, max_wait_s=3600)
        with batcher.admit() as admission:
            _, result = await admission.infer(5, timeout_s=SAFETY_S)
        assert result == 10
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_released_admission_triggers_dispatch() -> None:
    """A request that fails validation leaves; a batch waiting for it goes at once."""

    async def scenario() -> None:
        recorder = Recorder()
        batcher = make_batcher(recorder, max_batch_size=4, max_wait_s=3600)
        doomed = batcher.admit()
        queued = asyncio.ensure_future(batcher.infer(3, timeout_s=SAFETY_S))
        await settle()
        assert recorder.calls == 0
        doomed.release()
        assert (await queued)[1] == 6
        await batcher.drain(SAFETY_S)

    run(scenario())


# --- backpressure, timeouts, skips ---------------------------------------------------
def test_full_queue_refuses_at_once_with_retry_after() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = make_batcher(recorder, max_batch_size=1, max_queue_size=3)
        blocker = await hold_model(recorder, batcher)
        queued = [asyncio.ensure_future(batcher.infer(n, timeout_s=SAFETY_S)) for n in (1, 2)]
        await settle()
        admission = batcher.admit()  # the third slot: a request reading its body
        for attempt in (batcher.admit, lambda: batcher.submit(9)):
            with pytest.raises(Overloaded) as error:
                attempt()
            assert error.value.status_code == 503
            assert int(error.value.headers["Retry-After"]) >= 1
        admission.release()
        recorder.gate.set()
        assert [r for _, r in await asyncio.gather(*queued)] == [2, 4]
        await blocker
        assert 9 not in recorder.seen
        batcher.admit().release()  # room again
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_bad_input_releases_its_queue_slot() -> None:
    async def scenario() -> None:
        batcher = make_batcher(Recorder(), max_batch_size=1, max_queue_size=1)
        for _ in range(3):
            with pytest.raises(InvalidInput), batcher.admit():
                raise InvalidInput("bad image", param="file")
        with batcher.admit() as admission:
            assert (await admission.infer(1, timeout_s=SAFETY_S))[1] == 2
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_timed_out_request_gets_504_and_is_never_computed() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = make_batcher(recorder, max_batch_size=1)
        blocker = await hold_model(recorder, batcher)
        with pytest.raises(RequestTimeout) as error:
            await batcher.infer(42, timeout_s=0.01)
        assert error.value.status_code == 504
        recorder.gate.set()
        await blocker
        assert (await batcher.infer(1, timeout_s=SAFETY_S))[1] == 2
        assert 42 not in recorder.seen
        assert batcher.stats.skipped == 1
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_disconnected_client_is_skipped_before_compute() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = make_batcher(recorder, max_batch_size=1)
        blocker = await hold_model(recorder, batcher)
        gone = asyncio.Event()
        request = asyncio.ensure_future(
            batcher.infer(42, timeout_s=SAFETY_S, disconnected=gone.wait)
        )
        staying = asyncio.ensure_future(batcher.infer(1, timeout_s=SAFETY_S))
        await settle()
        gone.set()
        with pytest.raises(ClientDisconnected):
            await request
        recorder.gate.set()
        assert (await staying)[1] == 2
        await blocker
        assert 42 not in recorder.seen
        assert batcher.stats.skipped == 1
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_cancelled_request_is_skipped_before_compute() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = make_batcher(recorder, max_batch_size=1)
        blocker = await hold_model(recorder, batcher)
        request = asyncio.ensure_future(batcher.infer(42, timeout_s=SAFETY_S))
        await settle()
        request.cancel()
        await settle()
        recorder.gate.set()
        await blocker
        assert (await batcher.infer(1, timeout_s=SAFETY_S))[1] == 2
        assert 42 not in recorder.seen
        await batcher.drain(SAFETY_S)

    run(scenario())


# --- failures --------------------------------------------------------------------------
def test_out_of_memory_splits_the_batch_and_retries() -> None:
    def fits_two(payloads: list[Any]) -> None:
        if len(payloads) > 2:
            raise SimulatedOutOfMemory("CUDA out of memory (simulated)")

    async def scenario() -> None:
        recorder = Recorder(fail=fits_two)
        batcher = make_batcher(recorder, max_batch_size=8)
        blocker = await hold_model(recorder, batcher)
        tasks = [asyncio.ensure_future(batcher.infer(n, timeout_s=SAFETY_S)) for n in range(8)]
        await settle()
        recorder.gate.set()
        assert [r for _, r in await asyncio.gather(*tasks)] == [n * 2 for n in range(8)]
        await blocker
        assert batcher.stats.oom_splits == 3  # 8 -> 4 + 4 -> 2 + 2 + 2 + 2
        assert sorted(len(batch) for batch in recorder.batches) == [1, 2, 2, 2, 2]
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_single_request_still_out_of_memory_answers_503_alone() -> None:
    def poison(payloads: list[Any]) -> None:
        if 13 in payloads:
            raise SimulatedOutOfMemory("CUDA out of memory (simulated)")

    async def scenario() -> None:
        recorder = Recorder(fail=poison)
        batcher = make_batcher(recorder, max_batch_size=4)
        blocker = await hold_model(recorder, batcher)
        tasks = [
            asyncio.ensure_future(batcher.infer(n, timeout_s=SAFETY_S)) for n in (11, 12, 13, 14)
        ]
        await settle()
        recorder.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await blocker
        assert [o[1] for o in outcomes if not isinstance(o, Exception)] == [22, 24, 28]
        assert isinstance(outcomes[2], OutOfMemory)
        assert outcomes[2].status_code == 503
        assert "Retry-After" in outcomes[2].headers
        assert (await batcher.infer(1, timeout_s=SAFETY_S))[1] == 2  # still serving
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_model_exception_fails_only_its_own_batch() -> None:
    def broken(payloads: list[Any]) -> None:
        if "bad" in payloads:
            raise ValueError("model bug")

    async def scenario() -> None:
        recorder = Recorder(fail=broken)
        batcher = make_batcher(recorder, max_batch_size=2)
        blocker = await hold_model(recorder, batcher)
        tasks = [
            asyncio.ensure_future(batcher.infer(p, timeout_s=SAFETY_S))
            for p in ("bad", "x", "y", "z")
        ]
        await settle()
        recorder.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await blocker
        assert all(isinstance(o, ModelFailure) and o.status_code == 500 for o in outcomes[:2])
        assert [o[1] for o in outcomes[2:]] == ["yy", "zz"]
        assert batcher.stats.failures == 1
        await batcher.drain(SAFETY_S)

    run(scenario())


def test_wrong_result_count_fails_the_batch() -> None:
    async def scenario() -> None:
        batcher = make_batcher(lambda instance, payloads: [1, 2, 3])
        with pytest.raises(ModelFailure):
            await batcher.infer(1, timeout_s=SAFETY_S)
        await batcher.drain(SAFETY_S)

    run(scenario())


# --- drain ---------------------------------------------------------------------------
def test_drain_finishes_admitted_and_queued_work_and_refuses_new() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = make_batcher(recorder, max_batch_size=2)
        blocker = await hold_model(recorder, batcher)
        queued = [asyncio.ensure_future(batcher.infer(n, timeout_s=SAFETY_S)) for n in (1, 2)]
        reading = batcher.admit()  # admitted before the drain, still reading its body
        await settle()
        drain = asyncio.ensure_future(batcher.drain(SAFETY_S))
        await settle()
        with pytest.raises(NotReady):
            batcher.admit()
        late = asyncio.ensure_future(reading.infer(3, timeout_s=SAFETY_S))
        recorder.gate.set()
        assert await drain is True
        assert [r for _, r in await asyncio.gather(*queued, late)] == [2, 4, 6]
        await blocker

    run(scenario())


# --- warmup and readiness ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("max_batch_size", "every_size", "expected"),
    [
        (1, False, [1]),
        (32, False, [1, 2, 4, 8, 16, 32]),
        (20, False, [1, 2, 4, 8, 16, 20]),
        (5, True, [1, 2, 3, 4, 5]),
    ],
)
def test_warmup_batch_sizes(max_batch_size: int, every_size: bool, expected: list[int]) -> None:
    assert warmup_batch_sizes(max_batch_size, every_size=every_size) == expected


def test_warm_up_runs_every_size_on_every_instance() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher: Batcher[Any] = Batcher(
            recorder, ["a", "b"], max_batch_size=8, max_wait_s=0, max_queue_size=8
        )
        await warm_up(batcher, lambda size: size)
        assert recorder.batches == [[1], [2], [4], [8]] * 2
        await batcher.drain(SAFETY_S)

    run(scenario())


class FakeModel(ImageClassifier):
    """The model contract with tiny tensors; ``gate`` holds ``predict`` when cleared."""

    platform = "fake"
    input_name = "pixels"
    output_name = "scores"
    input_shape = (3, 2, 2)
    input_dtype = np.float32
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    labels = tuple(f"class-{i}" for i in range(12))
    device = CPU

    def __init__(self, settings: Settings | None = None) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[int] = []
        self.threads: dict[str, set[int]] = {"load": set(), "predict": set()}

    def load(self) -> None:
        self.threads["load"].add(threading.get_ident())

    def preprocess(self, data: bytes) -> np.ndarray:
        if data != b"ok":
            raise InvalidInput("not an image", param="file")
        return np.ones(self.input_shape, dtype=np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(len(batch))
        self.threads["predict"].add(threading.get_ident())
        assert self.gate.wait(SAFETY_S)
        return batch.reshape(len(batch), -1).astype(np.float32)  # row i -> its 12 values

    def postprocess(self, output: np.ndarray) -> np.ndarray:
        return output


def test_ready_only_after_warmup_and_admission_gated_on_it() -> None:
    async def scenario() -> None:
        model = FakeModel()
        model.gate.clear()
        service: InferenceService[Any] = InferenceService(
            [model],
            run_stacked,
            example_payload=lambda model, size: model.example_batch(size),
            max_batch_size=4,
            max_wait_s=0,
            max_queue_size=8,
            request_timeout_s=SAFETY_S,
        )
        starting = asyncio.ensure_future(service.start())
        while not model.calls:  # warmup has begun and is held on the gate
            await asyncio.sleep(0.001)
        assert not service.readiness.ready
        with pytest.raises(NotReady):
            service.admit()
        model.gate.set()
        await starting
        assert service.readiness.serving
        assert model.calls == [1, 2, 4]
        assert service.warmup_seconds > 0
        with service.admit() as admission:
            result = await service.infer(model.example_batch(1), 1, admission=admission)
        assert result.shape == (1, 12)
        await service.drain(SAFETY_S)
        with pytest.raises(NotReady):
            service.admit()

    run(scenario())


# --- over HTTP -----------------------------------------------------------------------------
def v2_body(value: float, rows: int = 1) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": FakeModel.input_name,
                "datatype": "FP32",
                "shape": [rows, *FakeModel.input_shape],
                "data": [value] * (rows * 12),
            }
        ]
    }


MODEL_NAME = Settings.model_fields["model_name"].default
INFER_URL = f"/v2/models/{MODEL_NAME}/infer"


def http_scenario(tmp_path: Path, test: Callable[..., Any], **overrides: Any) -> None:
    """Run ``test(client, app, model)`` against the app serving one ``FakeModel``."""
    settings = Settings(_env_file=None, model_path=tmp_path / "unused", log_json=False, **overrides)
    models: list[FakeModel] = []

    def factory(settings: Settings) -> FakeModel:
        models.append(FakeModel(settings))
        return models[-1]

    app = create_app(settings, model_factory=factory)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                try:
                    await test(client, app, models[0])
                finally:
                    models[0].gate.set()

    run(scenario())


def test_http_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    async def test(client: httpx.AsyncClient, app: Any, model: FakeModel) -> None:
        model.gate.clear()
        warmup_calls = len(model.calls)
        running = asyncio.ensure_future(client.post(INFER_URL, json=v2_body(1)))
        while len(model.calls) == warmup_calls:  # computing, held on the gate
            await asyncio.sleep(0.001)
        queued = asyncio.ensure_future(client.post(INFER_URL, json=v2_body(2)))
        while app.state.service.batcher.depth == 0:
            await asyncio.sleep(0.001)
        refused = await client.post(INFER_URL, json=v2_body(3))
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert "queue" in refused.json()["error"]
        model.gate.set()
        answers = await asyncio.gather(running, queued)
        assert [r.status_code for r in answers] == [200, 200]
        assert answers[1].json()["outputs"][0]["data"] == [2.0] * 12

    http_scenario(tmp_path, test, max_batch_size=1, max_queue_size=1, max_batch_wait_ms=0)


def test_http_request_timeout_answers_504(tmp_path: Path) -> None:
    async def test(client: httpx.AsyncClient, app: Any, model: FakeModel) -> None:
        model.gate.clear()
        headers = {"content-type": "image/png"}
        response = await client.post("/v1/classify", content=b"not ok", headers=headers)
        assert response.status_code == 400  # bad input is refused before batching
        assert response.json()["error"]["param"] == "file"
        assert model.calls == [1]  # warmup only
        response = await client.post(INFER_URL, json=v2_body(1))
        assert response.status_code == 504
        assert "timeout" in response.json()["error"]

    http_scenario(tmp_path, test, max_batch_size=1, request_timeout_s=0.05)


# --- the request path ----------------------------------------------------------------------
async def call_asgi(app: Any, path: str, body: bytes, content_type: bytes) -> tuple[int, bool]:
    """POST through the raw ASGI interface; return the status and whether the body was read."""
    read: list[bool] = []

    async def receive() -> dict[str, Any]:
        read.append(True)
        return {"type": "http.request", "body": body, "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return statuses[0], bool(read)


def test_full_queue_refuses_before_reading_the_body(tmp_path: Path) -> None:
    async def test(client: httpx.AsyncClient, app: Any, model: FakeModel) -> None:
        model.gate.clear()
        warmup_calls = len(model.calls)
        running = asyncio.ensure_future(client.post(INFER_URL, json=v2_body(1)))
        while len(model.calls) == warmup_calls:
            await asyncio.sleep(0.001)
        queued = asyncio.ensure_future(client.post(INFER_URL, json=v2_body(2)))
        while app.state.service.batcher.depth == 0:
            await asyncio.sleep(0.001)
        body = json.dumps(v2_body(3)).encode()
        assert await call_asgi(app, INFER_URL, body, b"application/json") == (503, False)
        assert await call_asgi(app, "/v1/classify", b"ok", b"image/png") == (503, False)
        model.gate.set()
        assert [r.status_code for r in await asyncio.gather(running, queued)] == [200, 200]

    http_scenario(tmp_path, test, max_batch_size=1, max_queue_size=1, max_batch_wait_ms=0)


def test_classify_takes_a_raw_image_body_or_multipart(tmp_path: Path) -> None:
    async def test(client: httpx.AsyncClient, app: Any, model: FakeModel) -> None:
        raw = await client.post(
            "/v1/classify?k=3", content=b"ok", headers={"content-type": "image/jpeg"}
        )
        multipart = await client.post("/v1/classify?k=3", files={"file": ("a.png", b"ok")})
        assert raw.status_code == multipart.status_code == 200, raw.text
        assert raw.json() == multipart.json()
        assert len(raw.json()["predictions"]) == 3
        other = await client.post(
            "/v1/classify", content=b"ok", headers={"content-type": "text/plain"}
        )
        assert other.status_code == 415
        assert other.json()["error"]["param"] == "file"

    http_scenario(tmp_path, test)


def test_the_model_is_loaded_and_run_on_one_thread(tmp_path: Path) -> None:
    """torch's OpenMP pool slows down once a second thread has computed (serving/batch_service)."""

    async def test(client: httpx.AsyncClient, app: Any, model: FakeModel) -> None:
        answers = await asyncio.gather(*(client.post(INFER_URL, json=v2_body(i)) for i in range(8)))
        assert [r.status_code for r in answers] == [200] * 8
        assert len(model.threads["load"]) == 1
        assert model.threads["predict"] == model.threads["load"]  # warmup and batches
        assert threading.get_ident() not in model.threads["load"]  # never the event loop

    http_scenario(tmp_path, test)
