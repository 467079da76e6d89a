"""OpenTelemetry traces: off unless the standard ``OTEL_*`` variables ask for them.

Tracing is on when any of these holds (the OpenTelemetry SDK's own variables):

- ``OTEL_TRACES_EXPORTER`` names ``otlp`` or ``console`` (``none`` turns it off);
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set
  (the exporter then defaults to ``otlp``);
- a tracer provider was installed before the app was built (``opentelemetry-instrument``).

``OTEL_SDK_DISABLED=true`` wins over all of them. Everything else (headers, timeouts,
sampler, batch sizes, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_PROPAGATORS``) is read by the SDK as its specification says. OTLP goes over
HTTP/protobuf (port 4318), the SDK's default protocol.

FastAPI's native telemetry makes the server span (W3C ``traceparent`` in, route name,
status) and its dependency, endpoint and serialization spans. This module adds the
spans no library knows about: admission, pre-processing, the queue wait and the model
call (with the batch it joined), post-processing. Off, nothing is installed: FastAPI's
telemetry is disabled, no SDK is imported, and every helper here returns after one
``None`` check, so a request pays nothing for tracing it does not use.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import context as otel_context
from opentelemetry import trace
{%- if cookiecutter.workload == 'llm' %}
from opentelemetry.trace import Span, StatusCode, Tracer, TracerProvider
{%- else %}
from opentelemetry.trace import StatusCode, Tracer, TracerProvider
{%- endif %}

from .. import __version__

SERVICE_NAME = "{{ cookiecutter.project_slug }}"
EXPORTERS = ("otlp", "console")
_tracer: Tracer | None = None
_batch_ids = itertools.count(1)
_NO_SPAN = nullcontext()


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def provider_from_environment() -> TracerProvider | None:
    """The tracer provider the ``OTEL_*`` variables ask for, or None when tracing is off.

    Raises ``ValueError`` (start-up fails with one line) for an exporter or protocol
    this service does not ship.
    """
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return None
    installed = trace.get_tracer_provider()
    if not isinstance(installed, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return installed  # opentelemetry-instrument or the team's own code set one up
    names = [n.strip().lower() for n in _env("OTEL_TRACES_EXPORTER").split(",") if n.strip()]
    endpoint = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not names:
        names = ["otlp"] if endpoint else []
    names = [name for name in names if name != "none"]
    if not names:
        return None
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER={','.join(unknown)} is not available here; "
            f"use {' or '.join(EXPORTERS)} (or none)"
        )
    protocol = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL")
    if "otlp" in names and protocol not in ("", "http/protobuf"):
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not available here; this service "
            "exports OTLP over http/protobuf (the collector's port 4318)"
        )
    # the SDK is imported only when tracing is on
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes = {"service.version": __version__}
    if not _env("OTEL_SERVICE_NAME") and "service.name=" not in _env("OTEL_RESOURCE_ATTRIBUTES"):
        attributes["service.name"] = SERVICE_NAME
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return provider


def configure(provider: TracerProvider | None) -> TelemetryConfig:
    """Trace with ``provider`` (None: tracing off); returns FastAPI's ``telemetry`` config.

    The service's own spans use this provider from now on (one app per process).
    FastAPI's OpenTelemetry metrics and logs stay off: Prometheus and the service's
    own log lines cover them.
    """
    global _tracer
    _tracer = None if provider is None else provider.get_tracer(__name__, __version__)
    if provider is None:
        return {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}
    return {
        "tracer_provider": provider,
        "metrics": False,
        "logs": False,
        "auto_configure": False,
    }


def span(name: str, **attributes: Any) -> Any:
    """A context manager: a child span of the current one (nothing when tracing is off)."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes=attributes)


def event(name: str, **attributes: Any) -> None:
    """An event on the current span (admission: when, and how full the queue was)."""
    if _tracer is not None:
        trace.get_current_span().add_event(name, attributes)


@dataclass(slots=True, frozen=True)
class Captured:
    """A request's trace context, taken where it entered a queue another task or thread serves."""

    context: otel_context.Context
    at_ns: int


