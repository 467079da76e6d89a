"""OpenAI's model listing: ``GET /v1/models`` and ``GET /v1/models/{name}``."""

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
    """A request's ``model`` must name the served model (404 in OpenAI's shape otherwise)."""
    if name != settings.model_name:
        raise ModelNotFound(
            f"the model {name!r} does not exist; this service serves {settings.model_name!r}",
            param="model",
        )


def served_model(request: Request) -> ModelCard:
    return ModelCard(id=get_settings(request).model_name, created=STARTED_AT, owned_by=OWNER)


@router.get("/v1/models", response_model=ModelList, summary="The model this service serves")
async def list_models(request: Request) -> ModelList:
    return ModelList(data=[served_model(request)])


@router.get(
    "/v1/models/{name}",
    response_model=ModelCard,
    summary="One served model",
    responses={404: {"model": ErrorBody, "description": "No such model"}},
)
async def retrieve_model(name: str, request: Request) -> ModelCard:
    check_model(name, get_settings(request))
    return served_model(request)
