"""Prometheus metrics: definitions, the observers that feed them, and ``GET /metrics``.

All names share the ``inference_`` prefix so one dashboard serves every
service generated from the template. Each app gets its own registry, so
several apps in one process (tests) never collide.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

PREFIX = "inference"
# Latency buckets from 1 ms (a small model on a warm GPU) to 60 s (timeouts).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
QUEUE_BUCKETS = (
    0.0001,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    5.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    """Owns the metric objects; implements the request and batch observer protocols."""

    def __init__(self, model_name: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.model_name = model_name
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP requests answered.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from request start to the last response byte.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "Time an item waited in the queue before its batch was dispatched.",
            ["model"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            f"{PREFIX}_compute_seconds",
            "Model time per batch.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "Items per model call.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth_gauge = Gauge(
            f"{PREFIX}_queue_depth", "Requests waiting for a batch.", ["model"], registry=r
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight_requests", "HTTP requests being handled.", registry=r
        )
        self.ready = Gauge(
            f"{PREFIX}_ready",
            "1 when the model is loaded, warm and not draining.",
            ["model"],
            registry=r,
        )
        self.model_load = Gauge(
            f"{PREFIX}_model_load_seconds", "Time the model took to load.", ["model"], registry=r
        )
        self.warmup = Gauge(f"{PREFIX}_warmup_seconds", "Time warmup took.", ["model"], registry=r)
        for labelled in (
            self.queue_wait,
            self.compute,
            self.batch_size,
            self.queue_depth_gauge,
            self.ready,
        ):
            labelled.labels(model=model_name)

    # RequestObserver
    def request_started(self) -> None:
        self.in_flight.inc()

    def request_finished(self, route: str, method: str, status: int, duration_s: float) -> None:
        self.in_flight.dec()
        if route == "/metrics":
            return
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.request_duration.labels(route=route).observe(duration_s)

    # BatchObserver
    def queue_depth(self, depth: int) -> None:
        self.queue_depth_gauge.labels(model=self.model_name).set(depth)

    def batch_dispatched(self, size: int, queue_waits_s: Sequence[float]) -> None:
        histogram = self.queue_wait.labels(model=self.model_name)
        for wait in queue_waits_s:
            histogram.observe(wait)

    def batch_computed(self, size: int, compute_s: float) -> None:
        self.compute.labels(model=self.model_name).observe(compute_s)
        self.batch_size.labels(model=self.model_name).observe(size)

    def set_ready(self, ready: bool) -> None:
        self.ready.labels(model=self.model_name).set(1 if ready else 0)

    def startup_timings(self, load_s: float, warmup_s: float) -> None:
        self.model_load.labels(model=self.model_name).set(load_s)
        self.warmup.labels(model=self.model_name).set(warmup_s)


router = APIRouter(tags=["monitoring"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
