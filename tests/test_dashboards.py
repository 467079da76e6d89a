"""Monitoring artefacts: the Grafana dashboard, Prometheus and Grafana provisioning, /metrics.

The check that matters most: every metric a dashboard query uses is one the
service exports. The exported names come from the baked service itself: its
metrics module, after every observer method ran (with a fake NVML holding one
GPU in gpu builds), rendered as a scrape and parsed with prometheus-client.

The dashboard only differs by workload and device, so one bake per (workload,
device) pair covers every prometheus combination.

Grafana publishes its dashboard schema as TypeScript types (``@grafana/schema``, generated
from Grafana's CUE kinds; no JSON Schema of the classic dashboard JSON is published): each
dashboard variant is checked against them by the TypeScript compiler, with excess-property
checks, so an unknown or misspelt field or a wrong type fails. ``make tools`` installs the
pinned packages of tests/grafana-schema.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .combinations import DEFAULTS, OPTIONS
from .conftest import assert_ok

PACKAGE = "ai_service"
GRAFANA_SCHEMA = Path(__file__).resolve().parent / "grafana-schema"
SLUG = "ai-service"
PAIRS = [(workload, device) for workload in OPTIONS["workload"] for device in OPTIONS["device"]]
PAIR_IDS = [f"{workload}-{device}-prometheus" for workload, device in PAIRS]
DASHBOARD = "deploy/grafana/dashboards/inference.json"
METRIC = re.compile(r"\binference_[a-z0-9_]+")

# The catalogue, as the monitoring issue lists it (sample names, as scraped).
CORE = {
    "inference_build_info",
    "inference_requests_total",
    "inference_request_duration_seconds_bucket",
    "inference_request_duration_seconds_count",
    "inference_request_duration_seconds_sum",
    "inference_queue_wait_seconds_bucket",
    "inference_queue_wait_seconds_count",
    "inference_queue_wait_seconds_sum",
    "inference_compute_seconds_bucket",
    "inference_compute_seconds_count",
    "inference_compute_seconds_sum",
    "inference_batch_size_bucket",
    "inference_batch_size_count",
    "inference_batch_size_sum",
    "inference_queue_depth",
    "inference_in_flight_requests",
    "inference_ready",
    "inference_model_load_seconds",
    "inference_warmup_seconds",
}
GPU = {
    "inference_gpu_memory_used_bytes",
    "inference_gpu_memory_total_bytes",
    "inference_gpu_utilization_ratio",
}
LLM = {
    "inference_time_to_first_token_seconds_bucket",
    "inference_time_to_first_token_seconds_count",
    "inference_time_to_first_token_seconds_sum",
    "inference_inter_token_latency_seconds_bucket",
    "inference_inter_token_latency_seconds_count",
    "inference_inter_token_latency_seconds_sum",
    "inference_prompt_tokens_total",
    "inference_generated_tokens_total",
    "inference_running_sequences",
    "inference_waiting_sequences",
    "inference_kv_cache_usage_ratio",
    "inference_request_generation_tokens_bucket",
    "inference_request_generation_tokens_count",
    "inference_request_generation_tokens_sum",
    "inference_request_sequences_bucket",
    "inference_request_sequences_count",
    "inference_request_sequences_sum",
    "inference_grammar_seconds_total",
    "inference_prefix_cache_query_tokens_total",
    "inference_prefix_cache_hit_tokens_total",
    "inference_prefix_cache_bytes",
}
# the same sequence state under the model-server protocol's (vLLM's) names, for the inference
# gateway's endpoint picker; the dashboard shows the inference_ twins
LLM_PROTOCOL = {
    "vllm:num_requests_waiting",
    "vllm:num_requests_running",
    "vllm:kv_cache_usage_perc",
}
PANELS = {
    "Versions",
    "Ready",
    "Throughput",
    "Error rate (5xx)",
    "p99 latency",
    "Throughput by route",
    "Error rate by status",
    "Request latency",
    "p99 latency by route",
    "Queue depth and in-flight requests",
    "Queue wait",
    "Batch size",
    "Compute time per batch",
}
GPU_PANELS = {"GPU memory", "GPU utilisation"}
LLM_PANELS = {
    "Time to first token",
    "Inter-token latency",
    "Tokens per second",
    "Sequences",
    "KV cache usage",
    "Per request",
    "Prefix cache",
}

# Runs in a subprocess with the baked src on the path: exercise every observer
# method once, then print the names of the samples a scrape carries.
EXPORTED_NAMES = """
import json
import sys
import types

