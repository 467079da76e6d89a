"""OpenAI-compatible text embeddings: ``POST /v1/embeddings``.

The request and response follow OpenAI's embeddings API, so the official
``openai`` client (which asks for base64 by default) works unchanged. Inputs
are tokenized before they are queued; a request's inputs are split into
payloads that each fit one model call (MAX_BATCH_SIZE inputs, MAX_BATCH_TOKENS
tokens) and the vectors come back in input order.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ..serving import tracing
from ..serving.batch_service import BatchingServiceDep, InferenceService
from ..serving.batcher import Admission
from ..serving.deps import disconnect_waiter, get_settings
from ..serving.errors import InvalidInput
from ..serving.openai_models import check_model
from ..serving.responses import ERROR_RESPONSES, ErrorBody
from .tokens import Tokens, chunk

router = APIRouter(tags=["embeddings"])


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. Unknown fields are refused, not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str] = Field(
        description="A string, or a list of strings embedded independently (token arrays "
        "are not accepted: their ids belong to another tokenizer)."
    )
    model: str | None = Field(None, description="The served model name (GET /v1/models).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`float`: JSON numbers; `base64`: little-endian float32 bytes."
    )
    dimensions: int | None = Field(
        None,
        ge=1,
        description="Only the model's own size, unless the model supports shortening.",
    )
    user: str | None = Field(None, description="End-user id (accepted for compatibility; unused).")

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value:
                raise PydanticCustomError("empty_input", "must not be an empty string")
            if not is_unicode(value):
                raise PydanticCustomError("invalid_input", "is not valid Unicode (lone surrogate)")
            return value
        if not isinstance(value, list) or not value:
            raise PydanticCustomError(
                "invalid_input", "must be a non-empty string or a non-empty list of strings"
            )
        for index, item in enumerate(value):
            if isinstance(item, int | list):
                raise PydanticCustomError(
                    "invalid_input",
                    "item {index}: token arrays are not supported, send text",
                    {"index": index},
                )
            if not isinstance(item, str):
                raise PydanticCustomError(
                    "invalid_input", "item {index} is not a string", {"index": index}
                )
            if not item:
                raise PydanticCustomError(
                    "empty_input", "item {index} is an empty string", {"index": index}
                )
            if not is_unicode(item):
                raise PydanticCustomError(
                    "invalid_input", "item {index} is not valid Unicode", {"index": index}
                )
        return value


def is_unicode(text: str) -> bool:
    """False for text with lone surrogates: JSON allows ``"\\ud800"``, tokenizers refuse it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4", copy=False).tobytes()).decode("ascii")
    return vector.tolist()


def check_lengths(tokens: list[Tokens], limit: int, single: bool) -> None:
    """Refuse inputs that were cut at the token limit (the service runs with TRUNCATE=false)."""
    for index, item in enumerate(tokens):
        if item.truncated:
            param = "input" if single else f"input[{index}]"
            raise InvalidInput(
                f"{param} is longer than the model's limit of {limit} tokens; shorten it, "
                "or run the service with TRUNCATE=true",
                param=param,
                code="context_length_exceeded",
            )


def check_dimensions(dimensions: int | None, model: Any) -> None:
    """Only models trained for it (Matryoshka) may return fewer dimensions than their size."""
    if dimensions is None or dimensions == model.dimensions:
        return
    if not model.supports_dimensions:
        raise InvalidInput(
            f"this model returns {model.dimensions}-dimensional embeddings and does not "
            "support `dimensions`; omit it",
            param="dimensions",
        )
    if dimensions > model.dimensions:
        raise InvalidInput(f"dimensions must be at most {model.dimensions}", param="dimensions")


def shorten(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first ``dimensions`` components and re-normalise."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    shortened = vectors[:, :dimensions]
    return shortened / np.maximum(np.linalg.norm(shortened, axis=1, keepdims=True), 1e-12)


def shared_waiter(request: Request) -> tuple[asyncio.Task[Any], Callable[[], Awaitable[Any]]]:
    """One disconnect watcher for all payloads of a request (only one reader may receive())."""
    task = asyncio.ensure_future(disconnect_waiter(request)())

    async def disconnected() -> None:
        await asyncio.shield(task)  # cancelling one payload's watch leaves the others'

    return task, disconnected


async def embed_all(
    service: InferenceService[Any],
    request: Request,
    payloads: list[list[list[int]]],
    admissions: list[Admission],
) -> np.ndarray:
    """Submit every payload at once; on the first failure the others are cancelled (and skipped)."""
    watcher, disconnected = shared_waiter(request)
    tasks = [
        asyncio.ensure_future(
            service.infer(
                payload,
                len(payload),
                cost=sum(map(len, payload)),
                admission=admission,
                disconnected=disconnected,
            )
        )
        for payload, admission in zip(payloads, admissions, strict=True)
    ]
    try:
        results = await asyncio.gather(*tasks)
    finally:
        for task in (*tasks, watcher):
            task.cancel()
        await asyncio.gather(*tasks, watcher, return_exceptions=True)  # collect, never leak
    return np.concatenate(results, axis=0)


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingResponse,
    summary="Embed one string or a list of strings (OpenAI-compatible)",
    responses={**ERROR_RESPONSES, 404: {"model": ErrorBody, "description": "Unknown `model`"}},
)
async def create_embeddings(
    body: EmbeddingRequest, request: Request, service: BatchingServiceDep
) -> Response:
    settings = get_settings(request)
    if body.model is not None:
        check_model(body.model, settings)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if len(texts) > settings.max_inputs_per_request:
        raise InvalidInput(
            f"input has {len(texts)} items; at most {settings.max_inputs_per_request} per request",
            param="input",
        )
    if len(texts) > service.batcher.max_queue_size:
        raise InvalidInput(
            f"input has {len(texts)} items, more than the queue holds "
            f"(MAX_QUEUE_SIZE={service.batcher.max_queue_size}); send fewer per request",
            param="input",
        )
    model = service.model
    check_dimensions(body.dimensions, model)
    with ExitStack() as held:
        admissions = [held.enter_context(service.admit())]  # 503 at once when full
        tokens = await service.preprocess(model.tokenize, texts)
        if not settings.truncate:
            check_lengths(tokens, model.max_input_tokens, single=isinstance(body.input, str))
        sequences = [item.ids for item in tokens]
        payloads = chunk(sequences, service.batcher.max_batch_size, settings.max_batch_tokens)
        # one admission per payload: each is queued as a request of its own
        admissions += [held.enter_context(service.admit()) for _ in payloads[1:]]
        vectors = await embed_all(service, request, payloads, admissions)
    with tracing.span("encode"):
        vectors = shorten(vectors, body.dimensions)
        prompt_tokens = sum(map(len, sequences))
        answer = {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": encode_vector(vector, body.encoding_format),
                }
                for index, vector in enumerate(vectors)
            ],
            "model": settings.model_name,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
        # built by hand: validating thousands of floats through the response model costs much
        content = json.dumps(answer, separators=(",", ":"))
    return Response(content, media_type="application/json")
