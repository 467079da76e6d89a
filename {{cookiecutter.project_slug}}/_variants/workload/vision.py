"""How the image-classification workload plugs into the workload-agnostic runtime."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from .api import classify, v2
from .runtime.arrays import run_stacked
from .runtime.batcher import BatchObserver
from .runtime.service import InferenceService
from .settings import Settings

# Behind the API key when one is set.
PROTECTED_ROUTERS: list[APIRouter] = [classify.router, v2.router]
# Always open: the protocol's own health probes.
OPEN_ROUTERS: list[APIRouter] = [v2.health_router]


async def create_service(
    settings: Settings, model_factory: Callable[[], Any], observer: BatchObserver | None
) -> InferenceService[Any]:
    """Load the model instances behind a dynamic batcher (not yet warm, not yet ready)."""
    # payloads are (n, 3, H, W) float32 arrays: stacked into one model call, split back
    return await InferenceService.from_settings(settings, model_factory, run_stacked, observer)


async def start_service(service: InferenceService[Any]) -> None:
    """Warm up every batch size, then serve."""
    await service.start(lambda size: service.model.example_batch(size))