{%- if cookiecutter.workload != 'llm' %}


def capture() -> Captured | None:
    """The current context and time (None when tracing is off): the parent of later spans."""
    if _tracer is None:
        return None
    return Captured(otel_context.get_current(), time.time_ns())
{%- endif %}


def record_batch(
    traces: Sequence[Captured | None],
    name: str,
    started_ns: int,
    *,
    rows: int,
    failed: Sequence[bool] = (),
) -> None:
    """Spans for one model call: each traced request gets ``queue`` (from when it was
    captured to ``started_ns``) and ``name`` (the call, until now), both pointing at the
    same ``batch.id``, so requests that shared a call can be found from each other."""
    if _tracer is None:
        return
    ended = time.time_ns()
    attributes = {"batch.id": next(_batch_ids), "batch.size": rows, "batch.requests": len(traces)}
    for index, captured in enumerate(traces):
        if captured is None:
            continue
        _tracer.start_span("queue", captured.context, start_time=captured.at_ns).end(started_ns)
        call = _tracer.start_span(
            name, captured.context, attributes=attributes, start_time=started_ns
        )
        if index < len(failed) and failed[index]:
            call.set_status(StatusCode.ERROR)
        call.end(ended)


def now_ns() -> int:
    """Wall-clock nanoseconds, as span timestamps are (0 when tracing is off: not needed)."""
    return time.time_ns() if _tracer is not None else 0
{%- if cookiecutter.workload == 'llm' %}


class GenerationTrace:
    """One sequence's spans, written by the engine thread under the request's context.

    ``generate`` spans the sequence from submission to its last token; under it
    ``queue`` (waiting for a slot), ``prefill`` (the batched prompt call, with its
    ``batch.id``) and ``decode`` (from the first token to the last: the stream), and
    a ``first_token`` event. The context is captured on the event loop at submission
    and passed to the engine thread explicitly: nothing is attached there.
    """

    __slots__ = ("_decode_started", "_generate", "queued")

    def __init__(self, generate: Span, queued: Captured) -> None:
        self._generate = generate
        self.queued = queued  # the parent of its queue and prefill spans
        self._decode_started = 0

    @classmethod
    def start(cls, prompt_tokens: int, max_tokens: int) -> GenerationTrace | None:
        if _tracer is None:
            return None
        generate = _tracer.start_span(
            "generate",
            attributes={
                "gen_ai.usage.input_tokens": prompt_tokens,
                "gen_ai.request.max_tokens": max_tokens,
            },
        )
        context = trace.set_span_in_context(generate)
        return cls(generate, Captured(context, time.time_ns()))

    def first_token(self) -> None:
        self._decode_started = time.time_ns()
        seconds = (self._decode_started - self.queued.at_ns) / 1e9
        self._generate.add_event(
            "first_token",
            {"gen_ai.latency.time_to_first_token": seconds},
            timestamp=self._decode_started,
        )
        self._generate.set_attribute("gen_ai.latency.time_to_first_token", seconds)

    def finish(self, reason: str, output_tokens: int, error: str | None = None) -> None:
        """End the spans (idempotent: a sequence can finish and be cancelled at once)."""
        generate = self._generate
        if not generate.is_recording():
            return
        if self._decode_started and _tracer is not None:
            decode = _tracer.start_span(
                "decode",
                trace.set_span_in_context(generate),
                attributes={"gen_ai.usage.output_tokens": output_tokens},
                start_time=self._decode_started,
            )
            decode.end()
        generate.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        generate.set_attribute("gen_ai.response.finish_reasons", [reason])
        if error is not None:
            generate.set_status(StatusCode.ERROR, error)
        generate.end()


def stream_span() -> Span | None:
    """A ``stream`` span for a streamed response's body, child of the current span; it is
    not made current (the body is sent from another task), so the caller ends it."""
    return None if _tracer is None else _tracer.start_span("stream")
{%- endif %}


class TraceIds(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` to a record logged inside a traced request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _tracer is not None:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
                record.span_id = format(context.span_id, "016x")
        return True
