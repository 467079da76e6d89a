"""Fixtures: the model under test, settings, and clients of the app.

The suite has two kinds of tests. Contract tests hold for ANY model that
satisfies ``model.py``'s contract (results routed to their own requests,
batching, backpressure, errors, protocols, auth, metrics, drain, hostile
input). Reference tests, marked ``reference``, pin the demo model's known
answers. ``make test MODEL_PATH=/path/to/yours`` (``pytest --model-path``)
runs the contract tests against your model and skips the reference tests,
saying why; without it the demo model is built and both kinds run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import model as model_module
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
MODEL_FILE = Settings.model_fields["model_path"].default.name


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--model-path",
        default=os.environ.get("TEST_MODEL_PATH") or None,
        help="run the contract tests against this model (file or folder) instead of the demo "
        "model; reference tests are skipped (env: TEST_MODEL_PATH)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reference: pinned to the demo model's known answers (skipped with --model-path)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    given = config.getoption("--model-path")
    if not given:
        return
    skip = pytest.mark.skip(
        reason=f"reference test: pinned to the demo model's answers, not run against {given}"
    )
    for item in items:
        if "reference" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    given = config.getoption("--model-path")
    if given:
        return f"model under test: {given} (contract tests only; reference tests skipped)"
    return "model under test: the demo model (scripts/make_demo_model.py)"


@pytest.fixture(scope="session")
def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model under test: ``--model-path``, or the demo model built as `make model` does."""
    given = request.config.getoption("--model-path")
    if given:
        path = Path(given).expanduser().resolve()
        if not path.exists():
            raise pytest.UsageError(f"--model-path {given}: no such file or folder")
        return path
    out = tmp_path_factory.mktemp("model") / MODEL_FILE
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    built = subprocess.run(
        [sys.executable, str(PROJECT / "scripts" / "make_demo_model.py"), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    if built.returncode:  # its own error, not a truncated CalledProcessError
        pytest.fail(
            f"scripts/make_demo_model.py failed ({built.returncode}):\n{built.stderr[-4000:]}",
            pytrace=False,
        )
    return out


# llm: the context most tests serve (CONTEXT_LENGTH caps it below the model's maximum).
# Warmup runs every running slot at the longest context, so a service at the demo's 1024
# tokens takes about ten times as long to start as at 256; the tests that need a long
# prompt (tools listed in it) ask for context_length=0, the model's own maximum.
TEST_CONTEXT_LENGTH = 256


def make_settings(model_path: Path, **overrides: Any) -> Settings:
    # gpu builds default to DEVICE=cuda without fallback; tests run on whatever is here.
    # One compute thread per model call: test runs share few cores (pytest -n), and
    # runtimes whose threads spin-wait slow down badly when oversubscribed.
    values: dict[str, Any] = {
        "model_path": model_path,
        "cpu_fallback": True,
        "log_json": False,
        "intra_op_threads": 1,
    }
    if "context_length" in Settings.model_fields:  # llm: see TEST_CONTEXT_LENGTH
        declared = getattr(model_module, "CONTEXT_LENGTH", TEST_CONTEXT_LENGTH)
        values["context_length"] = min(TEST_CONTEXT_LENGTH, declared)
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(model_path: Path) -> Settings:
    return make_settings(model_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield an async client bound to it (for concurrency tests)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve the app with uvicorn on a free local port in a thread; yield host:port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class Hostile:
    """A hostile request, the status it must get and the field its error must name."""

    path: str
    request: dict[str, Any]  # httpx request arguments (json=, content=, files=, headers=)
    status: int
    names: str


def run_async(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
