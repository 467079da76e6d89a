"""Traces (OpenTelemetry): one request's span tree, propagation, shared batches, and off by default.

The spans are caught with the SDK's in-memory exporter, through a tracer provider
handed to ``create_app``: no test installs a global provider, and every app built
after a tracing test is untraced again (the ``recorder`` fixture).
"""

from __future__ import annotations

import asyncio
{%- if cookiecutter.workload == 'llm' %}
import threading
import time
{%- endif %}
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.serving import tracing

from . import workload_requests as workload
from .conftest import make_settings, run_async, running_app

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)
# The service's own spans and the span each one hangs from, in this workload's request.
{%- if cookiecutter.workload == 'vision' %}
PARENTS = {
    "preprocess": "fastapi.endpoint",
    "queue": "fastapi.endpoint",
    "model": "fastapi.endpoint",
    "postprocess": "fastapi.endpoint",
}
CALL = "model"
{%- elif cookiecutter.workload == 'embeddings' %}
PARENTS = {
    "preprocess": "fastapi.endpoint",
    "queue": "fastapi.endpoint",
    "model": "fastapi.endpoint",
    "encode": "fastapi.endpoint",
}
CALL = "model"
{%- elif cookiecutter.workload == 'tts' %}
PARENTS = {
    "queue": "fastapi.endpoint",
    "model": "fastapi.endpoint",
    "encode": "POST " + workload.ROUTE,
}
CALL = "model"
{%- else %}
PARENTS = {
    "tokenize": "fastapi.endpoint",
    "generate": "fastapi.endpoint",
    "queue": "generate",
    "prefill": "generate",
    "decode": "generate",
}
CALL = "prefill"
{%- endif %}


@dataclass
class Recorder:
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def traces(self) -> dict[int, list[ReadableSpan]]:
        grouped: dict[int, list[ReadableSpan]] = {}
        for span in self.exporter.get_finished_spans():
            grouped.setdefault(span.context.trace_id, []).append(span)
        return grouped


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Recorder(provider, exporter)
    tracing.configure(None)  # apps built after this test are untraced, as without OTEL_*
    provider.shutdown()


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = by_name(spans, name)
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {[s.name for s in spans]}"
    return found[0]


def parent_name(span: ReadableSpan, spans: list[ReadableSpan]) -> str | None:
    ids = {s.context.span_id: s.name for s in spans}
    return None if span.parent is None else ids.get(span.parent.span_id)


def render(spans: list[ReadableSpan]) -> str:
    """The trace as an indented tree with durations (docs/guide/03 shows one)."""
    children: dict[int | None, list[ReadableSpan]] = {}
    known = {s.context.span_id for s in spans}
    for span in spans:
        parent = span.parent.span_id if span.parent and span.parent.span_id in known else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_time or 0):
            ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            attributes = {k: v for k, v in (span.attributes or {}).items() if k.startswith("batch")}
            events = [event.name for event in span.events]
            extra = f" {attributes}" if attributes else ""
            extra += f" events={events}" if events else ""
            lines.append(f"{'  ' * depth}{span.name}  {ms:.2f} ms{extra}")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


async def send_traced(app: Any, index: int = 0) -> tuple[int, str]:
    async with running_app(app) as client:
        client.headers["traceparent"] = TRACEPARENT
        response = await workload.send(client, index)
        return response.status_code, response.headers["x-request-id"]


