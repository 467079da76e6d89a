"""``python -m {{ cookiecutter.package_name }}``: serve with uvicorn, draining gracefully on SIGTERM.

{% if cookiecutter.workload == 'llm' -%}
One process (``WORKERS=1``, and the default, 0: one scheduler batches every
sequence): the port is bound first (a busy port
{% else -%}
One process (``WORKERS=1``, or the default, 0, on a GPU): the port is bound
first (a busy port
{% endif -%}
fails in a second, before the model loads). On SIGTERM (or Ctrl-C) readiness
turns 503 at once so load balancers stop sending traffic, new inference
requests and uploads still arriving are refused with 503, queued and running
requests finish, and the process exits 0: all of it within SHUTDOWN_TIMEOUT_S
(plus at most a second for the server to close its connections). A second
signal stops at once, with exit status 128 + its number (130 for SIGINT, 143
for SIGTERM).

Several processes (``WORKERS=N``{{ '' if cookiecutter.workload == 'llm' else ', or 0 on a CPU device: one per usable CPU' }}):
uvicorn's supervisor binds the port and starts N workers; each listens on a
socket of its own (SO_REUSEPORT, on Linux: the kernel spreads connections over
them), builds the app and loads its own copy of the model, and one that dies is
replaced. On SIGTERM
the supervisor passes the signal to every worker, which stops accepting
connections, lets its in-flight requests (queued ones included) finish within
SHUTDOWN_TIMEOUT_S, drains its batcher and exits; then the supervisor exits 0.
Readiness does not turn 503 first (the listening socket just stops being
served), so where a load balancer must notice first, delay the SIGTERM (a
Kubernetes preStop sleep).
{%- if cookiecutter.monitoring == 'prometheus' %}
``/metrics`` merges the metrics of all workers, whichever one answers.
{%- endif %}

Exit status: 0 after a clean shutdown, 2 for invalid settings (one line names
them), 3 when start-up fails (the port is busy, the model is missing or
corrupt: one line says why), 128 + N after a second signal N.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from .logging_config import configure_logging
from .main import create_app
{%- if cookiecutter.monitoring == 'prometheus' %}
from .metrics import shared_metrics_dir
{%- endif %}
from .serving.http_protocol import HeaderLimits
from .serving.sockets import WorkerSocket, port_socket
from .settings import ENV_PREFIX, Settings, describe_invalid, get_settings

logger = logging.getLogger(__name__)

INVALID_SETTINGS = 2
# what the server needs after the service's drain to answer and close its connections
SERVER_CLOSE_S = 0.5
HTTP_PROTOCOL = f"{__package__}.serving.http_protocol:GuardedHttpToolsProtocol"


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first exit signal drains the model before closing."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, shutdown_timeout_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.shutdown_timeout_s = shutdown_timeout_s
        self._draining = False
        self._deadline = 0.0
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        name = signal.Signals(sig).name
        if self._draining:  # the second signal: stop now, whatever is left
            logger.warning("received %s again: exiting at once", name)
            logging.shutdown()
            os._exit(128 + sig)
        service = getattr(self.app.state, "service", None)
        if service is None:
            super().handle_exit(sig, frame)  # nothing to drain (still loading): stop now
            return
        logger.info("received %s: draining (readiness now 503)", name)
        service.readiness.draining = True
        self._draining = True
        self._deadline = time.monotonic() + self.shutdown_timeout_s
        loop = asyncio.get_running_loop()
        # a signal handler interrupts the loop mid-step: schedule, do not run, the drain
        loop.call_soon_threadsafe(self._start_drain, service)

    def _start_drain(self, service: Any) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit(service))

    async def _drain_then_exit(self, service: Any) -> None:
        uploads = getattr(self.app.state, "uploads", None)
        if uploads is not None:
            uploads.close()  # uploads still arriving answer 503 now, not at the deadline
        await service.drain(max(0.0, self.shutdown_timeout_s - SERVER_CLOSE_S))
        # the server gets what is left of the budget to close its connections
        left = self._deadline - time.monotonic()
        self.config.timeout_graceful_shutdown = max(SERVER_CLOSE_S, left)  # type: ignore[assignment]
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
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "http": HTTP_PROTOCOL,  # header deadline and limits, see serving/http_protocol.py
        "lifespan": "on",
    }


def guarded_config(settings: Settings, app: Any, **options: Any) -> uvicorn.Config:
    """A uvicorn config carrying the header limits the HTTP protocol reads."""
    config = uvicorn.Config(app, **server_options(settings), **options)
    config.guard = HeaderLimits.from_settings(settings)  # type: ignore[attr-defined]
    return config


def serve(settings: Settings) -> None:
    """One process: this one."""
    app = create_app(settings)
    config = guarded_config(settings, app)
    listener = config.bind_socket()  # a busy port fails here (exit 3), before the model loads
    server = DrainingServer(config, app, settings.shutdown_timeout_s)
    server.run(sockets=[listener])
    if not server.started:  # start-up failed (model missing or corrupt): the log says why
        raise SystemExit(STARTUP_FAILURE)
    # Drained and closed: skip the interpreter's teardown, which SHUTDOWN_TIMEOUT_S does not
    # bound (measured: 3.4 s with torch loaded, after a 0.2 s drain). Flush what is buffered.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def serve_workers(settings: Settings) -> None:
    """Several processes, supervised; each worker calls ``create_app()`` itself.

    On Linux each worker listens on a socket of its own (``WorkerSocket``); this process
    binds the port first, without listening (it gets no connections), so a busy port fails
    here before any worker loads the model. Elsewhere SO_REUSEPORT does not spread
    connections, and the workers share one socket.
    """
    configure_logging(settings)  # the supervisor's own lines: the address, restarted workers
    config = guarded_config(
        settings, f"{__package__}.main:create_app", factory=True, workers=settings.worker_processes
    )
    if sys.platform == "linux":
        try:
            claim = port_socket(config.host, config.port)
        except OSError as exc:
            logger.error("cannot bind %s:%s: %s", config.host, config.port, exc)
            raise SystemExit(STARTUP_FAILURE) from None
        # the port the claim got (PORT=0 asks the system for one): every worker binds it
        port = claim.getsockname()[1]
        sockets: list[Any] = [WorkerSocket(config.host, port)]
        # what config.bind_socket() logs on the shared-socket path, where uvicorn binds
        logger.info(
            "listening on %s://%s:%d, %d worker processes (Press CTRL+C to quit)",
            "https" if config.is_ssl else "http",
            config.host,
            port,
            settings.worker_processes,
        )
    else:
        claim = config.bind_socket()
        sockets = [claim]
    with claim:
        supervisor = Multiprocess(config, sockets=sockets)
        supervisor.run()
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)  # a worker could not start: the log says why


def load_settings() -> Settings:
    """The settings, or one line naming what is wrong (never a value: it may be a key)."""
    try:
        return get_settings()
    except ValidationError as exc:
        line = describe_invalid(exc)
        if os.environ.get(f"{ENV_PREFIX}LOG_JSON", "true").strip().lower() in {"0", "false"}:
            print(line, file=sys.stderr)
        else:
            print(json.dumps({"level": "ERROR", "logger": __name__, "message": line}))
        raise SystemExit(INVALID_SETTINGS) from None


def main() -> None:
    settings = load_settings()
    if settings.worker_processes == 1:
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