fake = types.ModuleType("pynvml")  # one GPU, so gpu builds export their gauges
fake.NVMLError = type("NVMLError", (Exception,), {})
fake.nvmlInit = lambda: None
fake.nvmlDeviceGetCount = lambda: 1
fake.nvmlDeviceGetHandleByIndex = lambda index: index
fake.nvmlDeviceGetUUID = lambda handle: "GPU-0"
fake.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(used=1, total=2, free=1)
fake.nvmlDeviceGetUtilizationRates = lambda handle: types.SimpleNamespace(gpu=50, memory=0)
sys.modules["pynvml"] = fake

from prometheus_client.parser import text_string_to_metric_families

try:  # llm services add their token and sequence metrics
    from ai_service.llm.metrics import GenerationMetrics as Metrics
except ModuleNotFoundError:
    from ai_service.metrics import ServiceMetrics as Metrics

metrics = Metrics("demo", max_batch_size=4)
metrics.request_started()
metrics.request_finished("/v1/anything", "POST", 200, 0.01)
metrics.batch_computed(2, 0.005)
metrics.set_ready(True)
metrics.startup_timings(1.0, 2.0)
events = {  # each observer method the workload's metrics have
    "queue_depth": (1,),
    "batch_dispatched": (2, [0.001, 0.002]),
    "sequence_admitted": (3, 0.01),
    "first_token": (0.05,),
    "inter_token": (0.01,),
    "tokens_generated": (2,),
    "sequences": (1, 0, 0.25),
    "prefix_cache_lookup": (40, 32, 65536),
}
for name, args in events.items():
    if hasattr(metrics, name):
        getattr(metrics, name)(*args)
body, _ = metrics.render()
families = text_string_to_metric_families(body.decode())
print(json.dumps(sorted({sample.name for family in families for sample in family.samples})))
"""

# Without lifespan nothing is loaded, so no model file is needed to ask the routes.
METRICS_ROUTE = """
import sys
from fastapi.testclient import TestClient
from ai_service.main import create_app
from ai_service.settings import Settings

