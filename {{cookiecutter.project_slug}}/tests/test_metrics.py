"""/metrics after real traffic, parsed with prometheus-client's own parser and checked exactly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
{%- if cookiecutter.workload == 'llm' %}
import threading
{%- endif %}
import time
from pathlib import Path

import httpx
{%- if cookiecutter.workload == 'llm' %}
import numpy as np
{%- endif %}
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }} import TEMPLATE_VERSION, __version__
{%- if cookiecutter.workload == 'llm' %}
from {{ cookiecutter.package_name }}.llm.metrics import (
    ITL_BUCKETS,
    TTFT_BUCKETS,
    VLLM_KV_CACHE_USAGE,
    VLLM_RUNNING,
    VLLM_WAITING,
    GenerationMetrics,
)
{%- endif %}
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.metrics import (
    BUCKETS,
    MULTIPROC_DIR_ENV,
    WORKLOAD,
    batch_size_buckets,
    multiprocess_registry,
    shared_metrics_dir,
)
{%- if cookiecutter.workload == 'llm' %}
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings

from .conftest import free_port, make_settings, running_app
from .llm_support import wait_until
{%- else %}
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX

from .conftest import free_port, make_settings, running_app
{%- endif %}

PROJECT = Path(__file__).resolve().parents[1]
MODEL = "metrics-test"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
{%- if cookiecutter.workload == 'vision' %}

INFERENCE_ROUTE = "/v1/classify"


def png(index: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32 + index % 7, 32), color=(index * 37 % 256, 80, 160)).save(buffer, "PNG")
    return buffer.getvalue()


async def send_inference(client: httpx.AsyncClient, index: int) -> httpx.Response:
    upload = {"file": (f"{index}.png", png(index), "image/png")}
    return await client.post(INFERENCE_ROUTE, files=upload)


async def send_bad_request(client: httpx.AsyncClient) -> httpx.Response:
    upload = {"file": ("x.png", b"not an image", "image/png")}
    return await client.post(INFERENCE_ROUTE, files=upload)
{%- elif cookiecutter.workload == 'embeddings' %}

INFERENCE_ROUTE = "/v1/embeddings"


async def send_inference(client: httpx.AsyncClient, index: int) -> httpx.Response:
    return await client.post(INFERENCE_ROUTE, json={"model": MODEL, "input": f"sentence {index}"})


async def send_bad_request(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(INFERENCE_ROUTE, json={"model": MODEL})
{%- elif cookiecutter.workload == 'tts' %}

INFERENCE_ROUTE = "/v1/audio/speech"


async def send_inference(client: httpx.AsyncClient, index: int) -> httpx.Response:
    body = {"model": MODEL, "input": f"hello number {index}", "voice": "alloy"}
    return await client.post(INFERENCE_ROUTE, json=body)


async def send_bad_request(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(INFERENCE_ROUTE, json={"model": MODEL, "voice": "alloy"})
{%- elif cookiecutter.workload == 'llm' %}

INFERENCE_ROUTE = "/v1/completions"


async def send_inference(client: httpx.AsyncClient, index: int) -> httpx.Response:
    body = {"model": MODEL, "prompt": f"count to {index}", "max_tokens": 4, "temperature": 0}
    return await client.post(INFERENCE_ROUTE, json=body)


async def send_bad_request(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(INFERENCE_ROUTE, json={"model": MODEL, "max_tokens": 4})
{%- endif %}


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (at least one)."""
    wanted = set(labels.items())
    found = [v for (n, have), v in samples.items() if n == name and wanted <= have]
    assert found, f"no sample {name}{labels} in the scrape"
    return sum(found)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def bucket_bounds(samples: Samples, name: str) -> list[float]:
    return sorted(float(dict(labels)["le"]) for n, labels in samples if n == f"{name}_bucket")


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def settled_metrics(client: httpx.AsyncClient) -> str:
    """Scrape once two scrapes 50 ms apart agree: a generation step's last observations
    (tokens, inter-token latency) may land just after its responses were sent."""
    previous = None
    for _ in range(100):
        text = (await client.get("/metrics")).text
        if text == previous:
            return text
        previous = text
        await asyncio.sleep(0.05)
    return text


