"""Probes: liveness first, readiness only after load and warmup, 503 again while draining."""

from __future__ import annotations

import asyncio
import threading

from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import run_async, running_app


def test_live_and_ready_after_startup(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_not_ready_before_lifespan_runs(settings: Settings) -> None:
    client = TestClient(create_app(settings))  # no context manager: no startup
    assert client.get("/health/live").status_code == 200
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "loading"}


def test_ready_only_after_warmup_finishes(settings: Settings) -> None:
    """Warmup is held open; readiness must stay 503 until it completes."""
    release = threading.Event()
    warming = threading.Event()

    class SlowWarmupModel(Model):
{%- if cookiecutter.workload == 'llm' %}
        def prefill(self, prompts):  # type: ignore[no-untyped-def]
            warming.set()
            release.wait(timeout=30)
            return super().prefill(prompts)
{%- else %}
        def predict(self, batch):  # type: ignore[no-untyped-def]
            warming.set()
            release.wait(timeout=30)
            return super().predict(batch)
{%- endif %}

    app = create_app(settings, model_factory=SlowWarmupModel)

    async def scenario() -> None:
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            startup = asyncio.create_task(_enter_lifespan(app))
            while not warming.is_set():
                await asyncio.sleep(0.01)
            assert (await client.get("/health/live")).status_code == 200
            response = await client.get("/health/ready")
            assert response.status_code == 503
            release.set()
            stop = await startup
            response = await client.get("/health/ready")
            assert response.status_code == 200
            stop.set()
            await asyncio.sleep(0)

    run_async(scenario())


async def _enter_lifespan(app) -> asyncio.Event:  # type: ignore[no-untyped-def]
    """Start the lifespan in a task; return an event that, when set, shuts it down."""
    started = asyncio.Event()
    stop = asyncio.Event()

    async def hold() -> None:
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()

    asyncio.get_running_loop().create_task(hold())
    await started.wait()
    return stop


def test_draining_turns_readiness_off(settings: Settings) -> None:
    async def scenario() -> None:
        app = create_app(settings)
        async with running_app(app) as client:
            assert (await client.get("/health/ready")).status_code == 200
            await app.state.service.drain(timeout_s=5)
            response = await client.get("/health/ready")
            assert response.status_code == 503
            assert response.json() == {"status": "draining"}
            assert (await client.get("/health/live")).status_code == 200

    run_async(scenario())
