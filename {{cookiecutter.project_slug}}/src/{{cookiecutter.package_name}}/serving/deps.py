"""Dependencies shared by the routes: the service, the API key check, disconnect detection."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from ..settings import Settings
from .errors import NotReady, Unauthorized
from .lifecycle import Service


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_service(request: Request) -> Service:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool,
    # a thread hop per request for a dictionary lookup
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("the model is still loading")
    return service


async def require_api_key(request: Request) -> None:
    """Check ``Authorization: Bearer <key>`` when API_KEY is set (constant-time compare)."""
    expected = request.app.state.api_key
    if expected is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    # compare_digest runs in time independent of where the strings differ
    if not (
        scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), expected)
    ):
        raise Unauthorized()


def disconnect_waiter(request: Request) -> Callable[[], Awaitable[Any]]:
    """A coroutine factory that returns once the client has disconnected.

    Only valid after the body has been read: the server then answers
    ``receive()`` only with ``http.disconnect``.
    """

    async def wait() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    return wait
