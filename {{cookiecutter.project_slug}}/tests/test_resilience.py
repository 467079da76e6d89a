"""Overload, draining, faults: the service keeps working and loses or mixes up nothing.

Workload-specific only in how a request is made (`classify_request`): each test
sends distinct images whose solo answers are known, so a result that reaches
the wrong request is caught.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX

from .conftest import PROJECT, free_port, make_settings, run_async, running_app
from .images import image_bytes

IMAGES = [image_bytes(seed) for seed in range(12)]


def slow_model(delay_s: float) -> type[Model]:
    class SlowModel(Model):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            time.sleep(delay_s)
            return super().predict(batch)

    return SlowModel


async def classify_request(client: httpx.AsyncClient, index: int) -> httpx.Response:
    files = {"file": ("x.png", IMAGES[index % len(IMAGES)])}
    return await client.post("/v1/classify", files=files, params={"k": 100})


Answer = list[tuple[str, float]]


def answer_of(response: httpx.Response) -> Answer:
    """The whole ranking with scores: distinct per image, so a misrouted result shows."""
    return [(p["label"], p["score"]) for p in response.json()["predictions"]]


def same_answer(got: Answer, expected: Answer) -> bool:
    return [label for label, _ in got] == [label for label, _ in expected] and np.allclose(
        [score for _, score in got], [score for _, score in expected], rtol=1e-4, atol=1e-6
    )


async def expected_answers(client: httpx.AsyncClient) -> list[Answer]:
    answers = []
    for index in range(len(IMAGES)):
        response = await classify_request(client, index)
        assert response.status_code == 200
        answers.append(answer_of(response))
    distinct = {tuple(round(score, 3) for _, score in answer) for answer in answers}
    assert len(distinct) == len(IMAGES), "each test image must have its own answer"
    return answers


@pytest.mark.heavy
def test_overload_answers_only_200_503_504_and_never_mixes_results(model_path: Path) -> None:
    """10x more concurrent requests than queue + batch capacity, five bursts in a row."""
    settings = make_settings(
        model_path, max_batch_size=4, max_queue_size=8, request_timeout_s=2.0, max_batch_wait_ms=2
    )
    burst = 10 * (settings.max_queue_size + settings.max_batch_size)
    app = create_app(settings, model_factory=slow_model(0.01))

    async def scenario() -> tuple[dict[int, int], list[int]]:
        counts: dict[int, int] = {}
        rss: list[int] = []
        async with running_app(app) as client:
            solo = await expected_answers(client)
            for _ in range(5):
                requests = (classify_request(client, i) for i in range(burst))
                responses = await asyncio.gather(*requests)
                for index, response in enumerate(responses):
                    counts[response.status_code] = counts.get(response.status_code, 0) + 1
                    if response.status_code == 200:
                        assert same_answer(answer_of(response), solo[index % len(IMAGES)])
                    elif response.status_code == 503:
                        assert response.headers["retry-after"] == "1"
                        assert response.json()["error"]["code"] == "queue_full"
                # ready again right after the burst, nothing left queued
                assert (await client.get("/health/ready")).status_code == 200
                assert app.state.service.batcher.depth == 0
                gc.collect()
                rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            assert (await classify_request(client, 0)).status_code == 200
        return counts, rss

    counts, rss = run_async(scenario())
    assert set(counts) <= {200, 503, 504}, counts
    assert counts.get(200, 0) >= settings.max_queue_size, counts
    assert counts.get(503, 0) > 0, counts
    # peak RSS (KiB) after the first burst must not keep climbing burst after burst
    assert rss[-1] - rss[1] < 64 * 1024, rss


def test_an_exception_in_predict_fails_only_its_batch(model_path: Path) -> None:
    failures = {"left": 1}

    class FlakyModel(Model):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            if failures["left"] and len(batch) == 1 and not warming.is_set():
                failures["left"] -= 1
                raise RuntimeError("injected failure")
            return super().predict(batch)

    warming = threading.Event()
    warming.set()
    app = create_app(make_settings(model_path), model_factory=FlakyModel)

    async def scenario() -> None:
        async with running_app(app) as client:
            warming.clear()
            failed = await classify_request(client, 0)
            assert failed.status_code == 500
            assert failed.json()["error"]["code"] == "model_error"
            assert "RuntimeError" in failed.json()["error"]["message"]
            for index in range(3):
                assert (await classify_request(client, index)).status_code == 200
            assert (await client.get("/health/ready")).status_code == 200

    run_async(scenario())


def test_a_stalled_model_call_is_bounded_by_the_timeout(model_path: Path) -> None:
    stall = threading.Event()

    class StallingModel(Model):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            if stall.is_set():
                time.sleep(1.5)
            return super().predict(batch)

    app = create_app(make_settings(model_path, request_timeout_s=0.3), model_factory=StallingModel)

    async def scenario() -> None:
        async with running_app(app) as client:
            stall.set()
            started = time.perf_counter()
            response = await classify_request(client, 0)
            assert response.status_code == 504
            assert response.json()["error"]["code"] == "request_timeout"
            assert time.perf_counter() - started < 1.2
            stall.clear()

    run_async(scenario())


# --- real server processes ---------------------------------------------------------

SERVER = textwrap.dedent(
    """
    import sys, time
    from {{ cookiecutter.package_name }} import model, __main__
    delay = float(sys.argv[1])
    original = model.Model.predict
    def slow_predict(self, batch):
        time.sleep(delay)
        return original(self, batch)
    model.Model.predict = slow_predict
    __main__.main()
    """
)


def start_server(model_path: Path, port: int, delay_s: float, **env: str) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT / "src"), os.environ.get("PYTHONPATH", "")]),
        f"{ENV_PREFIX}MODEL_PATH": str(model_path),
        f"{ENV_PREFIX}HOST": "127.0.0.1",
        f"{ENV_PREFIX}PORT": str(port),
        f"{ENV_PREFIX}CPU_FALLBACK": "true",
        f"{ENV_PREFIX}LOG_JSON": "false",
        **{f"{ENV_PREFIX}{key}": value for key, value in env.items()},
    }
    return subprocess.Popen(
        [sys.executable, "-c", SERVER, str(delay_s)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(base: str, process: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server never became ready")


@pytest.mark.heavy
def test_sigterm_drains_in_flight_and_queued_work_then_exits_0(model_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_server(model_path, port, 0.4, MAX_BATCH_SIZE="2", SHUTDOWN_TIMEOUT_S="20")
    try:
        wait_ready(base, process)

        async def scenario() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                solo = await expected_answers(client)
                in_flight = [asyncio.create_task(classify_request(client, i)) for i in range(8)]
                await asyncio.sleep(0.3)  # one batch computing, the rest queued
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.1)
                ready = await client.get("/health/ready")
                refused = await classify_request(client, 0)
                responses = await asyncio.gather(*in_flight)
                return {"solo": solo, "ready": ready, "refused": refused, "responses": responses}

        signalled = time.monotonic()
        outcome = run_async(scenario())
        exit_code = process.wait(timeout=20)
        drain_s = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
    output = process.communicate()[0]
    assert outcome["ready"].status_code == 503 and outcome["ready"].json() == {"status": "draining"}
    assert outcome["refused"].status_code == 503
    for index, response in enumerate(outcome["responses"]):
        assert response.status_code == 200, (index, response.text)
        assert same_answer(answer_of(response), outcome["solo"][index])
    assert exit_code == 0, output
    assert drain_s < 20
    assert "drained cleanly" in output


@pytest.mark.heavy
@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_a_bad_model_file_fails_startup_with_one_clear_line(tmp_path: Path, problem: str) -> None:
    model_file = tmp_path / Path(make_settings(tmp_path).model_path).name
    if problem == "corrupt":
        model_file.write_bytes(b"\x00not a model\xff" * 10)
    process = start_server(model_file, free_port(), 0.0)
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert errors[0].split(" ERROR ", 1)[1].startswith("{{ cookiecutter.package_name }}.main: startup failed: ")
    assert str(model_file) in errors[0] or problem == "corrupt"
    assert "Traceback" not in output
