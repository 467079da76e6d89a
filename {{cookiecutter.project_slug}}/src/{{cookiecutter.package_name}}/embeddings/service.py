"""How the text-embeddings workload plugs into the app: its routers and its service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from ..serving import openai_models
from ..serving.batch_service import InferenceService
from ..serving.batcher import BatchObserver
from ..settings import Settings
from . import routes
from .contract import require_attributes
from .tokens import TokenPayload, run_embedding_batch

# Behind the API key when one is set.
PROTECTED_ROUTERS: list[APIRouter] = [routes.router, openai_models.router]
OPEN_ROUTERS: list[APIRouter] = []


async def create_service(
    settings: Settings, model_factory: Callable[[], Any], observer: BatchObserver | None
) -> InferenceService[Any]:
    """Load the model instances behind a batcher bounded by items and by tokens."""
    # payloads are lists of token-id sequences: embedded in one model call, split back
    return await InferenceService.from_settings(
        settings,
        lambda: require_attributes(model_factory()),
        run_embedding_batch,
        example_payload,
        observer,
        max_batch_cost=settings.max_batch_tokens,
    )


def example_payload(model: Any, size: int) -> TokenPayload:
    """A warmup payload of ``size`` inputs, as long as MAX_BATCH_TOKENS allows at that size."""
    budget = model.settings.max_batch_tokens // size
    length = max(2, min(model.max_input_tokens, budget))
    text = " ".join(["warm up"] * length)
    ids = model.tokenize([text])[0].ids  # cut to max_input_tokens, special tokens kept
    ids = ids[: length - 1] + ids[-1:]
    return [list(ids) for _ in range(size)]
