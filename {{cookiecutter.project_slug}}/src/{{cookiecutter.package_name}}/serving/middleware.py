"""ASGI middleware: request id, body limits, in-flight count and per-request metrics.

The body limits: MAX_BODY_BYTES per request, BODY_READ_TIMEOUT_S from the
request's start to its last body byte (408), and MAX_UPLOAD_BYTES_IN_FLIGHT over
all unfinished requests of the process (503).

Written as plain ASGI (not ``BaseHTTPMiddleware``) so it adds microseconds, not
a task per request, and never buffers streamed responses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any, Protocol

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import (
    BodyReadTimeout,
    ClientClosedRequest,
    PayloadTooLarge,
    ServiceError,
    ShuttingDown,
    UploadBudgetExceeded,
    error_body,
)

logger = logging.getLogger("{{ cookiecutter.package_name }}.access")
REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class RequestObserver(Protocol):
    def request_started(self) -> None: ...

    def request_finished(self, route: str, method: str, status: int, duration_s: float) -> None: ...


class NullRequestObserver:
    def request_started(self) -> None:
        pass

    def request_finished(self, route: str, method: str, status: int, duration_s: float) -> None:
        pass


class UploadGuard:
    """The request bodies this process is receiving or holding, bounded; closed at shutdown.

    Bytes are counted as they arrive (not as declared), so a stalled upload holds
    only what it sent; they are released when the request finishes, because the
    route keeps the body until then. ``close()`` (the first SIGTERM) fails every
    upload still arriving with 503 at once: the draining service would refuse
    them anyway once they are in, and waiting for them would overrun the drain.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self.closed = False
        self._waiting: set[asyncio.Task[Any]] = set()

    def take(self, size: int) -> bool:
        if self.held_bytes + size > self.limit_bytes:
            return False
        self.held_bytes += size
        return True

    def release(self, size: int) -> None:
        self.held_bytes -= size

    def close(self) -> None:
        self.closed = True
        for task in self._waiting:
            task.cancel()

    async def receive(self, receive: Receive, timeout_s: float) -> Message:
        """``receive()`` within ``timeout_s``; raises ``ShuttingDown`` once closed."""
        if self.closed:
            raise ShuttingDown()
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            return await asyncio.wait_for(receive(), timeout_s)
        except asyncio.CancelledError:
            if not self.closed:
                raise
            task.uncancel()
            raise ShuttingDown() from None
        finally:
            self._waiting.discard(task)


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_read_timeout_s: float = 30.0,
        uploads: UploadGuard | None = None,
        observer: RequestObserver | None = None,
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_read_timeout_s = body_read_timeout_s
        self.uploads = uploads or UploadGuard(1 << 62)
        self.observer: RequestObserver = observer or NullRequestObserver()
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        status = 500
        response_started = False
        limit = self.max_body_bytes
        uploads = self.uploads
        timeout_s = self.body_read_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        # the scrape is not an inference request: the in-flight gauge would read 1 at idle
        observed = scope["path"] != "/metrics"

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER, request_id)]
            await send(message)

        declared = _content_length(scope)
        if observed:
            self.observer.request_started()
        received = 0
        body_done = False
        try:

            async def guarded_receive() -> Message:
                # Raised inside the app, so the route answers in its own protocol's error
                # shape (the v2 protocol's differs); a declared size over the limit is refused
                # before a byte of the body is read.
                nonlocal received, body_done
                if body_done:  # the body is in: what follows is only the disconnect
                    return await receive()
                if declared is not None and declared > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    message = await uploads.receive(receive, max(remaining, 0.0))
                except TimeoutError:
                    raise BodyReadTimeout(timeout_s) from None
                if message["type"] != "http.request":
                    body_done = True
                    return message
                size = len(message.get("body", b""))
                if received + size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                if not uploads.take(size):
                    raise UploadBudgetExceeded(uploads.limit_bytes)
                received += size
                body_done = not message.get("more_body", False)
                return message

            try:
                await self.app(scope, guarded_receive, send_with_id)
            except (PayloadTooLarge, BodyReadTimeout, UploadBudgetExceeded, ShuttingDown) as exc:
                if response_started:
                    raise
                await _send_error(send_with_id, exc)
            except ClientDisconnect:
                status = ClientClosedRequest.status_code  # nobody reads an answer: log 499
        finally:
            uploads.release(received)
            duration = time.perf_counter() - started
            route = _route_label(scope)
            if observed:
                self.observer.request_finished(route, scope["method"], status, duration)
            if self.access_log:
                logger.info(
                    "%s %s %d %.1f ms",
                    scope["method"],
                    scope["path"],
                    status,
                    duration * 1000,
                    extra={"request_id": request_id.decode(), "status": status, "route": route},
                )


def _request_id(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(value):
            return value
    return uuid.uuid4().hex.encode()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _route_label(scope: Scope) -> str:
    """The matched route template (bounded label values), never the raw path; as OpenAPI
    writes it (``/v1/models/{model}``, not the ``{model:path}`` it was declared with)."""
    route: Any = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"


async def _send_error(send: Send, exc: ServiceError) -> None:
    body = json.dumps(error_body(exc.message, exc.error_type, exc.code, exc.param)).encode()
    headers = [(name.lower().encode(), value.encode()) for name, value in exc.headers.items()]
    await send(
        {
            "type": "http.response.start",
            "status": exc.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