# --- one process, real traffic -------------------------------------------------------
def test_traffic_moves_the_metrics_exactly(model_path: Path) -> None:
    requests, bad = 24, 3
    settings = make_settings(model_path, model_name=MODEL, max_batch_size=8, max_batch_wait_ms=20.0)
    app = create_app(settings)

    async def traffic() -> tuple[list[httpx.Response], list[httpx.Response], str]:
        async with running_app(app) as client:
            good = await asyncio.gather(*(send_inference(client, i) for i in range(requests)))
            failed = [await send_bad_request(client) for _ in range(bad)]
            return list(good), failed, await settled_metrics(client)

    good, failed, text = asyncio.run(traffic())
    assert [r.status_code for r in good] == [200] * requests
    bad_status = failed[0].status_code
    assert 400 <= bad_status < 500 and all(r.status_code == bad_status for r in failed)
    samples = parse(text)
    model = {"model": MODEL}

    # every request counted once, under its route template and status; scrapes are not
    route = {"route": INFERENCE_ROUTE}
    assert value(samples, "inference_requests_total", status="200", **route) == requests
    assert value(samples, "inference_requests_total", status=str(bad_status), **route) == bad
    assert value(samples, "inference_request_duration_seconds_count", **route) == requests + bad
    assert value(samples, "inference_request_duration_seconds_sum", **route) > 0
    assert not any(dict(labels).get("route") == "/metrics" for _, labels in samples)
{%- if cookiecutter.workload == 'llm' %}

    # generation: tokens as the responses' usage reports them, one first token per sequence
    usage = [r.json()["usage"] for r in good]
    prompt_tokens = sum(u["prompt_tokens"] for u in usage)
    completion_tokens = sum(u["completion_tokens"] for u in usage)
    assert value(samples, "inference_prompt_tokens_total", **model) == prompt_tokens
    assert value(samples, "inference_generated_tokens_total", **model) == completion_tokens
    assert value(samples, "inference_time_to_first_token_seconds_count", **model) == requests
    inter_token = value(samples, "inference_inter_token_latency_seconds_count", **model)
    assert inter_token == completion_tokens - requests
    assert value(samples, "inference_running_sequences", **model) == 0
    assert value(samples, "inference_waiting_sequences", **model) == 0
    assert value(samples, "inference_kv_cache_usage_ratio", **model) == 0
    for name in (VLLM_WAITING, VLLM_RUNNING, VLLM_KV_CACHE_USAGE):
        assert value(samples, name, model_name=MODEL) == 0
{%- else %}

    # batching: the histograms agree with the batcher's own count of what it ran
    stats = app.state.service.batcher.stats
    assert stats.items == requests  # the bad requests never reached the model
    assert value(samples, "inference_batch_size_count", **model) == stats.batches
    assert value(samples, "inference_batch_size_sum", **model) == stats.items
    assert value(samples, "inference_compute_seconds_count", **model) == stats.batches
    assert value(samples, "inference_queue_wait_seconds_count", **model) == requests
    assert value(samples, "inference_queue_depth", **model) == 0
{%- endif %}

    # state: idle (the scrape itself is not an inference request: not in flight), ready, timed
    assert value(samples, "inference_in_flight_requests") == 0
    assert value(samples, "inference_ready", **model) == 1
    assert value(samples, "inference_model_load_seconds", **model) > 0
    assert value(samples, "inference_warmup_seconds", **model) > 0


def test_ready_follows_the_lifecycle(model_path: Path) -> None:
    app = create_app(make_settings(model_path, model_name=MODEL))
    before_start = TestClient(app)  # no lifespan: nothing loaded yet
    assert value(scrape(before_start), "inference_ready", model=MODEL) == 0
    with TestClient(app) as client:
        assert value(scrape(client), "inference_ready", model=MODEL) == 1
        app.state.service.readiness.draining = True  # what SIGTERM does first
        assert value(scrape(client), "inference_ready", model=MODEL) == 0


