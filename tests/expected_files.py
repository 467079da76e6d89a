"""The exact file set each combination must generate: an independent spec of the post-gen hook."""

from __future__ import annotations

PACKAGE = "src/ai_service"

COMMON = {
    ".dockerignore",
    ".github/workflows/ci.yml",
    ".gitignore",
    "Dockerfile",
    "Makefile",
    "README.md",
    "compose.yaml",
    "pyproject.toml",
    "scripts/bench.py",
    "scripts/make_demo_model.py",
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/__main__.py",
    f"{PACKAGE}/healthcheck.py",
    f"{PACKAGE}/api/__init__.py",
    f"{PACKAGE}/api/bench.py",
    f"{PACKAGE}/api/deps.py",
    f"{PACKAGE}/api/health.py",
    f"{PACKAGE}/api/responses.py",
    f"{PACKAGE}/logging_config.py",
    f"{PACKAGE}/main.py",
    f"{PACKAGE}/middleware.py",
    f"{PACKAGE}/model.py",
    f"{PACKAGE}/runtime/__init__.py",
    f"{PACKAGE}/runtime/batcher.py",
    f"{PACKAGE}/runtime/device.py",
    f"{PACKAGE}/runtime/errors.py",
    f"{PACKAGE}/runtime/oom.py",
    f"{PACKAGE}/runtime/service.py",
    f"{PACKAGE}/runtime/warmup.py",
    f"{PACKAGE}/settings.py",
    f"{PACKAGE}/workload.py",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/test_auth.py",
    "tests/test_fuzz.py",
    "tests/test_health.py",
    "tests/test_healthcheck.py",
    "tests/test_hostile_input.py",
    "tests/test_resilience.py",
    "tests/test_settings.py",
    "tests/workload_requests.py",
}

BY_OPTION: dict[tuple[str, str], set[str]] = {
    ("workload", "vision"): {
        f"{PACKAGE}/api/classify.py",
        f"{PACKAGE}/api/v2.py",
        f"{PACKAGE}/runtime/arrays.py",
        f"{PACKAGE}/runtime/images.py",
        "tests/images.py",
        "tests/test_batcher.py",  # drives the batcher through /v1/classify
        "tests/test_classify.py",
        "tests/test_v2.py",
    },
    ("workload", "llm"): {
        f"{PACKAGE}/api/openai_completions.py",
        f"{PACKAGE}/api/openai_models.py",
        f"{PACKAGE}/api/openai_schemas.py",
        f"{PACKAGE}/runtime/generation.py",
        f"{PACKAGE}/runtime/kv_cache.py",
        f"{PACKAGE}/runtime/sampling.py",
        f"{PACKAGE}/runtime/scheduler.py",
        f"{PACKAGE}/runtime/text_stream.py",
        f"{PACKAGE}/runtime/tokenizer.py",
        "tests/llm_support.py",
        "tests/test_llm_api.py",
        "tests/test_llm_model.py",
        "tests/test_scheduler.py",
        "tests/test_text.py",
    },
    ("workload", "embeddings"): {
        f"{PACKAGE}/api/embeddings.py",
        f"{PACKAGE}/api/openai_models.py",
        f"{PACKAGE}/runtime/tokens.py",
        "scripts/bench.py",
        "tests/test_embeddings.py",
        "tests/test_embeddings_batching.py",
        "tests/test_embeddings_real_model.py",
    },
    ("workload", "tts"): {
        f"{PACKAGE}/api/openai_models.py",
        f"{PACKAGE}/api/speech.py",
        f"{PACKAGE}/runtime/audio.py",
        f"{PACKAGE}/runtime/chunk_stream.py",
        f"{PACKAGE}/runtime/text_chunks.py",
        "tests/test_speech.py",
        "tests/test_speech_model.py",
    },
    ("backend", "onnxruntime"): {
        f"{PACKAGE}/runtime/onnxruntime_backend.py",
        "tests/test_device_onnxruntime.py",
    },
    ("backend", "torch"): {f"{PACKAGE}/runtime/torch_backend.py", "tests/test_device_torch.py"},
    ("monitoring", "prometheus"): {
        f"{PACKAGE}/metrics.py",
        "tests/test_metrics.py",
        "deploy/prometheus/prometheus.yml",
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
        {f"{PACKAGE}/runtime/hf_causal_lm.py", "tests/test_hf_model.py"},
    ),
    ({"workload": "embeddings", "backend": "onnxruntime"}, {"scripts/export_minilm_onnx.py"}),
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