def test_one_request_makes_one_trace_under_the_callers(
    model_path: Path, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(make_settings(model_path), tracer_provider=recorder.provider)
    status, request_id = run_async(send_traced(app))
    assert status == 200
    traces = recorder.traces()
    assert list(traces) == [int(CALLER_TRACE, 16)], "every span belongs to the caller's trace"
    spans = traces[int(CALLER_TRACE, 16)]
    server = one(spans, f"POST {workload.ROUTE}")
    assert server.kind == trace.SpanKind.SERVER
    assert server.parent is not None and server.parent.span_id == int(CALLER_SPAN, 16)
    assert server.parent.is_remote
    assert (server.attributes or {})["http.response.status_code"] == 200
    assert parent_name(one(spans, "fastapi.endpoint"), spans) == server.name
    for name, parent in PARENTS.items():
        found = by_name(spans, name)
        assert found, f"no {name!r} span in {render(spans)}"
        for span in found:
            assert parent_name(span, spans) == parent, (name, render(spans))
            assert server.start_time <= span.start_time <= span.end_time <= server.end_time
    call = by_name(spans, CALL)[0]
    assert (call.attributes or {})["batch.size"] == 1
    assert (call.attributes or {})["batch.requests"] == 1
    assert isinstance((call.attributes or {})["batch.id"], int)
    admitted = [e for s in spans for e in s.events if e.name == "admitted"]
    assert len(admitted) == 1
    # the request's access log line carries its trace id
    out = capsys.readouterr().out.splitlines()
    (access,) = [line for line in out if f".access: POST {workload.ROUTE}" in line]
    assert f"trace_id={CALLER_TRACE}" in access, access
    assert request_id


{%- if cookiecutter.workload != 'llm' %}


def test_concurrent_requests_in_one_batch_each_get_their_spans(
    model_path: Path, recorder: Recorder
) -> None:
    settings = make_settings(model_path, max_batch_size=2, max_batch_wait_ms=2000, max_queue_size=8)
    app = create_app(settings, tracer_provider=recorder.provider)

    async def two() -> list[int]:
        async with running_app(app) as client:
            responses = await asyncio.gather(workload.send(client, 0), workload.send(client, 1))
            return [r.status_code for r in responses]

    assert run_async(two()) == [200, 200]
    traces = recorder.traces()
    assert len(traces) == 2, "two requests, two traces"
    batches = []
    for spans in traces.values():
        call = by_name(spans, "model")[0]
        assert parent_name(call, spans) == "fastapi.endpoint"
        batches.append(dict(call.attributes or {}))
    assert batches[0]["batch.id"] == batches[1]["batch.id"], batches
    assert batches[0]["batch.size"] == batches[1]["batch.size"] == 2
    assert batches[0]["batch.requests"] == 2
{%- else %}


def test_streamed_completion_has_first_token_and_stream_spans(
    model_path: Path, recorder: Recorder
) -> None:
    app = create_app(make_settings(model_path), tracer_provider=recorder.provider)
    body = {"model": workload._MODEL, "prompt": "Tell me", "max_tokens": 5, "stream": True}

    async def stream() -> str:
        async with running_app(app) as client:
            response = await client.post(workload.ROUTE, json=body)
            return response.text

    assert run_async(stream()).endswith("data: [DONE]\n\n")
    (spans,) = recorder.traces().values()
    server, generate = one(spans, f"POST {workload.ROUTE}"), one(spans, "generate")
    streamed = one(spans, "stream")
    assert parent_name(streamed, spans) == server.name
    assert streamed.end_time <= server.end_time
    (first,) = [e for e in generate.events if e.name == "first_token"]
    ttft = (first.attributes or {})["gen_ai.latency.time_to_first_token"]
    assert 0 < ttft <= (generate.end_time - generate.start_time) / 1e9
    decode = one(spans, "decode")
    assert decode.start_time == first.timestamp
    tokens = (generate.attributes or {})["gen_ai.usage.output_tokens"]
    assert 1 <= tokens <= 5 and (decode.attributes or {})["gen_ai.usage.output_tokens"] == tokens


def test_sequences_that_join_one_prefill_point_at_the_same_batch(
    model_path: Path, recorder: Recorder
) -> None:
    settings = make_settings(model_path, max_running_sequences=4)
    app = create_app(settings, tracer_provider=recorder.provider)
    busy = threading.Event()

    async def three() -> list[int]:
        async with running_app(app) as client:
            model = app.state.service.model
            original = model.prefill

            def first_prefill_slow(prompts: list[list[int]]) -> Any:
                if not busy.is_set():  # while it sleeps, two more sequences arrive
                    busy.set()
                    time.sleep(0.5)
                return original(prompts)

            model.prefill = first_prefill_slow
            first = asyncio.ensure_future(workload.send(client, 0))
            while not busy.is_set():
                await asyncio.sleep(0.005)
            rest = await asyncio.gather(workload.send(client, 1), workload.send(client, 2))
            return [r.status_code for r in [await first, *rest]]

    assert run_async(three()) == [200, 200, 200]
    prefills = sorted(
        (dict(one(spans, "prefill").attributes or {}) for spans in recorder.traces().values()),
        key=lambda attributes: attributes["batch.id"],
    )
    assert len(prefills) == 3
    assert prefills[0]["batch.size"] == 1
    assert prefills[1]["batch.id"] == prefills[2]["batch.id"], prefills
    assert prefills[1]["batch.size"] == prefills[2]["batch.size"] == 2
{%- endif %}


def test_off_without_otel_variables_no_provider_no_spans(
    model_path: Path,
    recorder: Recorder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert tracing.provider_from_environment() is None
    app = create_app(make_settings(model_path))
    assert not isinstance(trace.get_tracer_provider(), TracerProvider), "no SDK provider"
    # whatever asked the global API for a tracer from now on would record into the exporter
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: recorder.provider)
    status, _ = run_async(send_traced(app))
    assert status == 200
    assert recorder.exporter.get_finished_spans() == ()
    assert "trace_id=" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("variables", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, False),
    ],
)
def test_otel_variables_decide(
    variables: dict[str, str], on: bool, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    provider = tracing.provider_from_environment()
    assert (provider is not None) == on
    if provider is not None:
        assert isinstance(provider, TracerProvider)
        assert provider.resource.attributes["service.name"] == tracing.SERVICE_NAME
        provider.shutdown()


def test_otel_service_name_wins(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-classifier")
    provider = tracing.provider_from_environment()
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "checkout-classifier"
    provider.shutdown()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "zipkin"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "http/protobuf"),
    ],
)
def test_unavailable_exporter_fails_start_up_naming_it(
    name: str, value: str, says: str, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=says):
        tracing.provider_from_environment()
