"""Native image classification: ``POST /v1/classify`` -> top-k labels.

The image comes either as a multipart upload (field ``file``, what browsers
and ``curl -F`` send) or as the raw request body with ``Content-Type:
image/jpeg`` or ``image/png`` (``curl --data-binary``), which skips multipart
parsing altogether: the cheaper path for programs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..serving import tracing
from ..serving.batch_service import BatchingServiceDep
from ..serving.deps import disconnect_waiter, get_settings
from ..serving.errors import InvalidInput, ServiceError
from ..serving.responses import ERROR_RESPONSES, ErrorBody


class UnsupportedMediaType(ServiceError):
    status_code = 415
    error_type = "invalid_request_error"
    code = "unsupported_media_type"


router = APIRouter(tags=["classification"])

RAW_IMAGE_TYPES = ("image/jpeg", "image/png", "application/octet-stream")
IMAGE_SCHEMA = {"type": "string", "format": "binary", "description": "A JPEG or PNG image"}
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": IMAGE_SCHEMA},
                "required": ["file"],
            }
        },
        **{media_type: {"schema": IMAGE_SCHEMA} for media_type in RAW_IMAGE_TYPES},
    },
}


class Prediction(BaseModel):
    label: str
    score: float = Field(
        description="The label's score from the model's postprocess (the demo model: its "
        "softmax probability, 0..1)"
    )


class ClassifyResponse(BaseModel):
    model: str
    predictions: list[Prediction]


def top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> list[Prediction]:
    """The ``k`` best-scored labels, best first (``scores``: one per label)."""
    k = min(k, len(labels))
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [Prediction(label=labels[i], score=float(scores[i])) for i in best]


async def read_image(request: Request) -> bytes:
    """The image bytes of a multipart (field ``file``) or raw-body upload."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type in RAW_IMAGE_TYPES:
        return await request.body()
    if media_type != "multipart/form-data":
        raise UnsupportedMediaType(
            f"send the image as multipart/form-data (field `file`) or as a raw "
            f"image/jpeg or image/png body, not {media_type or 'no content type'}",
            param="file",
        )
    try:
        form = await request.form(max_files=1, max_fields=10)
    except HTTPException as exc:  # malformed multipart, too many parts
        raise InvalidInput(f"invalid multipart body: {exc.detail}", param="file") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("field `file` with the image is required", param="file")
        return await upload.read()
    finally:
        await form.close()


@router.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    summary="Classify one JPEG or PNG image",
    responses={
        **ERROR_RESPONSES,
        415: {"model": ErrorBody, "description": "Neither multipart nor a raw image body"},
    },
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def classify(
    request: Request,
    service: BatchingServiceDep,
    k: Annotated[int, Query(ge=1, le=100, description="How many labels to return")] = 5,
) -> ClassifyResponse:
    settings = get_settings(request)
    model = service.model
    service.check_room()  # a full queue answers 503 before the upload is read
    data = await read_image(request)  # an upload holds no queue slot while it arrives
    with service.admit() as admission:
        row = await service.preprocess(model.preprocess, data)  # decode + resize off the loop
        outputs = await service.infer(
            row[np.newaxis], 1, admission=admission, disconnected=disconnect_waiter(request)
        )
    with tracing.span("postprocess"):
        # the model's own: softmax, sigmoid, identity...
        predictions = top_k(model.postprocess(outputs[0]), model.labels, k)
    return ClassifyResponse(model=settings.model_name, predictions=predictions)
