"""How the text-generation workload plugs into the runtime: OpenAI routes, continuous batching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from .api import openai_completions, openai_models
from .runtime.generation import GenerationService
from .runtime.scheduler import GenerationObserver
from .settings import Settings

# Behind the API key when one is set.
PROTECTED_ROUTERS: list[APIRouter] = [openai_completions.router, openai_models.router]
OPEN_ROUTERS: list[APIRouter] = []


async def create_service(
    settings: Settings, model_factory: Callable[[], Any], observer: GenerationObserver | None
) -> GenerationService:
    """Load the model and its scheduler (not yet warm, not yet ready)."""
    return await GenerationService.load(model_factory, settings, observer)


async def start_service(service: GenerationService) -> None:
    """Warm up prefill and decode at every batch size, start the engine, then serve."""
    await service.start()
