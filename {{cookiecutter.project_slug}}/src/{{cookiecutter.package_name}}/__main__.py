"""``python -m {{ cookiecutter.package_name }}``: serve with uvicorn, draining gracefully on SIGTERM.

One process (``WORKERS=1``, the default): on SIGTERM (or Ctrl-C) readiness
turns 503 at once so load balancers stop sending traffic, new inference
requests are refused with 503, queued and running requests finish (at most
SHUTDOWN_TIMEOUT_S), and the process exits 0. A second signal stops at once.

Several processes (``WORKERS=N``): uvicorn's supervisor binds the socket and
starts N workers; each builds the app and loads its own copy of the model, and
one that dies is replaced. On SIGTERM the supervisor passes the signal to every
worker, which stops accepting connections, lets its in-flight requests (queued
ones included) finish within SHUTDOWN_TIMEOUT_S, drains its batcher and exits;
then the supervisor exits 0. Readiness does not turn 503 first (the listening
socket just stops being served), so where a load balancer must notice first,
delay the SIGTERM (a Kubernetes preStop sleep).
{%- if cookiecutter.monitoring == 'prometheus' %}
``/metrics`` merges the metrics of all workers, whichever one answers.
{%- endif %}
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from .main import create_app
{%- if cookiecutter.monitoring == 'prometheus' %}
from .metrics import shared_metrics_dir
{%- endif %}
from .settings import Settings, get_settings

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first exit signal drains the model before closing."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, shutdown_timeout_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.shutdown_timeout_s = shutdown_timeout_s
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        service = getattr(self.app.state, "service", None)
        if self._draining or service is None:
            super().handle_exit(sig, frame)  # second signal, or nothing to drain: stop now
            return
        logger.info("received %s: draining (readiness now 503)", signal.Signals(sig).name)
        service.readiness.draining = True
        self._draining = True
        loop = asyncio.get_running_loop()
        # a signal handler interrupts the loop mid-step: schedule, do not run, the drain
        loop.call_soon_threadsafe(self._start_drain, service)

    def _start_drain(self, service: Any) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit(service))

    async def _drain_then_exit(self, service: Any) -> None:
        await service.drain(self.shutdown_timeout_s)
        # a completed drain is a clean shutdown: exit 0 (uvicorn's own handler would
        # re-raise the signal at exit, and the process would end with status 143)
        self.should_exit = True


def server_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,  # the service configures logging itself
        "access_log": False,
        "timeout_graceful_shutdown": max(1, int(settings.shutdown_timeout_s)),
        "lifespan": "on",
    }


def serve(settings: Settings) -> None:
    """One process: this one."""
    app = create_app(settings)
    config = uvicorn.Config(app, **server_options(settings))
    server = DrainingServer(config, app, settings.shutdown_timeout_s)
    server.run()
    if not server.started:  # start-up failed (model missing or corrupt): the log says why
        raise SystemExit(STARTUP_FAILURE)


def serve_workers(settings: Settings) -> None:
    """Several processes, supervised; each worker calls ``create_app()`` itself."""
    config = uvicorn.Config(
        f"{__package__}.main:create_app",
        factory=True,
        workers=settings.workers,
        **server_options(settings),
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)  # a worker could not start: the log says why


def main() -> None:
    settings = get_settings()
    if settings.workers == 1:
        serve(settings)
        return
{%- if cookiecutter.monitoring == 'prometheus' %}
    with shared_metrics_dir():  # entered first: the workers inherit its location
        serve_workers(settings)
{%- else %}
    serve_workers(settings)
{%- endif %}


if __name__ == "__main__":
    main()
