"""How the text-generation workload plugs into the app: OpenAI routes, continuous batching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from ..serving import openai_models
from ..settings import Settings
from . import responses, routes
from .generation import GenerationService
from .scheduler import GenerationObserver

# Behind the API key when one is set.
PROTECTED_ROUTERS: list[APIRouter] = [routes.router, responses.router, openai_models.router]
OPEN_ROUTERS: list[APIRouter] = []


async def create_service(
    settings: Settings, model_factory: Callable[[], Any], observer: GenerationObserver | None
) -> GenerationService:
    """Load the model and its scheduler (not yet warm, not yet ready)."""
    return await GenerationService.load(model_factory, settings, observer)
