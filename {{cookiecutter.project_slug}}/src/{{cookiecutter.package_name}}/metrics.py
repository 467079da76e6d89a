"""Prometheus metrics: definitions, the observers that feed them, and ``GET /metrics``.

Every name carries the ``inference_`` prefix, so one Grafana dashboard
(``deploy/grafana``) serves every service generated from the same template.
Labels are bounded: ``route`` is the route template (never the raw path),
``status`` the HTTP status, ``model`` the served model name.

Each app owns its registry, so several apps in one process (tests) never
collide. With several server worker processes (``WORKERS`` > 1) every worker
writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics``
merges the files of all workers, whichever worker answers the scrape:
counters and histograms add up, and each gauge says how it combines
(``multiprocess_mode``): queue depth and in-flight requests are summed over
the live workers, readiness is the minimum (1 only when every worker is ready).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from . import TEMPLATE_VERSION, __version__
{% if cookiecutter.device == 'gpu' -%}
from .gpu_metrics import GpuCollector
{% endif -%}
from .serving.warmup import warmup_batch_sizes

PREFIX = "inference"
# The workload this service was generated for: picks the histogram buckets.
WORKLOAD = "{{ cookiecutter.workload }}"
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# No `<name>_created` series: in the text format each would be one more series per
# label set, and with several workers prometheus-client cannot produce them anyway.
disable_created_metrics()


def decades(low: float, high: float) -> tuple[float, ...]:
    """Bucket bounds in 1-2.5-5 steps per decade, from ``low`` to ``high`` inclusive."""
    bounds = []
    exponent = math.floor(math.log10(low)) - 1
    while True:
        for step in (1.0, 2.5, 5.0):
            bound = round(step * 10.0**exponent, 12)
            if bound > high:
                return tuple(bounds)
            if bound >= low:
                bounds.append(bound)
        exponent += 1


@dataclass(frozen=True)
class Buckets:
    """Histogram bounds in seconds, chosen so that typical values land mid-range."""

    request: tuple[float, ...]
    compute: tuple[float, ...]
    queue_wait: tuple[float, ...]


# Per workload: a small CNN answers in milliseconds, an embedding model in a few
# more, speech synthesis in tenths of seconds to seconds, and an LLM request
# lasts as long as its generation (seconds to minutes) while one decode step
# (its "batch") takes milliseconds.
BUCKETS: dict[str, Buckets] = {
    "vision": Buckets(
        request=decades(0.001, 60), compute=decades(0.0005, 10), queue_wait=decades(0.0001, 30)
    ),
    "embeddings": Buckets(
        request=decades(0.001, 60), compute=decades(0.0005, 10), queue_wait=decades(0.0001, 30)
    ),
    "tts": Buckets(
        request=decades(0.01, 120), compute=decades(0.005, 60), queue_wait=decades(0.001, 30)
    ),
    "llm": Buckets(
        request=decades(0.05, 600), compute=decades(0.0005, 5), queue_wait=decades(0.001, 60)
    ),
}


def batch_size_buckets(max_batch_size: int) -> tuple[float, ...]:
    """1, 2, 4, ... and the maximum itself: the batch sizes warmup compiles for."""
    return tuple(float(size) for size in warmup_batch_sizes(max_batch_size))


class ServiceMetrics:
    """Owns the metric objects; implements the request and batch observer protocols."""

    def __init__(
        self,
        model_name: str,
        *,
        max_batch_size: int = 1,
        workload: str = WORKLOAD,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.model_name = model_name
        self.workload = workload
        # read at scrape time beside the metrics below (and merged across workers)
        self.collectors: list[Collector] = []
        buckets = BUCKETS[workload]
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests answered.", ["route", "status"], registry=r
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from request start to the last response byte.",
            ["route"],
            buckets=buckets.request,
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight_requests",
            "HTTP requests being handled (the scrape that reads it included).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "Time an item waited in the queue before its batch was dispatched.",
            ["model"],
            buckets=buckets.queue_wait,
            registry=r,
        )
        self.compute = Histogram(
            f"{PREFIX}_compute_seconds",
            "Model time per batch.",
            ["model"],
            buckets=buckets.compute,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "Items per model call.",
            ["model"],
            buckets=batch_size_buckets(max_batch_size),
            registry=r,
        )
        self.queue_depth_gauge = Gauge(
            f"{PREFIX}_queue_depth",
            "Items waiting for a batch.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ready = Gauge(
            f"{PREFIX}_ready",
            "1 when the model is loaded, warm and not draining (every worker, with several).",
            ["model"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.model_load = Gauge(
            f"{PREFIX}_model_load_seconds",
            "Time the model took to load (the slowest worker, with several).",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.warmup = Gauge(
            f"{PREFIX}_warmup_seconds",
            "Time warmup took (the slowest worker, with several).",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        # always 1: its labels say what runs, so a fleet's versions show in one query
        # (count by (template_version) (inference_build_info))
        self.build_info = Gauge(
            f"{PREFIX}_build_info",
            "Always 1; labels: the service's version and the template release it was made from.",
            ["version", "template_version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(version=__version__, template_version=TEMPLATE_VERSION).set(1)
        model_metrics: list[Counter | Gauge | Histogram] = [
            self.queue_wait,
            self.compute,
            self.batch_size,
            self.queue_depth_gauge,
            self.ready,
        ]
        for labelled in model_metrics:  # export zeros from the start, not after the first event
            labelled.labels(model=model_name)
{%- if cookiecutter.device == 'gpu' %}
        # GPU memory and utilisation, read through NVML at scrape time
        self.collectors.append(GpuCollector())
{%- endif %}
        for collector in self.collectors:
            r.register(collector)

    # --- RequestObserver (middleware) ---------------------------------------------
    def request_started(self) -> None:
        self.in_flight.inc()

    def request_finished(self, route: str, method: str, status: int, duration_s: float) -> None:
        self.in_flight.dec()
        if route == "/metrics":
            return
        self.requests.labels(route=route, status=str(status)).inc()
        self.request_duration.labels(route=route).observe(duration_s)

{%- if cookiecutter.workload == 'llm' %}

    # --- the scheduler's steps (llm/metrics.py adds its token and sequence events) ------
{%- else %}

    # --- BatchObserver (batcher) --------------------------------------------------
    def queue_depth(self, depth: int) -> None:
        self.queue_depth_gauge.labels(model=self.model_name).set(depth)

    def batch_dispatched(self, size: int, queue_waits_s: list[float]) -> None:
        histogram = self.queue_wait.labels(model=self.model_name)
        for wait in queue_waits_s:
            histogram.observe(wait)
{%- endif %}

    def batch_computed(self, size: int, compute_s: float) -> None:
        self.compute.labels(model=self.model_name).observe(compute_s)
        self.batch_size.labels(model=self.model_name).observe(size)

    # --- lifecycle ------------------------------------------------------------------
    def set_ready(self, ready: bool) -> None:
        self.ready.labels(model=self.model_name).set(1 if ready else 0)

    def startup_timings(self, load_s: float, warmup_s: float) -> None:
        self.model_load.labels(model=self.model_name).set(load_s)
        self.warmup.labels(model=self.model_name).set(warmup_s)

    def close(self) -> None:
        """At shutdown: with several workers, drop this worker's live gauges from the sums."""
        directory = multiprocess_dir()
        if directory is not None:
            mark_process_dead(os.getpid(), str(directory))

    # --- exposition -----------------------------------------------------------------
    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type (text format, or OpenMetrics if asked for)."""
        encoder, content_type = choose_encoder(accept or "")
        directory = multiprocess_dir()
        if directory is None:
            return encoder(self.registry), content_type
        return encoder(multiprocess_registry(directory, self.collectors)), content_type


# --- several worker processes ------------------------------------------------------
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def multiprocess_dir() -> Path | None:
    """The directory the workers share, when the server runs several (else None)."""
    value = os.environ.get(MULTIPROC_DIR_ENV)
    return Path(value) if value else None


def multiprocess_registry(
    directory: Path, collectors: Iterable[Collector] = ()
) -> CollectorRegistry:
    """A registry that merges the metric files of every worker, as of now."""
    forget_dead_workers(directory)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    for collector in collectors:
        registry.register(collector)
    return registry


def forget_dead_workers(directory: Path) -> None:
    """Drop the live gauges of workers that died without shutting down (killed, crashed).

    The supervisor replaces such a worker; its queue depth or in-flight count
    must not stay in the sums. Counters and histograms keep its contribution.
    """
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.match(path.name)
        if match and not _process_alive(int(match.group(1))):
            mark_process_dead(int(match.group(1)), str(directory))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextmanager
def shared_metrics_dir() -> Iterator[Path]:
    """For the server's supervisor: a clean directory for the workers' metric files.

    Uses ``PROMETHEUS_MULTIPROC_DIR`` when set (its old ``*.db`` files are
    removed: they belong to an earlier run), otherwise a fresh temporary
    directory that is deleted afterwards. Must be entered before the workers
    start: they inherit the variable and prometheus-client reads it at import.
    """
    configured = multiprocess_dir()
    if configured is not None:
        configured.mkdir(parents=True, exist_ok=True)
        for stale in configured.glob("*.db"):
            stale.unlink()
        yield configured
        return
    directory = Path(tempfile.mkdtemp(prefix="prometheus-multiproc-"))
    os.environ[MULTIPROC_DIR_ENV] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_DIR_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


router = APIRouter(tags=["monitoring"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    service_metrics: ServiceMetrics = request.app.state.metrics
    service = getattr(request.app.state, "service", None)
    # readiness also turns off on SIGTERM, before the app's shutdown runs
    service_metrics.set_ready(service is not None and service.readiness.serving)
    body, content_type = service_metrics.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)
