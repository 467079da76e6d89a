"""``python -m {{ cookiecutter.package_name }}``: serve with uvicorn, draining gracefully on SIGTERM.

On SIGTERM (or Ctrl-C) readiness turns 503 at once so load balancers stop
sending traffic, new inference requests are refused with 503, queued and
running requests finish (at most SHUTDOWN_TIMEOUT_S), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from .main import create_app
from .settings import get_settings

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
        loop.call_soon_threadsafe(self._start_drain, service, sig, frame)

    def _start_drain(self, service: Any, sig: int, frame: FrameType | None) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(
            self._drain_then_exit(service, sig, frame)
        )

    async def _drain_then_exit(self, service: Any, sig: int, frame: FrameType | None) -> None:
        await service.drain(self.shutdown_timeout_s)
        super().handle_exit(sig, frame)


def main() -> None:
    settings = get_settings()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # the service configures logging itself
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_timeout_s)),
        lifespan="on",
    )
    server = DrainingServer(config, app, settings.shutdown_timeout_s)
    server.run()
    if not server.started:  # start-up failed (model missing or corrupt): the log says why
        raise SystemExit(3)


if __name__ == "__main__":
    main()
