"""How the text-embeddings workload plugs into the workload-agnostic runtime."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from .api import embeddings, openai_models
from .runtime.batcher import BatchObserver
from .runtime.service import InferenceService
from .runtime.tokens import TokenPayload, run_embedding_batch
from .settings import Settings

# Behind the API key when one is set.
PROTECTED_ROUTERS: list[APIRouter] = [embeddings.router, openai_models.router]
OPEN_ROUTERS: list[APIRouter] = []


async def create_service(
    settings: Settings, model_factory: Callable[[], Any], observer: BatchObserver | None
) -> InferenceService[Any]:
    """Load the model instances behind a batcher bounded by items and by tokens."""
    # payloads are lists of token-id sequences: embedded in one model call, split back
    return await InferenceService.from_settings(
        settings,
        model_factory,
        run_embedding_batch,
        observer,
        max_batch_cost=settings.max_batch_tokens,
    )


async def start_service(service: InferenceService[Any]) -> None:
    """Warm up every batch size (as long as MAX_BATCH_TOKENS allows), then serve."""
    await service.start(lambda size: example_payload(service.model, size))


def example_payload(model: Any, size: int) -> TokenPayload:
    """A warmup payload of ``size`` inputs, as long as MAX_BATCH_TOKENS allows at that size."""
    budget = model.settings.max_batch_tokens // size
    length = max(2, min(model.max_input_tokens, budget))
    text = " ".join(["warm up"] * length)
    ids = model.tokenize([text])[0].ids  # cut to max_input_tokens, special tokens kept
    ids = ids[: length - 1] + ids[-1:]
    return [list(ids) for _ in range(size)]
