"""The errors a request can end with, and the one JSON body they all share.

Every error answers ``{"error": {"message", "type", "param", "code"}}`` (the
OpenAI error shape, which OpenAI clients already parse); ``param`` names the
offending field when there is one. Routes raise these; ``install_error_handlers``
turns them, validation errors and unexpected exceptions into responses.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

logger = logging.getLogger(__name__)


class StartupFailed(RuntimeError):
    """Start-up failed; the reason has already been logged in one line."""


class ServiceError(Exception):
    """Base class: an error with an HTTP status and a machine-readable code."""

    status_code = 500
    error_type = "server_error"
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}
        if code is not None:
            self.code = code


class InvalidInput(ServiceError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_input"


class Unauthorized(ServiceError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"

    def __init__(self, message: str = "missing or invalid API key") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ModelNotFound(ServiceError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(ServiceError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class BodyReadTimeout(ServiceError):
    """The body did not arrive within BODY_READ_TIMEOUT_S (a stalled or very slow upload)."""

    status_code = 408
    error_type = "timeout_error"
    code = "body_read_timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"the request body did not arrive within BODY_READ_TIMEOUT_S ({timeout_s:g} s)",
            headers={"Connection": "close"},
        )


class ModelFailure(ServiceError):
    """The model raised while computing this request's batch."""

    status_code = 500
    code = "model_error"


class Overloaded(ServiceError):
    """The queue is full: retry later, preferably on another replica."""

    status_code = 503
    error_type = "overloaded_error"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after_s)})


class NotReady(Overloaded):
    code = "not_ready"


class ShuttingDown(NotReady):
    """An upload still arriving when the drain began: the draining service cannot take it."""

    def __init__(self) -> None:
        super().__init__(
            "the service is shutting down; retry on another replica", code="shutting_down"
        )
        self.headers["Connection"] = "close"


class UploadBudgetExceeded(Overloaded):
    """The bodies being held by unfinished requests already fill MAX_UPLOAD_BYTES_IN_FLIGHT."""

    code = "upload_budget_exceeded"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(
            f"request bodies in flight exceed MAX_UPLOAD_BYTES_IN_FLIGHT ({limit_bytes} bytes)"
        )
        self.headers["Connection"] = "close"


class OutOfMemory(Overloaded):
    code = "out_of_memory"


class RequestTimeout(ServiceError):
    status_code = 504
    error_type = "timeout_error"
    code = "request_timeout"


class ClientClosedRequest(ServiceError):
    """The client went away; nobody reads this answer (status 499, as nginx logs it)."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_closed_request"


def error_body(
    message: str, error_type: str, code: str, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(exc: ServiceError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.message, exc.error_type, exc.code, exc.param),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def _field_name(location: tuple[Any, ...]) -> str | None:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":  # its location is a character offset, not a field
        reason = first.get("ctx", {}).get("error", first["msg"])
        offset = first["loc"][-1]
        return error_response(_invalid_json(f"{reason} (at character {offset})"))
    param = _field_name(tuple(first.get("loc", ())))
    message = f"{param}: {first['msg']}" if param else str(first["msg"])
    return error_response(InvalidInput(message, param=param))


def _invalid_json(reason: str) -> InvalidInput:
    return InvalidInput(f"the body is not valid JSON: {reason}", code="json_invalid")


def _unreadable_body(cause: BaseException) -> ServiceError:
    """Why FastAPI could not read a JSON body (it answers only "error parsing the body")."""
    if isinstance(cause, ServiceError):  # a body limit, hit while the body was being read
        return cause
    if isinstance(cause, ClientDisconnect):  # the client left mid-upload
        return ClientClosedRequest("the client closed the connection during the upload")
    if isinstance(cause, UnicodeDecodeError):
        reason = f"it is not UTF-8 (byte 0x{cause.object[cause.start]:02x} at {cause.start})"
    elif isinstance(cause, RecursionError):
        reason = "it is nested too deeply"
    else:
        reason = type(cause).__name__
    return _invalid_json(reason)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI raises HTTPException(400) from whatever stopped it reading the body
        return error_response(_unreadable_body(exc.__cause__))
    status = exc.status_code
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, f"http_{status}")
    error_type = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(
        error_body(str(exc.detail), error_type, code),
        status_code=status,
        headers=getattr(exc, "headers", None),
    )


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    """The client left while its body was being read: no traceback, nobody reads the answer."""
    return Response(status_code=ClientClosedRequest.status_code)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(ServiceError("internal server error"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected_error)
