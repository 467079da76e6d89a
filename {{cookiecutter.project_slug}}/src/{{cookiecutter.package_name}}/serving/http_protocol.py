"""uvicorn's httptools protocol with the limits a public server needs and uvicorn lacks.

Measured on uvicorn 0.54 (httptools and h11 alike): no timeout for a request's
headers (1,000 slowloris connections sending a header byte a second all stayed
open), no limit on header count or size with httptools (100,000 headers, and a
128 MB header that took 13.7 s to parse and stalled the readiness probe, both
answered 200), and h11's only limit (``h11_max_incomplete_event_size``) answers
400, not 431, and does not bound the count. ``timeout_keep_alive`` bounds only
the idle time *between* requests, and is used as it is.

This subclass adds, per connection:

* a header deadline (HEADER_TIMEOUT_S) from connect, or from the end of the
  previous response, to the end of the request's headers: 408, then close;
* MAX_URL_BYTES (414), MAX_HEADERS and MAX_HEADER_BYTES (431), checked as the
  bytes arrive, so an oversized header costs at most one read, not a parse of
  all of it;
* MAX_CONNECTIONS: beyond it requests answer 503 except the health probes,
  which keep HEALTH_RESERVE more connections (uvicorn's ``limit_concurrency``
  refuses the probes too, and a failing liveness probe restarts the pod).

Each refusal is one plain response with ``Connection: close``, sent before any
application code runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ..settings import Settings

logger = logging.getLogger(__name__)

# connections beyond MAX_CONNECTIONS kept for health probes (and refused everything else)
HEALTH_RESERVE = 32
HEALTH_PATHS = (b"/health/", b"/v2/health/")
LINGER_S = 0.5  # how long a refused connection's remaining bytes are read and dropped
REASONS = {
    503: b"Service Unavailable",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


class HeaderLimits:
    """The limits, carried by the uvicorn config as ``config.guard`` (set by __main__)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        max_bytes: int,
        max_url_bytes: int,
        max_headers: int,
        max_connections: int,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_url_bytes = max_url_bytes
        self.max_headers = max_headers
        self.max_connections = max_connections

    @classmethod
    def from_settings(cls, settings: Settings) -> HeaderLimits:
        return cls(
            timeout_s=settings.header_timeout_s,
            max_bytes=settings.max_header_bytes,
            max_url_bytes=settings.max_url_bytes,
            max_headers=settings.max_headers,
            max_connections=settings.max_connections,
        )


class _Refused(Exception):
    """Raised in a parser callback; httptools re-raises it as HttpParserCallbackError."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ClosingTransport:
    """The connection's transport as one request's cycle sees it, with its own ``close()``."""

    def __init__(self, transport: asyncio.Transport, close: Callable[[], None]) -> None:
        self._transport = transport
        self.close = close

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: HeaderLimits = config.guard  # type: ignore[attr-defined]
        self._awaiting_headers = True
        self._header_bytes = 0
        self._header_count = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._refusal: _Refused | None = None
        self._discarding = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections + HEALTH_RESERVE:
            self._refuse(503, "too many open connections")
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
            if self._header_timer is None:  # the first byte after a keep-alive pause
                self._arm_header_timer()
        self._refusal = None
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refusal is not None:  # raised by one of the callbacks below
                self._refuse(self._refusal.status, self._refusal.message)
                return
            logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        if self._awaiting_headers and self._header_bytes > self.limits.max_bytes:
            # the headers are still incomplete after more bytes than they may take
            self._refuse(431, f"request headers exceed {self.limits.max_bytes} bytes")

    # parser callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            limit = self.limits.max_url_bytes
            self._refusal = _Refused(414, f"request target exceeds {limit} bytes")
            raise self._refusal

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refusal = _Refused(431, f"more than {self.limits.max_headers} request headers")
            raise self._refusal
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._cancel_header_timer()
        if len(self.connections) > self.limits.max_connections and not self.url.startswith(
            HEALTH_PATHS
        ):  # the last HEALTH_RESERVE connections serve only the probes
            self._refusal = _Refused(503, "too many open connections")
            raise self._refusal
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:
            # an answer sent before the whole body arrived (413, 408, 503) closes lingering
            def close() -> None:
                if cycle.more_body:
                    self._linger_then_close()
                else:
                    self.transport.close()

            cycle.transport = _ClosingTransport(self.transport, close)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # the next request's headers get their own deadline, counted from their first byte
        # (until then the keep-alive timeout bounds the idle connection)
        self._awaiting_headers = True
        self._header_bytes = 0

    # helpers ----------------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and not self.transport.is_closing():
            self._refuse(408, f"request headers not received within {self.limits.timeout_s:g} s")

    def _refuse(self, status: int, message: str) -> None:
        self._cancel_header_timer()
        if self.transport.is_closing():
            return
        logger.info("refused a connection's request: %d %s", status, message)
        body = message.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
            + body
        )
        self._linger_then_close()

    def _linger_then_close(self) -> None:
        """Half-close and drop what still arrives for a moment, then close.

        Closing with unread bytes in the socket sends a reset, and the client
        loses the answer it has not read yet (a lingering close, as nginx does).
        """
        if self.transport.is_closing() or self._discarding:
            return
        self._discarding = True
        with contextlib.suppress(RuntimeError, AttributeError):
            self.transport.resume_reading()  # uvicorn pauses reading above its high water mark
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def shutdown(self) -> None:
        if not self._discarding:  # a lingering connection closes on its own, soon
            super().shutdown()
