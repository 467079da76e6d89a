"""The tts workload's service: the batching service plus streams that queue chunk by chunk.

A speech request is split into sentence chunks; ``ChunkStream`` submits them
one after another, the first admitted like any request and the later ones as
continuations (they skip the queue bound: a stream that started is not cut off
by load). Drain waits for open streams first, since their next chunks still
need the batcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from fastapi import Depends

from ..serving import tracing
from ..serving.batch_service import InferenceService
from ..serving.batcher import Admission
from ..serving.deps import get_service

logger = logging.getLogger(__name__)


class SpeechService(InferenceService[Any]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open_streams = 0
        self._streams_closed = asyncio.Event()
        self._streams_closed.set()

    def submit(
        self,
        payload: Any,
        size: int = 1,
        *,
        admission: Admission | None = None,
        continuation: bool = False,
    ) -> asyncio.Future[Any]:
        """Queue a payload without waiting for it (a stream queues its chunks as it goes).

        The first part of a request is admitted like any request (503 when the queue
        is full or the service is not serving), with the ``admission`` it took before
        its input was prepared; a ``continuation`` (the next part of a stream already let
        in) is queued even when the queue is full or draining.
        """
        if not continuation:
            self.readiness.check()
        future = self.batcher.submit(payload, size, admission=admission, continuation=continuation)
        if not continuation and admission is None:  # admit() records its own event
            tracing.event("admitted", **{"queue.depth": self.batcher.depth})
        return future

    def stream_opened(self) -> None:
        """A request that queues more work as it goes (a stream) started; drain waits for it."""
        self._open_streams += 1
        self._streams_closed.clear()

    def stream_closed(self) -> None:
        self._open_streams -= 1
        if self._open_streams == 0:
            self._streams_closed.set()

    async def drain(self, timeout_s: float) -> bool:
        """Let open streams queue their last chunks, then drain the batcher."""
        self.readiness.draining = True
        started = time.perf_counter()
        if self._open_streams:
            try:
                await asyncio.wait_for(self._streams_closed.wait(), timeout_s)
            except TimeoutError:
                logger.warning("%d stream(s) still open after %g s", self._open_streams, timeout_s)
        remaining = max(0.0, timeout_s - (time.perf_counter() - started))
        return await super().drain(remaining) and self._open_streams == 0


# What the speech route declares to receive the service.
SpeechServiceDep = Annotated[SpeechService, Depends(get_service)]
