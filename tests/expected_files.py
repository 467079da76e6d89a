"""The exact file set each combination must generate: an independent spec of the post-gen hook."""

from __future__ import annotations

PACKAGE = "src/ai_service"

COMMON = {
    ".dockerignore",
    ".github/workflows/ci.yml",
    ".github/workflows/template-update.yml",
    ".gitignore",
    "Dockerfile",
    "Makefile",
    "README.md",
    "compose.yaml",
    "pyproject.toml",
    "scripts/bench.py",
    "scripts/benchlib.py",
    "scripts/make_demo_model.py",
    "scripts/template_sync.py",
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/__main__.py",
    f"{PACKAGE}/healthcheck.py",
    f"{PACKAGE}/serving/deps.py",
    f"{PACKAGE}/serving/health.py",
    f"{PACKAGE}/serving/responses.py",
    f"{PACKAGE}/logging_config.py",
    f"{PACKAGE}/main.py",
    f"{PACKAGE}/serving/middleware.py",
    f"{PACKAGE}/serving/http_protocol.py",
    f"{PACKAGE}/serving/sockets.py",
    f"{PACKAGE}/model.py",
    f"{PACKAGE}/serving/cpus.py",
    f"{PACKAGE}/serving/device.py",
    f"{PACKAGE}/serving/__init__.py",
    f"{PACKAGE}/serving/errors.py",
    f"{PACKAGE}/serving/lifecycle.py",
    f"{PACKAGE}/serving/oom.py",
    f"{PACKAGE}/serving/tracing.py",
    f"{PACKAGE}/serving/warmup.py",
    f"{PACKAGE}/settings.py",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/test_auth.py",
    "tests/test_cpus.py",
    "tests/test_fuzz.py",
    "tests/test_health.py",
    "tests/test_healthcheck.py",
    "tests/test_hostile_input.py",
    "tests/test_hostile_clients.py",
    "tests/test_resilience.py",
    "tests/test_settings.py",
    "tests/test_tracing.py",
    "tests/workload_requests.py",
}

BATCHING = {f"{PACKAGE}/serving/batcher.py", f"{PACKAGE}/serving/batch_service.py"}


def workload_package(name: str, *modules: str) -> set[str]:
    return {f"{PACKAGE}/{name}/{module}.py" for module in ("__init__", "service", *modules)}


BY_OPTION: dict[tuple[str, str], set[str]] = {
    ("workload", "vision"): workload_package(
        "vision", "arrays", "classify", "contract", "images", "v2"
    )
    | BATCHING
    | {
        "tests/images.py",
        "tests/test_batcher.py",  # drives the batcher through /v1/classify
        "tests/test_classify.py",
        "tests/test_v2.py",
        "tests/test_vision_model.py",
    },
    ("workload", "llm"): workload_package(
        "llm",
        "contract",
        "engine_thread",
        "generation",
        "grammar",
        "kv_cache",
        "logprobs",
        "prefix_cache",
        "responses",
        "routes",
        "sampling",
        "scheduler",
        "schemas",
        "text_stream",
        "tokenizer",
        "tools",
    )
    | {
        f"{PACKAGE}/serving/openai_models.py",
        "tests/test_served_names.py",
        "tests/llm_support.py",
        "tests/test_llm_api.py",
        "tests/test_llm_contract.py",
        "tests/test_llm_model.py",
        "tests/test_llm_prefix_cache.py",
        "tests/test_llm_sampling.py",
        "tests/test_llm_structured.py",
        "tests/test_llm_tools.py",
        "tests/test_llm_responses.py",
        "tests/test_scheduler.py",
        "tests/test_text.py",
    },
    ("workload", "embeddings"): workload_package(
        "embeddings", "contract", "inputs", "routes", "tokens"
    )
    | BATCHING
    | {
        f"{PACKAGE}/serving/openai_models.py",
        "tests/test_served_names.py",
        "tests/test_embeddings.py",
        "tests/test_embeddings_batching.py",
        "tests/test_embeddings_contract.py",
        "tests/test_embeddings_real_model.py",
    },
    ("workload", "tts"): workload_package(
        "tts",
        "audio",
        "chunk_stream",
        "contract",
        "encoders",
        "routes",
        "speech_events",
        "speech_service",
        "text_chunks",
    )
    | BATCHING
    | {
        f"{PACKAGE}/serving/openai_models.py",
        "tests/test_served_names.py",
        "tests/test_speech.py",
        "tests/test_speech_contract.py",
        "tests/test_speech_formats.py",
        "tests/test_speech_model.py",
    },
    ("backend", "onnxruntime"): {
        f"{PACKAGE}/serving/onnxruntime_backend.py",
        "tests/test_device_onnxruntime.py",
    },
    ("backend", "torch"): {f"{PACKAGE}/serving/torch_backend.py", "tests/test_device_torch.py"},
    ("monitoring", "prometheus"): {
        f"{PACKAGE}/metrics.py",
        "tests/test_metrics.py",
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts.test.yml",
        "deploy/grafana/provisioning/datasources/datasource.yml",
        "deploy/grafana/provisioning/dashboards/dashboards.yml",
        "deploy/grafana/dashboards/inference.json",
    },
    ("kubernetes", "yes"): {
        "deploy/k8s/README.md",
        "deploy/k8s/configmap.yaml",
        "deploy/k8s/deployment.yaml",
        "deploy/k8s/hpa.yaml",
        "deploy/k8s/kustomization.yaml",
        "deploy/k8s/pdb.yaml",
        "deploy/k8s/service.yaml",
        "deploy/README.md",
        "deploy/kserve/raw/inferenceservice.yaml",
        "deploy/kserve/raw/kustomization.yaml",
        "deploy/kserve/serverless/inferenceservice.yaml",
        "deploy/kserve/serverless/kustomization.yaml",
    },
}

# Files that need several option values at once.
BY_COMBINATION: list[tuple[dict[str, str], set[str]]] = [
    (
        {"device": "gpu", "monitoring": "prometheus"},
        {f"{PACKAGE}/gpu_metrics.py", "tests/test_gpu_metrics.py"},
    ),
    (
        {"workload": "llm", "backend": "torch"},
        {f"{PACKAGE}/llm/hf_causal_lm.py", "tests/test_hf_model.py"},
    ),
    ({"workload": "embeddings", "backend": "onnxruntime"}, {"scripts/export_minilm_onnx.py"}),
    ({"workload": "llm", "monitoring": "prometheus"}, {f"{PACKAGE}/llm/metrics.py"}),
    ({"kubernetes": "yes", "monitoring": "prometheus"}, {"deploy/k8s/prometheusrule.yaml"}),
    # KEDA's Prometheus triggers and the gateway's endpoint picker read /metrics
    (
        {"kubernetes": "yes", "monitoring": "prometheus"},
        {"deploy/keda/kustomization.yaml", "deploy/keda/scaledobject.yaml"},
    ),
    (
        {"kubernetes": "yes", "monitoring": "prometheus", "workload": "llm"},
        {
            "deploy/gateway/httproute.yaml",
            "deploy/gateway/inferenceobjective.yaml",
            "deploy/gateway/inferencepool.yaml",
            "deploy/gateway/kustomization.yaml",
        },
    ),
]


def expected_files(combination: dict[str, str]) -> set[str]:
    files = set(COMMON)
    for (option, value), paths in BY_OPTION.items():
        if combination.get(option) == value:
            files |= paths
    for values, paths in BY_COMBINATION:
        if all(combination.get(option) == value for option, value in values.items()):
            files |= paths
    return files
