"""OpenAI's model listing: ``GET /v1/models`` and ``GET /v1/models/{name}``; served names.

One model, served under every name of SERVED_MODEL_NAMES (aliases, ``org/name``
forms), as vLLM's ``--served-model-name``: a request may name any of them, the
listing shows each, and answers carry the first (MODEL_NAME).
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ..settings import Settings
from .deps import get_settings
from .errors import ModelNotFound
from .responses import ErrorBody

router = APIRouter(tags=["models"])
# `created` is when this process started: the API wants a timestamp, not a training date
STARTED_AT = int(time.time())
OWNER = "{{ cookiecutter.author | replace('\\', '\\\\') | replace('"', '\\"') }}"


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def check_model(name: str, settings: Settings) -> None:
    """A request's ``model`` must be a served name (404 in OpenAI's shape otherwise)."""
    if name not in settings.served_model_names:
        served = ", ".join(repr(served) for served in settings.served_model_names)
        raise ModelNotFound(
            f"the model {name!r} does not exist; this service serves {served}", param="model"
        )


def model_card(name: str) -> ModelCard:
    return ModelCard(id=name, created=STARTED_AT, owned_by=OWNER)


@router.get("/v1/models", response_model=ModelList, summary="Every name the model is served under")
async def list_models(request: Request) -> ModelList:
    return ModelList(data=[model_card(name) for name in get_settings(request).served_model_names])


@router.get(
    # `:path`: a name may hold a slash (`org/name`), which clients send as %2F or as is
    "/v1/models/{model:path}",
    response_model=ModelCard,
    summary="One served name",
    responses={404: {"model": ErrorBody, "description": "No such model"}},
)
async def retrieve_model(model: str, request: Request) -> ModelCard:
    check_model(model, get_settings(request))
    return model_card(model)
