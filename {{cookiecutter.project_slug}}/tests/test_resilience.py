"""Overload, draining, faults: the service keeps working and loses or mixes up nothing.

Workload-agnostic: ``workload_requests`` says how to make this workload's
requests. Each test sends distinct requests whose solo answers are known, so a
result that reaches the wrong request is caught. Slow, failing and stalling
models are the real model with its compute methods (``COMPUTE_METHODS``)
wrapped.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.errors import StartupFailed
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX

from . import workload_requests as workload
from .conftest import MODEL_FILE, PROJECT, free_port, make_settings, run_async, running_app


def wrapped_model(before_call: Callable[[str], None]) -> type[Model]:
    """The real model, calling ``before_call(method name)`` before each compute call."""

    def wrap(name: str) -> Callable[..., Any]:
        original = getattr(Model, name)

        @functools.wraps(original)
        def method(self: Model, *args: Any, **kwargs: Any) -> Any:
            before_call(name)
            return original(self, *args, **kwargs)

        return method

    return type("WrappedModel", (Model,), {name: wrap(name) for name in workload.COMPUTE_METHODS})


def slow_model(delay_s: float) -> type[Model]:
    return wrapped_model(lambda _name: time.sleep(delay_s))


async def expected_answers(client: httpx.AsyncClient) -> list[Any]:
    answers = []
    for index in range(workload.DISTINCT_REQUESTS):
        response = await workload.send(client, index)
        assert response.status_code == 200, response.text
        answers.append(workload.answer_of(response))
    distinct = {workload.fingerprint(answer) for answer in answers}
    assert len(distinct) == workload.DISTINCT_REQUESTS, "each test request must have its own answer"
    return answers


@pytest.mark.heavy
def test_overload_answers_only_200_503_504_and_never_mixes_results(model_path: Path) -> None:
    """10x more concurrent requests than queue + compute capacity, five bursts in a row."""
    concurrent, queued = 4, 8
    settings = make_settings(
        model_path, request_timeout_s=2.0, **workload.capacity(concurrent, queued)
    )
    burst = 10 * (concurrent + queued)
    app = create_app(settings, model_factory=slow_model(0.01))

    async def scenario() -> tuple[dict[int, int], list[int]]:
        counts: dict[int, int] = {}
        rss: list[int] = []
        async with running_app(app) as client:
            solo = await expected_answers(client)
            for _ in range(5):
                responses = await asyncio.gather(*(workload.send(client, i) for i in range(burst)))
                for index, response in enumerate(responses):
                    counts[response.status_code] = counts.get(response.status_code, 0) + 1
                    if response.status_code == 200:
                        expected = solo[index % workload.DISTINCT_REQUESTS]
                        assert workload.same_answer(workload.answer_of(response), expected), index
                    elif response.status_code == 503:
                        assert response.headers["retry-after"] == "1"
                        assert response.json()["error"]["code"] == "queue_full"
                    elif response.status_code == 504:
                        assert response.json()["error"]["code"] == "request_timeout"
                # ready again right after the burst, nothing left queued
                assert (await client.get("/health/ready")).status_code == 200
                assert workload.pending(app.state.service) == 0
                gc.collect()
                rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            assert (await workload.send(client, 0)).status_code == 200
        return counts, rss

    counts, rss = run_async(scenario())
    print(f"overload: 5 bursts of {burst} concurrent requests -> status counts {counts}")
    assert set(counts) <= {200, 503, 504}, counts
    assert counts.get(200, 0) >= 5 * concurrent, counts  # every burst got work done
    assert counts.get(503, 0) > 0, counts
    # peak RSS (KiB) after the first burst must not keep climbing burst after burst
    assert rss[-1] - rss[1] < 64 * 1024, rss


def test_an_exception_in_the_model_fails_only_its_batch(model_path: Path) -> None:
    """One model call raises while 12 requests are in flight: that call's requests (at most
    one batch) answer 500, every other request its own answer, and the service stays up."""
    failures = {"left": 0}

    def fail_once(name: str) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError(f"injected failure in {name}")

    concurrent = 4
    settings = make_settings(model_path, **workload.capacity(concurrent, 64))
    app = create_app(settings, model_factory=wrapped_model(fail_once))

    async def scenario() -> tuple[list[Any], list[httpx.Response]]:
        async with running_app(app) as client:
            solo = await expected_answers(client)
            failures["left"] = 1  # the next model call, whichever batch it serves
            requests = (workload.send(client, i) for i in range(workload.DISTINCT_REQUESTS))
            responses = await asyncio.gather(*requests)
            assert (await client.get("/health/ready")).status_code == 200
            assert (await workload.send(client, 0)).status_code == 200
            return solo, list(responses)

    solo, responses = run_async(scenario())
    failed = [response for response in responses if response.status_code == 500]
    assert 1 <= len(failed) <= concurrent, [response.status_code for response in responses]
    for response in failed:
        assert response.json()["error"]["code"] == "model_error"
        assert "RuntimeError" in response.json()["error"]["message"]
    for index, response in enumerate(responses):
        if response.status_code != 500:
            assert response.status_code == 200, response.text
            assert workload.same_answer(workload.answer_of(response), solo[index]), index


def test_a_stalled_model_call_is_bounded_by_the_timeout(model_path: Path) -> None:
    stall = threading.Event()  # set: compute calls stall ...
    release = threading.Event()  # ... until this is set

    def maybe_stall(_name: str) -> None:
        if stall.is_set():
            release.wait(10)

    settings = make_settings(model_path, request_timeout_s=0.3)
    app = create_app(settings, model_factory=wrapped_model(maybe_stall))

    async def scenario() -> None:
        async with running_app(app) as client:
            stall.set()
            started = time.perf_counter()
            response = await workload.send(client, 0)
            assert response.status_code == 504, response.text
            assert response.json()["error"]["code"] == "request_timeout"
            assert time.perf_counter() - started < 1.2
            stall.clear()
            release.set()  # the stalled call returns; the service serves again
            assert (await workload.send(client, 1)).status_code == 200

    run_async(scenario())


def bad_model_file(folder: Path, problem: str) -> Path:
    """Where the model should be: nothing there, or bytes that are no model."""
    model_file = folder / MODEL_FILE
    if problem == "corrupt":
        model_file.write_bytes(b"\x00not a model\xff" * 10)
    return model_file


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_a_bad_model_file_fails_startup_before_ready(tmp_path: Path, problem: str) -> None:
    model_file = bad_model_file(tmp_path, problem)
    app = create_app(make_settings(model_file))
    logger = logging.getLogger("{{ cookiecutter.package_name }}")
    records = Records()
    logger.addHandler(records)
    try:
        with pytest.raises(StartupFailed), TestClient(app):
            pass
    finally:
        logger.removeHandler(records)
    errors = [r for r in records.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in records.records]
    message = errors[0].getMessage()
    assert message.startswith("startup failed: ") and "\n" not in message
    assert str(model_file) in message or problem == "corrupt"
    assert errors[0].exc_info is None  # one line, no traceback
    assert not any(r.getMessage().startswith("ready: serving") for r in records.records)


# --- real server processes ---------------------------------------------------------

# The real entry point, with the model's compute methods slowed by argv[1] seconds once the
# service is ready: warmup's calls run at full speed (slowed, they would only add start-up).
SERVER = textwrap.dedent(
    """
    import sys, time
    from {{ cookiecutter.package_name }} import model, __main__
    from {{ cookiecutter.package_name }}.serving.lifecycle import Readiness
    delay = float(sys.argv[1])
    warmed = []
    def set_ready(self, value):
        self.__dict__["_ready"] = value
        warmed.append(value)
    Readiness.ready = property(lambda self: self.__dict__.get("_ready", False), set_ready)
    def slowed(original):
        def method(self, *args, **kwargs):
            if any(warmed):
                time.sleep(delay)
            return original(self, *args, **kwargs)
        return method
    for name in sys.argv[2:]:
        setattr(model.Model, name, slowed(getattr(model.Model, name)))
    __main__.main()
    """
)


def start_server(model_path: Path, port: int, delay_s: float, **env: Any) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT / "src"), os.environ.get("PYTHONPATH", "")]),
        f"{ENV_PREFIX}MODEL_PATH": str(model_path),
        f"{ENV_PREFIX}HOST": "127.0.0.1",
        f"{ENV_PREFIX}PORT": str(port),
        f"{ENV_PREFIX}CPU_FALLBACK": "true",
        f"{ENV_PREFIX}LOG_JSON": "false",
        f"{ENV_PREFIX}INTRA_OP_THREADS": "1",
        # one process: the model is slowed in this one (spawned workers would import it afresh)
        f"{ENV_PREFIX}WORKERS": "1",
        **{f"{ENV_PREFIX}{key.upper()}": str(value) for key, value in env.items()},
    }
    return subprocess.Popen(
        [sys.executable, "-c", SERVER, str(delay_s), *workload.COMPUTE_METHODS],
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
    capacity = workload.capacity(2, 16)
    process = start_server(
        model_path, port, workload.SLOW_CALL_S, shutdown_timeout_s=20, **capacity
    )
    try:
        wait_ready(base, process)

        async def timed(client: httpx.AsyncClient, index: int) -> tuple[httpx.Response, float]:
            response = await workload.send(client, index)
            return response, time.monotonic()

        async def scenario() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                solo = await expected_answers(client)
                in_flight = [asyncio.create_task(timed(client, i)) for i in range(8)]
                await asyncio.sleep(0.3)  # two requests computing, the rest queued
                process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                await asyncio.sleep(0.1)
                ready = await client.get("/health/ready")
                refused = await workload.send(client, 0)
                finished = await asyncio.gather(*in_flight)
                return {
                    "solo": solo,
                    "ready": ready,
                    "refused": refused,
                    "finished": finished,
                    "signalled": signalled,
                }

        outcome = run_async(scenario())
        exit_code = process.wait(timeout=20)
        drain_s = time.monotonic() - outcome["signalled"]
    finally:
        if process.poll() is None:
            process.kill()
    output = process.communicate()[0]
    assert outcome["ready"].status_code == 503 and outcome["ready"].json() == {"status": "draining"}
    assert outcome["refused"].status_code == 503
    after_signal = 0
    for index, (response, finished_at) in enumerate(outcome["finished"]):
        assert response.status_code == 200, (index, response.text)
        expected = outcome["solo"][index]
        assert workload.same_answer(workload.answer_of(response), expected), index
        after_signal += finished_at > outcome["signalled"]
    print(
        f"drain: 8 in flight at SIGTERM, {after_signal} finished after it, all 200; "
        f"exit {exit_code} {drain_s:.2f} s after the signal"
    )
    assert after_signal >= 4, "most of the work should still have been queued at SIGTERM"
    assert exit_code == 0, output
    assert drain_s < 20
    assert "drained cleanly" in output


@pytest.mark.heavy
@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_a_bad_model_file_makes_the_process_exit_non_zero(tmp_path: Path, problem: str) -> None:
    """The real entry point: one clear line, no traceback, a non-zero exit, never ready."""
    model_file = bad_model_file(tmp_path, problem)
    process = start_server(model_file, free_port(), 0.0)
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    errors = [line for line in output.splitlines() if " ERROR " in line]
    # ours, then uvicorn's own "Application startup failed. Exiting."
    logged = errors[0].split(" ERROR ", 1)[1]
    assert logged.startswith("{{ cookiecutter.package_name }}.main: startup failed: "), output
    assert str(model_file) in errors[0] or problem == "corrupt"
    assert "Traceback" not in output and "ready: serving" not in output
