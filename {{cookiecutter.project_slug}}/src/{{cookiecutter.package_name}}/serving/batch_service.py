"""The loaded model instances behind their dynamic batcher: the ``Service`` of batching workloads.

A route serves one inference like this::

    service.check_room()                       # 503 at once when full or not ready
    body = await request.body()                # arriving uploads hold no queue slot
    with service.admit() as admission:          # 503 when it filled up meanwhile
        payload = await service.preprocess(model.preprocess, body)  # off the event loop
        result = await service.infer(payload, admission=admission,
                                     disconnected=disconnect_waiter(request))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Generic, ParamSpec, TypeVar

from fastapi import Depends

from ..settings import Settings
from . import tracing
from .batcher import (
    Admission,
    Batcher,
    BatchObserver,
    ClientDisconnected,
    RunBatch,
    model_threads,
)
from .cpus import usable_cpus
from .deps import get_service
from .errors import ClientClosedRequest
from .lifecycle import Readiness
from .warmup import warmup_batch_sizes

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT")
P = ParamSpec("P")
R = TypeVar("R")


def preprocess_threads() -> int:
    """Threads for decoding and resizing: image codecs release the GIL, so one per core."""
    return max(2, usable_cpus())


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
        example_payload: Callable[[ModelT, int], Any],
        observer: BatchObserver | None = None,
        max_batch_cost: int | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.models = list(models)
        self.example_payload = example_payload
        self.request_timeout_s = request_timeout_s
        self.batcher: Batcher[ModelT] = Batcher(
            run_batch,
            self.models,
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_s,
            max_queue_size=max_queue_size,
            observer=observer,
            max_batch_cost=max_batch_cost,
            executor=executor,
        )
        self._preprocess_pool = ThreadPoolExecutor(
            max_workers=preprocess_threads(), thread_name_prefix="preprocess"
        )
        self.readiness = Readiness()
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
        # Loaded on the threads that will run them: torch's OpenMP pool (libgomp) keeps one
        # pool per thread that computes, and once pools outnumber the CPUs its workers sleep
        # between kernels. A load's own checks on another thread made a 1-sentence embedding
        # call 3.8x slower on 2 cores (0.79 -> 2.98 ms).
        executor = model_threads(instances)
        loop = asyncio.get_running_loop()
        models = []
        for _ in range(instances):
            model = factory()
            await loop.run_in_executor(executor, model.load)  # type: ignore[attr-defined]
            models.append(model)
        service = cls(models, executor=executor, **kwargs)
        service.load_seconds = time.perf_counter() - started
        logger.info("model loaded in %.3f s (%d instance(s))", service.load_seconds, instances)
        return service

    @classmethod
    async def from_settings(
        cls,
        settings: Settings,
        factory: Callable[[], ModelT],
        run_batch: RunBatch,
        example_payload: Callable[[ModelT, int], Any],
        observer: BatchObserver | None,
        max_batch_cost: int | None = None,
    ) -> InferenceService[ModelT]:
        """Load MODEL_INSTANCES copies behind a batcher sized by the batching settings."""
        return await cls.load(
            factory,
            settings.model_instances,
            run_batch=run_batch,
            example_payload=example_payload,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_batch_wait_s,
            max_queue_size=settings.max_queue_size,
            request_timeout_s=settings.request_timeout_s,
            observer=observer,
            max_batch_cost=max_batch_cost,
        )

    async def start(self) -> None:
        """Warm up, start the batching workers and report ready."""
        device = getattr(self.model, "device", None)
        # cuDNN autotunes per input shape: on a GPU every batch size is warmed, not a sample
        every_size = bool(getattr(device, "is_cuda", False))
        self.warmup_seconds = await warm_up(
            self.batcher, lambda size: self.example_payload(self.model, size), every_size=every_size
        )
        self.batcher.start()
        self.readiness.ready = True

    def check_room(self) -> None:
        """503 at once when ``admit()`` would refuse; holds nothing (call before the upload)."""
        self.readiness.check()
        self.batcher.check_room()

    def admit(self) -> Admission:
        """Admit a request whose body is read; 503 at once when full or not serving."""
        self.readiness.check()
        admission = self.batcher.admit()
        tracing.event("admitted", **{"queue.depth": self.batcher.depth})
        return admission

    async def run_off_loop(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run CPU-heavy work on the preprocess threads, never on the event loop."""
        loop = asyncio.get_running_loop()
        if kwargs:
            return await loop.run_in_executor(
                self._preprocess_pool, lambda: function(*args, **kwargs)
            )
        return await loop.run_in_executor(self._preprocess_pool, function, *args)

    async def preprocess(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run CPU-heavy input handling (decode, resize, parse) off the event loop."""
        with tracing.span("preprocess"):
            return await self.run_off_loop(function, *args, **kwargs)

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
        if admission is None:
            self.readiness.check()
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
        """Refuse new work (readiness 503), finish queued and running batches."""
        self.readiness.draining = True
        finished = await self.batcher.drain(timeout_s)
        self._preprocess_pool.shutdown(wait=False, cancel_futures=True)
        logger.info(
            "drained %s", "cleanly" if finished else f"with work left after {timeout_s:g} s"
        )
        return finished


async def warm_up(
    batcher: Batcher[Any], example_payload: Callable[[int], Any], *, every_size: bool = False
) -> float:
    """Run every warmup batch size on every model instance; return the seconds it took."""
    started = time.perf_counter()
    sizes = warmup_batch_sizes(batcher.max_batch_size, every_size=every_size)
    for index in range(batcher.instance_count):
        for size in sizes:
            size_started = time.perf_counter()
            await batcher.run_direct([example_payload(size)], instance_index=index)
            logger.debug(
                "warmup: instance %d, batch of %d in %.1f ms",
                index,
                size,
                (time.perf_counter() - size_started) * 1000,
            )
    elapsed = time.perf_counter() - started
    logger.info(
        "warmup done in %.3f s: batch sizes %s on %d instance(s)",
        elapsed,
        sizes if len(sizes) <= 8 else f"1..{sizes[-1]}",
        batcher.instance_count,
        extra={"warmup_seconds": round(elapsed, 4), "batch_sizes": sizes},
    )
    return elapsed


# What a batching workload's route declares to receive the service.
BatchingServiceDep = Annotated[InferenceService[Any], Depends(get_service)]