def test_build_info_names_the_template_release(model_path: Path) -> None:
    app = create_app(make_settings(model_path, model_name=MODEL))
    samples = scrape(TestClient(app))  # from the start, before the model loads
    build = {"version": __version__, "template_version": TEMPLATE_VERSION}
    assert value(samples, "inference_build_info", **build) == 1
    assert re.fullmatch(r"\d+\.\d+\.\d+", TEMPLATE_VERSION), TEMPLATE_VERSION


def test_histogram_buckets_fit_the_workload(model_path: Path) -> None:
{%- if cookiecutter.workload == 'llm' %}
    settings = make_settings(model_path, model_name=MODEL, max_running_sequences=8)
{%- else %}
    settings = make_settings(model_path, model_name=MODEL, max_batch_size=8)
{%- endif %}
    with TestClient(create_app(settings)) as client:
        client.get("/health/live")
        samples = scrape(client)
    inf = float("inf")
    expected = BUCKETS[WORKLOAD]
    assert bucket_bounds(samples, "inference_request_duration_seconds") == [*expected.request, inf]
    assert bucket_bounds(samples, "inference_compute_seconds") == [*expected.compute, inf]
    assert bucket_bounds(samples, "inference_queue_wait_seconds") == [*expected.queue_wait, inf]
    assert bucket_bounds(samples, "inference_batch_size") == [1, 2, 4, 8, inf]
    assert batch_size_buckets(12) == (1, 2, 4, 8, 12)


def test_names_follow_the_prometheus_rules(client: TestClient) -> None:
    client.get("/health/live")
    families = list(text_string_to_metric_families(client.get("/metrics").text))
    assert {family.name for family in families} >= {"inference_requests", "inference_ready"}
{%- if cookiecutter.workload == 'llm' %}
    # the model-server protocol's gauges keep vLLM's names
    protocol = {VLLM_WAITING, VLLM_RUNNING, VLLM_KV_CACHE_USAGE}
    assert protocol <= {family.name for family in families}
{%- else %}
    protocol: set[str] = set()
{%- endif %}
    for family in families:
        if family.name in protocol:
            assert family.type == "gauge", family.name
            continue
        assert re.fullmatch(r"inference_[a-z0-9_]+", family.name), family.name
        if family.type == "counter":  # counters end in _total, and nothing else does
            assert {sample.name for sample in family.samples} <= {f"{family.name}_total"}
        else:
            assert not family.name.endswith("_total"), family.name
        if family.type == "histogram":  # a base unit, or a plain count of items
            counts = ("_batch_size", "_tokens", "_sequences")
            assert family.name.endswith(("_seconds", *counts)), family.name
{%- if cookiecutter.workload == 'llm' %}


