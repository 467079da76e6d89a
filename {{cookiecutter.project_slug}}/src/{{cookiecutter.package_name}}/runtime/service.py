"""The loaded model, its batcher and the readiness state, as one object the routes use.

A route serves one inference like this::

    with service.admit() as admission:          # 503 at once when full or not ready
        body = await request.body()
        payload = await service.preprocess(model.preprocess, body)  # off the event loop
        result = await service.infer(payload, admission=admission,
                                     disconnected=disconnect_waiter(request))
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from ..settings import Settings
from .batcher import Admission, Batcher, BatchObserver, ClientDisconnected, RunBatch
from .errors import NotReady, ServiceError
from .warmup import warm_up

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT")
P = ParamSpec("P")
R = TypeVar("R")


class ClientClosedRequest(ServiceError):
    """The client went away; nobody reads this answer (status 499, as nginx logs it)."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_closed_request"


@dataclass
class Readiness:
    ready: bool = False
    draining: bool = False

    @property
    def serving(self) -> bool:
        return self.ready and not self.draining


def preprocess_threads() -> int:
    """Threads for decoding and resizing: image codecs release the GIL, so one per core."""
    return max(2, os.cpu_count() or 1)


class InferenceService(Generic[ModelT]):
    def __init__(
        self,
        models: Sequence[ModelT],
        run_batch: RunBatch,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue_size: int,
        request_timeout_s: float,
        observer: BatchObserver | None = None,
        max_batch_cost: int | None = None,
    ) -> None:
        self.models = list(models)
        self.request_timeout_s = request_timeout_s
        self.batcher: Batcher[ModelT] = Batcher(
            run_batch,
            self.models,
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_s,
            max_queue_size=max_queue_size,
            observer=observer,
            max_batch_cost=max_batch_cost,
        )
        self._preprocess_pool = ThreadPoolExecutor(
            max_workers=preprocess_threads(), thread_name_prefix="preprocess"
        )
        self.readiness = Readiness()
        self._open_streams = 0
        self._streams_closed = asyncio.Event()
        self._streams_closed.set()
        self.load_seconds = 0.0
        self.warmup_seconds = 0.0

    @property
    def model(self) -> ModelT:
        """The first instance: for metadata and pre-processing, which are stateless."""
        return self.models[0]

    @classmethod
    async def load(
        cls, factory: Callable[[], ModelT], instances: int, **kwargs: Any
    ) -> InferenceService[ModelT]:
        started = time.perf_counter()
        models = []
        for _ in range(instances):
            model = factory()
            await asyncio.to_thread(model.load)  # type: ignore[attr-defined]
            models.append(model)
        service = cls(models, **kwargs)
        service.load_seconds = time.perf_counter() - started
        logger.info("model loaded in %.3f s (%d instance(s))", service.load_seconds, instances)
        return service

    @classmethod
    async def from_settings(
        cls,
        settings: Settings,
        factory: Callable[[], ModelT],
        run_batch: RunBatch,
        observer: BatchObserver | None,
        max_batch_cost: int | None = None,
    ) -> InferenceService[ModelT]:
        """Load MODEL_INSTANCES copies behind a batcher sized by the batching settings."""
        return await cls.load(
            factory,
            settings.model_instances,
            run_batch=run_batch,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_batch_wait_s,
            max_queue_size=settings.max_queue_size,
            request_timeout_s=settings.request_timeout_s,
            observer=observer,
            max_batch_cost=max_batch_cost,
        )

    async def start(self, example_payload: Callable[[int], Any]) -> None:
        """Warm up, start the batching workers and report ready."""
        device = getattr(self.model, "device", None)
        # cuDNN autotunes per input shape: on a GPU every batch size is warmed, not a sample
        every_size = bool(getattr(device, "is_cuda", False))
        self.warmup_seconds = await warm_up(self.batcher, example_payload, every_size=every_size)
        self.batcher.start()
        self.readiness.ready = True

    def admit(self) -> Admission:
        """Admit a request before reading its body; 503 at once when full or not serving."""
        if not self.readiness.serving:
            raise NotReady(
                "the service is shutting down" if self.readiness.draining else "not ready"
            )
        return self.batcher.admit()

    def submit(
        self, payload: Any, size: int = 1, *, continuation: bool = False
    ) -> asyncio.Future[Any]:
        """Queue a payload without waiting for it (a stream queues its chunks as it goes).

        The first part of a request is admitted like any request (503 when the queue
        is full or the service is not serving); a ``continuation`` (the next part of a
        stream already let in) is queued even when the queue is full or draining.
        """
        if not continuation and not self.readiness.serving:
            raise NotReady(
                "the service is shutting down" if self.readiness.draining else "not ready"
            )
        return self.batcher.submit(payload, size, continuation=continuation)

    def stream_opened(self) -> None:
        """A request that queues more work as it goes (a stream) started; drain waits for it."""
        self._open_streams += 1
        self._streams_closed.clear()

    def stream_closed(self) -> None:
        self._open_streams -= 1
        if self._open_streams == 0:
            self._streams_closed.set()

    async def preprocess(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run CPU-heavy input handling (decode, resize, parse) off the event loop."""
        loop = asyncio.get_running_loop()
        if kwargs:
            return await loop.run_in_executor(
                self._preprocess_pool, lambda: function(*args, **kwargs)
            )
        return await loop.run_in_executor(self._preprocess_pool, function, *args)

    async def infer(
        self,
        payload: Any,
        size: int = 1,
        *,
        cost: int = 0,
        admission: Admission | None = None,
        disconnected: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """Batch the payload with others and return its own result (``cost``: see the batcher)."""
        if admission is None and not self.readiness.serving:
            raise NotReady(
                "the service is shutting down" if self.readiness.draining else "not ready"
            )
        try:
            return await self.batcher.infer(
                payload,
                size,
                cost=cost,
                timeout_s=self.request_timeout_s,
                disconnected=disconnected,
                admission=admission,
            )
        except ClientDisconnected:
            raise ClientClosedRequest("the client closed the connection") from None

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new work (readiness 503), finish open streams, queued and running batches."""
        self.readiness.draining = True
        started = time.perf_counter()
        if self._open_streams:  # their next chunks still need the batcher
            try:
                await asyncio.wait_for(self._streams_closed.wait(), timeout_s)
            except TimeoutError:
                logger.warning("%d stream(s) still open after %g s", self._open_streams, timeout_s)
        remaining = max(0.0, timeout_s - (time.perf_counter() - started))
        finished = await self.batcher.drain(remaining) and self._open_streams == 0
        self._preprocess_pool.shutdown(wait=False, cancel_futures=True)
        logger.info(
            "drained %s", "cleanly" if finished else f"with work left after {timeout_s:g} s"
        )
        return finished
