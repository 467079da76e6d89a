"""How the image-classification workload plugs into the workload-agnostic runtime."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .api import classify, v2
from .runtime.arrays import run_stacked

# Behind the API key when one is set.
PROTECTED_ROUTERS: list[APIRouter] = [classify.router, v2.router]
# Always open: the protocol's own health probes.
OPEN_ROUTERS: list[APIRouter] = [v2.health_router]

# Payloads are (n, 3, H, W) float32 arrays: stacked into one model call, split back.
run_batch = run_stacked


def example_payload(model: Any, size: int) -> Any:
    """A warmup payload of ``size`` items."""
    return model.example_batch(size)