# --- the LLM observer ------------------------------------------------------------------
def test_llm_observer_methods_export_exactly() -> None:
    metrics = GenerationMetrics("tiny-llm", max_batch_size=4)
    for prompt in (7, 5):
        metrics.sequence_admitted(prompt, 0.01)
    metrics.first_token(0.02)
    metrics.first_token(0.3)
    for gap in (0.004, 0.006, 0.012):
        metrics.inter_token(gap)
    metrics.tokens_generated(3)
    metrics.tokens_generated(2)
    metrics.sequences(running=2, waiting=1, kv_cache_usage=0.25)
    samples = parse(generate_latest(metrics.registry).decode())
    model = {"model": "tiny-llm"}
    assert value(samples, "inference_kv_cache_usage_ratio", **model) == 0.25
    assert value(samples, VLLM_RUNNING, model_name="tiny-llm") == 2
    assert value(samples, VLLM_WAITING, model_name="tiny-llm") == 1
    assert value(samples, VLLM_KV_CACHE_USAGE, model_name="tiny-llm") == 0.25
    assert value(samples, "inference_prompt_tokens_total", **model) == 12
    assert value(samples, "inference_queue_wait_seconds_count", **model) == 2  # one per sequence
    assert value(samples, "inference_generated_tokens_total", **model) == 5
    assert value(samples, "inference_time_to_first_token_seconds_count", **model) == 2
    ttft_sum = value(samples, "inference_time_to_first_token_seconds_sum", **model)
    assert ttft_sum == pytest.approx(0.32)
    assert value(samples, "inference_inter_token_latency_seconds_count", **model) == 3
    assert value(samples, "inference_inter_token_latency_seconds_bucket", le="0.005", **model) == 1
    assert value(samples, "inference_running_sequences", **model) == 2
    assert value(samples, "inference_waiting_sequences", **model) == 1
    ttft_bounds = bucket_bounds(samples, "inference_time_to_first_token_seconds")
    assert ttft_bounds == [*TTFT_BUCKETS, float("inf")]
    itl_bounds = bucket_bounds(samples, "inference_inter_token_latency_seconds")
    assert itl_bounds == [*ITL_BUCKETS, float("inf")]
    metrics.sequences(running=0, waiting=0, kv_cache_usage=0.0)
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "inference_running_sequences", **model) == 0
    assert value(samples, VLLM_RUNNING, model_name="tiny-llm") == 0


class GatedModel(Model):
    """The demo model, one decode step per ``gate`` release once ``gated``, and never EOS.

    The test steps the engine one call at a time, so the scrapes in between see exactly
    known scheduler states; suppressing EOS keeps every sequence running until max_tokens.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gated = False
        self.gate = threading.Semaphore(0)
        self.decodes_entered = 0

    def _no_eos(self, logits: np.ndarray) -> np.ndarray:
        logits = np.array(logits, copy=True)
        logits[:, sorted(self.tokenizer.eos_token_ids)] = -1e9
        return logits

    def prefill(self, prompts):  # type: ignore[no-untyped-def]
        logits, caches = super().prefill(prompts)
        return self._no_eos(logits), caches

    def extend(self, tokens, caches):  # type: ignore[no-untyped-def]
        logits, caches = super().extend(tokens, caches)
        return self._no_eos(logits), caches

    def decode(self, tokens, caches):  # type: ignore[no-untyped-def]
        if self.gated:
            self.decodes_entered += 1
            if not self.gate.acquire(timeout=30):
                raise RuntimeError("the test never released this decode step")
        logits, caches = super().decode(tokens, caches)
        return self._no_eos(logits), caches


def gateway_gauges(samples: Samples) -> dict[str, float]:
    """The scheduler state, under both names: the inference_* gauges and the protocol's."""
    model = {"model": MODEL}
    return {
        "running": value(samples, "inference_running_sequences", **model),
        "waiting": value(samples, "inference_waiting_sequences", **model),
        "kv": value(samples, "inference_kv_cache_usage_ratio", **model),
        "vllm_running": value(samples, VLLM_RUNNING, model_name=MODEL),
        "vllm_waiting": value(samples, VLLM_WAITING, model_name=MODEL),
        "vllm_kv": value(samples, VLLM_KV_CACHE_USAGE, model_name=MODEL),
    }


