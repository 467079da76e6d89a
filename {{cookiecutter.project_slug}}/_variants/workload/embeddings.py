"""How the text-embeddings workload plugs into the workload-agnostic runtime."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .api import embeddings, openai_models
from .runtime.tokens import TokenPayload, run_embedding_batch

# Behind the API key when one is set.
PROTECTED_ROUTERS: list[APIRouter] = [embeddings.router, openai_models.router]
OPEN_ROUTERS: list[APIRouter] = []

# Payloads are lists of token-id sequences: embedded in one model call, split back.
run_batch = run_embedding_batch


def example_payload(model: Any, size: int) -> TokenPayload:
    """A warmup payload of ``size`` inputs, as long as MAX_BATCH_TOKENS allows at that size."""
    budget = model.settings.max_batch_tokens // size
    length = max(2, min(model.max_input_tokens, budget))
    text = " ".join(["warm up"] * length)
    ids = model.tokenize([text])[0].ids  # cut to max_input_tokens, special tokens kept
    ids = ids[: length - 1] + ids[-1:]
    return [list(ids) for _ in range(size)]