response = TestClient(create_app(Settings(_env_file=None))).get("/metrics")
print(response.status_code, "prometheus_client" in sys.modules)
"""


def python(project: Path, code: str) -> str:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CUDA_VISIBLE_DEVICES", "PROMETHEUS_MULTIPROC_DIR"}
    }
    env["PYTHONPATH"] = str(project / "src")
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    assert_ok(result, "python in the baked project")
    return result.stdout.strip().splitlines()[-1]  # after any log lines


@pytest.fixture(scope="module")
def baked(cookies_session) -> Any:  # type: ignore[no-untyped-def]
    """Bake once per (workload, device, monitoring); shared by the tests of this module."""
    projects: dict[tuple[str, str, str], Path] = {}

    def _bake(workload: str, device: str, monitoring: str = "prometheus") -> Path:
        key = (workload, device, monitoring)
        if key not in projects:
            context = {**DEFAULTS, "workload": workload, "device": device, "monitoring": monitoring}
            result = cookies_session.bake(extra_context=context)
            assert result.exception is None, f"bake failed: {result.exception}"
            projects[key] = Path(result.project_path)
        return projects[key]

    return _bake


def dashboard(project: Path) -> dict[str, Any]:
    return json.loads((project / DASHBOARD).read_text(encoding="utf-8"))


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in board["panels"] if panel["type"] != "row"]


def queries(board: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in panels(board) for target in panel["targets"]]
    variables = board["templating"]["list"]
    return exprs + [v["query"]["query"] for v in variables if v["type"] == "query"]


@pytest.mark.parametrize(("workload", "device"), PAIRS, ids=PAIR_IDS)
def test_service_exports_the_catalogue(baked, workload: str, device: str) -> None:
    exported = set(json.loads(python(baked(workload, device), EXPORTED_NAMES)))
    expected = CORE | (GPU if device == "gpu" else set())
    expected |= LLM | LLM_PROTOCOL if workload == "llm" else set()
    assert exported == expected


@pytest.mark.parametrize(("workload", "device"), PAIRS, ids=PAIR_IDS)
def test_dashboard_queries_only_exported_metrics(baked, workload: str, device: str) -> None:
    project = baked(workload, device)
    exported = set(json.loads(python(project, EXPORTED_NAMES)))
    used = {name for query in queries(dashboard(project)) for name in METRIC.findall(query)}
    assert used, "the dashboard queries no inference_ metric"
    assert used <= exported, f"queried but never exported: {sorted(used - exported)}"
    # and every exported family is on the dashboard somewhere
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in exported - LLM_PROTOCOL}
    shown = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert families <= shown, f"exported but not shown: {sorted(families - shown)}"


@pytest.mark.parametrize(("workload", "device"), PAIRS, ids=PAIR_IDS)
def test_dashboard_is_well_formed(baked, workload: str, device: str) -> None:
    board = dashboard(baked(workload, device))
    titles = {panel["title"] for panel in panels(board)}
    expected = PANELS | (GPU_PANELS if device == "gpu" else set())
    expected |= LLM_PANELS if workload == "llm" else set()
    assert expected <= titles
    assert titles.issuperset(GPU_PANELS) == (device == "gpu")
    assert titles.issuperset(LLM_PANELS) == (workload == "llm")
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            # Grafana's own legend templates survive baking; Jinja leaves nothing behind
            assert "{%" not in target["legendFormat"] and "raw" not in target["legendFormat"]
    legends = [t["legendFormat"] for panel in panels(board) for t in panel["targets"]]
    assert "{{route}}" in legends and "{{status}}" in legends
    assert board["uid"] == "inference-service"


@pytest.mark.parametrize(("workload", "device"), PAIRS[:1], ids=PAIR_IDS[:1])
def test_prometheus_and_grafana_provisioning_agree(baked, workload: str, device: str) -> None:
    project = baked(workload, device)
    prometheus = yaml.safe_load((project / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["job_name"] == SLUG
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["app:8000"]}]  # the compose service `app`
    grafana = project / "deploy/grafana/provisioning"
    datasources = yaml.safe_load((grafana / "datasources/datasource.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True
    # $__rate_interval is computed from the scrape interval Grafana is told
    assert source["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]
    providers = yaml.safe_load((grafana / "dashboards/dashboards.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    variable = dashboard(project)["templating"]["list"][0]
    assert variable["type"] == "datasource" and variable["query"] == source["type"]


@pytest.mark.parametrize("monitoring", ["prometheus", "none"])
def test_metrics_route_exists_only_with_prometheus(baked, monitoring: str) -> None:
    project = baked(DEFAULTS["workload"], DEFAULTS["device"], monitoring)
    status, imported = python(project, METRICS_ROUTE).split()
    assert status == ("200" if monitoring == "prometheus" else "404")
    assert imported == str(monitoring == "prometheus")
    dependencies = (project / "pyproject.toml").read_text()
    assert ("prometheus-client" in dependencies) == (monitoring == "prometheus")
    assert (project / "deploy/grafana").exists() == (monitoring == "prometheus")
    assert (project / "deploy/prometheus").exists() == (monitoring == "prometheus")


# A dashboard JSON typed as Grafana's classic dashboard model. The generated types use
# TypeScript enums, which JSON strings never are: Json<T> turns each into its string values.
DASHBOARD_CHECK = """\
import type {{ Dashboard }} from {types};

type Json<T> = T extends string
  ? `${{T}}`
  : T extends (infer U)[]
    ? Json<U>[]
    : T extends object
      ? {{ [K in keyof T]: Json<T[K]> }}
      : T;

export const dashboard: Json<Dashboard> = {board};
"""


def test_dashboards_match_grafanas_schema(baked, tmp_path: Path) -> None:
    tsc = GRAFANA_SCHEMA / "node_modules" / ".bin" / "tsc"
    types = GRAFANA_SCHEMA / "node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen"
    if not tsc.exists() or shutil.which("node") is None:
        pytest.fail("Grafana's schema is not installed: `make tools` (needs node and npm)")
    files = []
    for (workload, device), name in zip(PAIRS, PAIR_IDS, strict=True):
        text = (baked(workload, device) / DASHBOARD).read_text(encoding="utf-8")
        check = tmp_path / f"{name}.ts"
        check.write_text(DASHBOARD_CHECK.format(types=json.dumps(str(types)), board=text))
        files.append(str(check))
    result = subprocess.run(
        [str(tsc), "--noEmit", "--strict", "--skipLibCheck", "--target", "es2022", *files],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"not Grafana's dashboard schema:\n{result.stdout}{result.stderr}"
    )