def test_gateway_gauges_follow_the_scheduler_under_load(model_path: Path) -> None:
    """Five sequences on two slots, the engine stepped one decode at a time: after every step
    both families of gauges show the scheduler's exact state, and agree with each other."""
    slots, requests, max_tokens = 2, 5, 12
    settings = make_settings(
        model_path, model_name=MODEL, max_running_sequences=slots, max_waiting_sequences=8
    )
    models: list[GatedModel] = []

    def factory(s: Settings) -> GatedModel:
        models.append(GatedModel(s))
        return models[-1]

    app = create_app(settings, model_factory=factory)
    body = {"model": MODEL, "max_tokens": max_tokens, "temperature": 0}

    async def load() -> tuple[list[dict[str, float]], dict[str, float], list[httpx.Response], int]:
        async with running_app(app) as client:
            model, scheduler = models[0], app.state.service.scheduler
            model.gated = True  # warmup ran ungated; from now on the test steps the engine

            def send(i: int) -> asyncio.Task[httpx.Response]:
                prompt = {**body, "prompt": f"p{i}"}  # the same length for every request
                return asyncio.create_task(client.post(INFERENCE_ROUTE, json=prompt))

            # the first sequence alone runs into the gate; the other four then wait for a slot
            calls = [send(0)]
            await asyncio.to_thread(wait_until, lambda: model.decodes_entered == 1)
            calls += [send(i) for i in range(1, requests)]
            await asyncio.to_thread(wait_until, lambda: scheduler.waiting == requests - 1)
            observed = []
            for step in range(1, 4):
                model.gate.release()  # this step's decode returns ...
                # ... and the next step's decode is entered: this step's gauges are set
                await asyncio.to_thread(wait_until, lambda s=step: model.decodes_entered == s + 1)
                observed.append(gateway_gauges(parse((await client.get("/metrics")).text)))
            for _ in range(requests * max_tokens):  # let everything finish
                model.gate.release()
            responses = await asyncio.gather(*calls)
            final = gateway_gauges(parse(await settled_metrics(client)))
            return observed, final, list(responses), scheduler.context_length

    observed, final, responses, context = asyncio.run(load())
    assert [r.status_code for r in responses] == [200] * requests
    (prompt,) = {r.json()["usage"]["prompt_tokens"] for r in responses}
    assert {r.json()["usage"]["completion_tokens"] for r in responses} == {max_tokens}
    # step 1: the first sequence (its prompt, the prefill's token and one decoded); step 2: the
    # second joins (prefill + decode) and the first grows; step 3: both grow, three still wait
    expected = [
        {"running": 1, "waiting": 4, "held": prompt + 2},
        {"running": 2, "waiting": 3, "held": (prompt + 3) + (prompt + 2)},
        {"running": 2, "waiting": 3, "held": (prompt + 4) + (prompt + 3)},
    ]
    for gauges, state in zip(observed, expected, strict=True):
        assert (gauges["running"], gauges["waiting"]) == (state["running"], state["waiting"])
        assert gauges["kv"] == pytest.approx(state["held"] / (slots * context))
        # the model-server protocol's names carry the same values
        assert gauges["vllm_running"] == gauges["running"]
        assert gauges["vllm_waiting"] == gauges["waiting"]
        assert gauges["vllm_kv"] == gauges["kv"]
    assert final == dict.fromkeys(final, 0.0), "idle: nothing running, waiting or cached"
{%- endif %}


# --- several worker processes --------------------------------------------------------------
WORKER = """
import sys
from {{ cookiecutter.package_name }}.metrics import ServiceMetrics

requests, shutdown = int(sys.argv[1]), sys.argv[2]
metrics = ServiceMetrics("demo", max_batch_size=8)
for _ in range(requests):
    metrics.request_started()
    metrics.request_finished("/v1/x", "POST", 200, 0.01)
metrics.batch_computed(requests, 0.005)
metrics.queue_depth_gauge.labels(model="demo").set(requests)  # a livesum gauge
metrics.set_ready(True)
metrics.startup_timings(load_s=float(requests), warmup_s=0.5)
if shutdown == "close":
    metrics.close()
else:
    print("written", flush=True)
    sys.stdin.read()  # stay alive until the test closes stdin or kills us
"""


