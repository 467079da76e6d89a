"""Shape the generated project to the chosen options: move variants into place, prune the rest.

Runs inside the generated project directory. No network, no installs: what a
user runs next is `make install model test`.

Files that exist in several versions live in ``_variants/<kind>/<key>.py``
(key = workload, or workload_backend) and one of them is moved to its place
(``VARIANTS``); ``OVERRIDES`` name variants that replace a shared file only
for the options that have one. Files that belong to one option value are
listed in ``OWNED_BY`` and removed when another value was chosen. A path
listed under several options exists only when every one of them has a value
that lists it (GPU metrics: device=gpu and monitoring=prometheus; the Hugging
Face loader: workload=llm and backend=torch). Directories left empty are
removed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

OPTIONS: dict[str, str] = json.loads(
    r"""{{ {
        "package_name": cookiecutter.package_name,
        "workload": cookiecutter.workload,
        "backend": cookiecutter.backend,
        "device": cookiecutter.device,
        "batching": cookiecutter.batching,
        "monitoring": cookiecutter.monitoring,
        "kubernetes": cookiecutter.kubernetes,
    } | tojson }}"""
)

PACKAGE = f"src/{OPTIONS['package_name']}"

# destination -> variant file (formatted with the options); every combination has one
VARIANTS: dict[str, str] = {
    f"{PACKAGE}/model.py": "_variants/model/{workload}_{backend}.py",
    "scripts/make_demo_model.py": "_variants/demo_model/{workload}_{backend}.py",
    # how the workload-agnostic resilience and hostile-input tests make this workload's requests
    "tests/workload_requests.py": "_variants/workload_requests/{workload}.py",
}
# Like VARIANTS, but placed only where the template has a variant for the chosen options
# (a workload without its own benchmark yet gets none; only onnxruntime embeddings
# services need the script that exports the real MiniLM to ONNX).
OPTIONAL_VARIANTS: dict[str, str] = {
    "scripts/bench.py": "_variants/bench/{workload}.py",
    "scripts/export_minilm_onnx.py": "_variants/export/{workload}_{backend}.py",
}

# shared serving pieces that only some workloads use
BATCHING = [f"{PACKAGE}/serving/batcher.py", f"{PACKAGE}/serving/batch_service.py"]
# GET /v1/models and the served names of the OpenAI workloads, and their test
OPENAI_MODELS = [f"{PACKAGE}/serving/openai_models.py", "tests/test_served_names.py"]

# option -> value -> paths that exist only for that value
OWNED_BY: dict[str, dict[str, list[str]]] = {
    "workload": {
        # each workload's package (routes, protocol, scheduling, codecs) and its tests;
        # the dynamic batcher serves every workload but llm (continuous batching instead)
        "vision": [
            f"{PACKAGE}/vision",
            *BATCHING,
            "tests/images.py",
            "tests/test_batcher.py",  # drives the batcher through /v1/classify
            "tests/test_classify.py",
            "tests/test_v2.py",
            "tests/test_vision_model.py",  # the contract's load-time checks, the demo's answers
        ],
        "llm": [
            f"{PACKAGE}/llm",
            *OPENAI_MODELS,
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
            "tests/test_hf_model.py",  # with backend=torch only (listed there too)
            # the inference gateway (with kubernetes=yes and monitoring=prometheus only)
            "deploy/gateway",
        ],
        "embeddings": [
            f"{PACKAGE}/embeddings",
            *BATCHING,
            *OPENAI_MODELS,
            "tests/test_embeddings.py",
            "tests/test_embeddings_batching.py",
            "tests/test_embeddings_contract.py",
            "tests/test_embeddings_real_model.py",
        ],
        "tts": [
            f"{PACKAGE}/tts",
            *BATCHING,
            *OPENAI_MODELS,
            "tests/test_speech.py",
            "tests/test_speech_contract.py",
            "tests/test_speech_formats.py",
            "tests/test_speech_model.py",
        ],
    },
    "backend": {
        "onnxruntime": [
            f"{PACKAGE}/serving/onnxruntime_backend.py",
            "tests/test_device_onnxruntime.py",
        ],
        "torch": [
            f"{PACKAGE}/serving/torch_backend.py",
            "tests/test_device_torch.py",
            f"{PACKAGE}/llm/hf_causal_lm.py",  # with workload=llm only
            "tests/test_hf_model.py",
        ],
    },
    "device": {
        "gpu": [f"{PACKAGE}/gpu_metrics.py", "tests/test_gpu_metrics.py"],
    },
    "monitoring": {
        "prometheus": [
            f"{PACKAGE}/metrics.py",
            f"{PACKAGE}/llm/metrics.py",  # with workload=llm only
            f"{PACKAGE}/gpu_metrics.py",
            "tests/test_metrics.py",
            "tests/test_gpu_metrics.py",
            "deploy/prometheus",
            "deploy/grafana",
            "deploy/k8s/prometheusrule.yaml",  # with kubernetes=yes only
            # KEDA and the gateway's endpoint picker read the service's /metrics (with
            # kubernetes=yes only; the gateway with workload=llm too)
            "deploy/keda",
            "deploy/gateway",
        ],
    },
    "kubernetes": {
        "yes": ["deploy/README.md", "deploy/k8s", "deploy/kserve", "deploy/keda", "deploy/gateway"],
    },
}


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def place_variants(root: Path, options: dict[str, str]) -> None:
    for destination, pattern in VARIANTS.items():
        source = root / pattern.format(**options)
        target = root / destination
        if not source.is_file():
            raise SystemExit(f"ERROR: the template has no variant {pattern.format(**options)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        source.replace(target)
    for destination, pattern in OPTIONAL_VARIANTS.items():
        source = root / pattern.format(**options)
        if source.is_file():
            target = root / destination
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
    remove(root / "_variants")


def prune(root: Path, options: dict[str, str]) -> None:
    for option, owners in OWNED_BY.items():
        chosen = set(owners.get(options[option], []))
        for value, paths in owners.items():
            if value != options[option]:
                for path in paths:
                    if path not in chosen:
                        remove(root / path)
    remove_empty_dirs(root)


def remove_empty_dirs(root: Path) -> None:
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()


def main() -> int:
    root = Path.cwd()
    place_variants(root, OPTIONS)
    prune(root, OPTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
