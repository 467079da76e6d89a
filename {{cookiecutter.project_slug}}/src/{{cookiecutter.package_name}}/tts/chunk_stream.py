"""Send one request's parts through the batcher in order, a few at a time (streamed responses)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..serving.batcher import Admission
from ..serving.errors import ClientClosedRequest, RequestTimeout
from .speech_service import SpeechService


class ChunkStream:
    """The results of ``payloads`` in order, with at most ``in_flight`` queued or computing.

    The first payload is admitted like any request (503 while the queue is
    full, the model loading or the service draining); the later ones are
    continuations that skip the queue bound, so a stream that started is not
    cut off by load. While open, the stream holds the service's drain back
    until it is done. Each part meets the batcher's other work, so concurrent
    streams share batches. Always ``close()`` it: pending parts are cancelled,
    and the batcher drops cancelled parts before they reach the model.
    """

    def __init__(
        self,
        service: SpeechService,
        payloads: Sequence[Any],
        *,
        in_flight: int,
        admission: Admission | None = None,
    ) -> None:
        self._service = service
        self._admission = admission  # the first part's, taken before the input was prepared
        self._payloads = list(payloads)
        self._in_flight = max(1, in_flight)
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._submitted = 0
        self._open = False
        try:
            self._top_up()
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self._payloads)

    async def next(self, disconnected: Callable[[], Awaitable[Any]] | None = None) -> Any:
        """The next part's result, within the request timeout (and before the client leaves)."""
        if not self._pending:
            raise IndexError("every part of this stream was already returned")
        result = await wait_result(
            self._pending.popleft(), self._service.request_timeout_s, disconnected
        )
        self._top_up()
        return result

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._submitted = len(self._payloads)
        if self._open:
            self._open = False
            self._service.stream_closed()

    def _top_up(self) -> None:
        while self._submitted < len(self._payloads) and len(self._pending) < self._in_flight:
            continuation = self._submitted > 0
            self._pending.append(
                self._service.submit(
                    self._payloads[self._submitted],
                    1,
                    admission=None if continuation else self._admission,
                    continuation=continuation,
                )
            )
            self._submitted += 1
            if not self._open:
                self._open = True
                self._service.stream_opened()


async def wait_result(
    future: asyncio.Future[Any],
    timeout_s: float,
    disconnected: Callable[[], Awaitable[Any]] | None = None,
) -> Any:
    """The future's result within ``timeout_s`` (else 504); 499 if ``disconnected`` ends first."""
    watcher = asyncio.ensure_future(disconnected()) if disconnected is not None else None
    waiters = {future} if watcher is None else {future, watcher}
    try:
        done, _ = await asyncio.wait(
            waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        if watcher is not None:
            watcher.cancel()
    if future in done:
        return future.result()
    future.cancel()
    if watcher is not None and watcher in done:
        raise ClientClosedRequest("the client closed the connection")
    raise RequestTimeout(f"no result within the request timeout of {timeout_s:g} s")
