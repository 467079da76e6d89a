"""OpenAI-compatible text embeddings: ``POST /v1/embeddings``.

The request and response follow OpenAI's embeddings API, so the official
``openai`` client (which asks for base64 by default) works unchanged. Texts
are tokenized before they are queued, token arrays are checked against the
model's vocabulary (``inputs.py``); either way a request's inputs are split into
payloads that each fit one model call (MAX_BATCH_SIZE inputs, MAX_BATCH_TOKENS
tokens) and the vectors come back in input order.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from ..serving import tracing
from ..serving.batch_service import BatchingServiceDep, InferenceService
from ..serving.batcher import Admission
from ..serving.deps import disconnect_waiter, get_settings
from ..serving.errors import InvalidInput
from ..serving.openai_models import check_model
from ..serving.responses import ERROR_RESPONSES, ErrorBody
from .inputs import Inputs, parse_input, token_inputs
from .tokens import Tokens, chunk

router = APIRouter(tags=["embeddings"])


# `input` is checked in the route (inputs.parse_input), not by pydantic: its errors name
# the item (`input[2][5]`), which a validation error's location cannot carry into `param`
RawInput = Annotated[
    Any,
    PlainValidator(
        lambda value: value, json_schema_input_type=str | list[str] | list[int] | list[list[int]]
    ),
]


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. Unknown fields are refused, not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    input: RawInput = Field(
        description="A string, a list of strings, a list of token ids (one input) or a list "
        "of such lists, each embedded independently. Token ids are taken as given: send "
        "what the model's tokenizer produces, special tokens included."
    )
    model: str | None = Field(None, description="A served model name (GET /v1/models).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`float`: JSON numbers; `base64`: little-endian float32 bytes."
    )
    dimensions: int | None = Field(
        None,
        ge=1,
        description="Shorten each vector to this many dimensions (re-normalised): only "
        "the sizes of the model's `matryoshka_dimensions`, besides its own size.",
    )
    user: str | None = Field(None, description="End-user id (accepted for compatibility; unused).")


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


def check_lengths(tokens: list[Tokens], limit: int, inputs: Inputs) -> None:
    """Refuse inputs that were cut at the token limit (the service runs with TRUNCATE=false)."""
    for index, item in enumerate(tokens):
        if item.truncated:
            param = inputs.name(index)
            raise InvalidInput(
                f"{param} is longer than the model's limit of {limit} tokens; shorten it, "
                "or run the service with TRUNCATE=true",
                param=param,
                code="context_length_exceeded",
            )


def check_dimensions(dimensions: int | None, model: Any) -> None:
    """Only models trained for it (Matryoshka) return fewer dimensions, at the sizes they name."""
    if dimensions is None or dimensions in (model.dimensions, *model.matryoshka_dimensions):
        return
    if not model.matryoshka_dimensions:
        raise InvalidInput(
            f"this model returns {model.dimensions}-dimensional embeddings and does not "
            "support `dimensions` (it was not trained to be shortened); omit it",
            param="dimensions",
        )
    sizes = ", ".join(map(str, sorted({*model.matryoshka_dimensions, model.dimensions})))
    raise InvalidInput(
        f"dimensions must be one of the sizes this model was trained for: {sizes}",
        param="dimensions",
    )


def shorten(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """Keep the first ``dimensions`` components, re-normalised when the model normalises."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    shortened = vectors[:, :dimensions]
    if not normalize:
        return shortened
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
    summary="Embed strings or token arrays (OpenAI-compatible)",
    responses={**ERROR_RESPONSES, 404: {"model": ErrorBody, "description": "Unknown `model`"}},
)
async def create_embeddings(
    body: EmbeddingRequest, request: Request, service: BatchingServiceDep
) -> Response:
    settings = get_settings(request)
    if body.model is not None:
        check_model(body.model, settings)
    inputs = parse_input(body.input)
    if len(inputs.items) > settings.max_inputs_per_request:
        raise InvalidInput(
            f"input has {len(inputs.items)} items; at most {settings.max_inputs_per_request} "
            "per request",
            param="input",
        )
    if len(inputs.items) > service.batcher.max_queue_size:
        raise InvalidInput(
            f"input has {len(inputs.items)} items, more than the queue holds "
            f"(MAX_QUEUE_SIZE={service.batcher.max_queue_size}); send fewer per request",
            param="input",
        )
    model = service.model
    check_dimensions(body.dimensions, model)
    with ExitStack() as held:
        admissions = [held.enter_context(service.admit())]  # 503 at once when full
        if inputs.token_arrays:
            tokens = token_inputs(inputs, model.vocab_size, model.max_input_tokens)
        else:
            tokens = await service.preprocess(model.tokenize, inputs.items)
        if not settings.truncate:
            check_lengths(tokens, model.max_input_tokens, inputs)
        sequences = [item.ids for item in tokens]
        payloads = chunk(sequences, service.batcher.max_batch_size, settings.max_batch_tokens)
        # one admission per payload: each is queued as a request of its own
        admissions += [held.enter_context(service.admit()) for _ in payloads[1:]]
        vectors = await embed_all(service, request, payloads, admissions)
    with tracing.span("encode"):
        vectors = shorten(vectors, body.dimensions, model.normalize)
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