def worker_env(directory: Path) -> dict[str, str]:
    pythonpath = os.pathsep.join([str(PROJECT / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": pythonpath, MULTIPROC_DIR_ENV: str(directory)}


def test_multiprocess_metrics_merge_across_workers(tmp_path: Path) -> None:
    env = worker_env(tmp_path)
    run = [sys.executable, "-c", WORKER]
    subprocess.run([*run, "3", "close"], env=env, check=True, timeout=60)
    alive = subprocess.Popen(
        [*run, "5", "stay"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert alive.stdout is not None and alive.stdout.readline() == "written\n"
        samples = parse(generate_latest(multiprocess_registry(tmp_path)).decode())
        # counters and histograms add up over every worker that ever ran
        assert value(samples, "inference_requests_total", route="/v1/x", status="200") == 8
        assert value(samples, "inference_batch_size_count", model="demo") == 2
        assert value(samples, "inference_batch_size_sum", model="demo") == 8
        # live gauges: the worker that shut down no longer counts
        assert value(samples, "inference_queue_depth", model="demo") == 5
        assert value(samples, "inference_ready", model="demo") == 1
        assert value(samples, "inference_model_load_seconds", model="demo") == 5
        assert value(samples, "inference_in_flight_requests") == 0
        assert not any("pid" in dict(labels) for _, labels in samples)
    finally:
        alive.kill()  # dies without shutting down, as a crashed worker does
        alive.wait(timeout=30)
    samples = parse(generate_latest(multiprocess_registry(tmp_path)).decode())
    assert value(samples, "inference_requests_total", route="/v1/x", status="200") == 8
    assert "inference_queue_depth" not in names(samples)
    assert "inference_ready" not in names(samples)


def test_shared_metrics_dir_is_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_DIR_ENV, raising=False)
    with shared_metrics_dir() as directory:
        assert os.environ[MULTIPROC_DIR_ENV] == str(directory)
        assert directory.is_dir() and not any(directory.iterdir())
    assert MULTIPROC_DIR_ENV not in os.environ and not directory.exists()

    configured = tmp_path / "metrics"
    configured.mkdir()
    (configured / "counter_123.db").write_bytes(b"stale")
    (configured / "keep.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(configured))
    with shared_metrics_dir() as directory:
        assert directory == configured
        assert [p.name for p in directory.iterdir()] == ["keep.txt"]
    assert configured.is_dir()


@pytest.mark.heavy
def test_server_with_two_workers_counts_every_request(model_path: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **worker_env(tmp_path),
        f"{ENV_PREFIX}WORKERS": "2",
        f"{ENV_PREFIX}HOST": "127.0.0.1",
        f"{ENV_PREFIX}PORT": str(port),
        f"{ENV_PREFIX}MODEL_PATH": str(model_path),
        f"{ENV_PREFIX}MODEL_NAME": MODEL,
        f"{ENV_PREFIX}CPU_FALLBACK": "true",
        f"{ENV_PREFIX}LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_both_workers_ready(server, base, tmp_path)
        sent = 40
        for _ in range(sent):  # a new connection each: the kernel picks a worker for each
            response = httpx.get(f"{base}/health/live", headers={"Connection": "close"})
            assert response.status_code == 200
        for _ in range(3):  # whichever worker answers, it reports both
            samples = parse(httpx.get(f"{base}/metrics").text)
            assert value(samples, "inference_requests_total", route="/health/live") == sent
            assert value(samples, "inference_ready", model=MODEL) == 1
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert not list(tmp_path.glob("gauge_live*.db")), "a worker left its live gauges behind"


def wait_until_both_workers_ready(
    server: subprocess.Popen[bytes], base: str, directory: Path
) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            assert server.stderr is not None
            log = server.stderr.read()[-3000:].decode(errors="replace")
            pytest.fail(f"the server exited with {server.returncode}:\n{log}")
        pids = {path.name.rsplit("_", 1)[1] for path in directory.glob("gauge_livemin_*.db")}
        if len(pids) == 2:
            try:
                samples = parse(httpx.get(f"{base}/metrics", timeout=5).text)
                if value(samples, "inference_ready", model=MODEL) == 1:
                    return
            except (httpx.HTTPError, AssertionError):
                pass
        time.sleep(0.2)
    pytest.fail("two ready workers did not appear within 120 s")
