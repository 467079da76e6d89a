"""OpenAPI descriptions of the error answers every inference route can give."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid input; `param` names the field"},
    401: {"model": ErrorBody, "description": "Missing or wrong API key"},
    413: {"model": ErrorBody, "description": "Body or image too large"},
    500: {"model": ErrorBody, "description": "The model failed on this batch"},
    503: {"model": ErrorBody, "description": "Queue full, not ready or draining (see Retry-After)"},
    504: {"model": ErrorBody, "description": "No result within REQUEST_TIMEOUT_S"},
}
