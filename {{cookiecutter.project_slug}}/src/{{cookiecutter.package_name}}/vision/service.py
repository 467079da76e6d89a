"""How the image-classification workload plugs into the app: its routers and its service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from ..serving.batch_service import InferenceService
from ..serving.batcher import BatchObserver
from ..settings import Settings
from . import classify, v2
from .arrays import run_stacked

# Behind the API key when one is set.
PROTECTED_ROUTERS: list[APIRouter] = [classify.router, v2.router]
# Always open: the protocol's own health probes.
OPEN_ROUTERS: list[APIRouter] = [v2.health_router]


async def create_service(
    settings: Settings, model_factory: Callable[[], Any], observer: BatchObserver | None
) -> InferenceService[Any]:
    """Load the model instances behind a dynamic batcher (not yet warm, not yet ready)."""
    # payloads are (n, *input_shape) arrays: stacked into one model call, split back
    return await InferenceService.from_settings(
        settings,
        model_factory,
        run_stacked,
        lambda model, size: model.example_batch(size),
        observer,
    )
