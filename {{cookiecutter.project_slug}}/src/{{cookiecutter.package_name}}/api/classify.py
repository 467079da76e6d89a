"""Native image classification: ``POST /v1/classify`` (multipart upload) -> top-k labels."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..runtime.service import InferenceService
from .deps import disconnect_waiter, get_service, get_settings
from .responses import ERROR_RESPONSES

router = APIRouter(tags=["classification"])


class Prediction(BaseModel):
    label: str
    score: float = Field(description="Softmax probability, 0..1")


class ClassifyResponse(BaseModel):
    model: str
    predictions: list[Prediction]


def top_k(logits: np.ndarray, labels: list[str], k: int) -> list[Prediction]:
    shifted = np.exp(logits - logits.max())
    probabilities = shifted / shifted.sum()
    k = min(k, len(labels))
    best = np.argpartition(-probabilities, k - 1)[:k]
    best = best[np.argsort(-probabilities[best], kind="stable")]
    return [Prediction(label=labels[i], score=float(probabilities[i])) for i in best]


@router.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    summary="Classify one JPEG or PNG image",
    responses=ERROR_RESPONSES,
)
async def classify(
    request: Request,
    file: Annotated[UploadFile, File(description="A JPEG or PNG image")],
    k: Annotated[int, Query(ge=1, le=100, description="How many labels to return")] = 5,
    service: InferenceService[Any] = Depends(get_service),
) -> ClassifyResponse:
    settings = get_settings(request)
    data = await file.read()
    model = service.model
    row = await run_in_threadpool(model.preprocess, data)
    logits = await service.infer(row[np.newaxis], 1, disconnected=disconnect_waiter(request))
    return ClassifyResponse(
        model=settings.model_name, predictions=top_k(logits[0], model.labels, k)
    )
