"""Dynamic batching behind a bounded queue.

Requests ``submit`` a payload of ``size`` items (a v2 tensor may carry several
rows). One worker per model instance takes work from a shared FIFO queue and
dispatches a batch as soon as ``max_batch_size`` items wait, or when the oldest
queued item has waited ``max_batch_wait_s``, whichever comes first. The model
runs in a worker thread, so the event loop keeps accepting and parsing requests
while it computes; the next batch fills up meanwhile.

Guarantees:
- every result goes to exactly the request that submitted it (results are
  matched by position and checked for count);
- a full queue refuses at once (``Overloaded``: 503 + Retry-After) instead of
  growing without bound;
- a request that timed out or whose client went away is cancelled, and a
  cancelled item is dropped before it reaches the model;
- an exception fails only the batch it happened in; an out-of-memory error
  splits the batch in halves and retries down to single items.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from .errors import (
    InvalidInput,
    ModelFailure,
    NotReady,
    OutOfMemory,
    Overloaded,
    RequestTimeout,
    ServiceError,
)
from .oom import is_out_of_memory, release_cached_memory

logger = logging.getLogger(__name__)

InstanceT = TypeVar("InstanceT")
RunBatch = Callable[[Any, list[Any]], Sequence[Any]]


class ClientDisconnected(Exception):
    """The client closed the connection before its result was ready."""


class BatchObserver(Protocol):
    """Receives the batcher's events; the metrics module implements it."""

    def queue_depth(self, depth: int) -> None: ...

    def batch_dispatched(self, size: int, queue_waits_s: Sequence[float]) -> None: ...

    def batch_computed(self, size: int, compute_s: float) -> None: ...


class NullObserver:
    def queue_depth(self, depth: int) -> None:
        pass

    def batch_dispatched(self, size: int, queue_waits_s: Sequence[float]) -> None:
        pass

    def batch_computed(self, size: int, compute_s: float) -> None:
        pass


@dataclass(slots=True, eq=False)
class _WorkItem:
    payload: Any
    size: int
    future: asyncio.Future[Any]
    enqueued_at: float


@dataclass(slots=True)
class _Failure:
    """Marks an item whose computation failed (kept apart from real results)."""

    error: ServiceError


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    skipped_cancelled: int = 0
    oom_splits: int = 0
    failures: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class Batcher(Generic[InstanceT]):
    """Queue + batching workers for one model (one worker per instance)."""

    def __init__(
        self,
        run_batch: RunBatch,
        instances: Sequence[InstanceT],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue_size: int,
        observer: BatchObserver | None = None,
        keep_batch_sizes: bool = False,
    ) -> None:
        if not instances:
            raise ValueError("at least one model instance is needed")
        self._run_batch = run_batch
        self._instances = list(instances)
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue_size = max_queue_size
        self._observer: BatchObserver = observer or NullObserver()
        self._queue: deque[_WorkItem] = deque()
        self._queued_rows = 0
        self._executing = 0
        self._closed = False
        self._not_empty = asyncio.Event()
        self._full = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []
        self._executor = ThreadPoolExecutor(
            max_workers=len(self._instances), thread_name_prefix="model"
        )
        self.stats = BatcherStats()
        self._keep_batch_sizes = keep_batch_sizes

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        for index, instance in enumerate(self._instances):
            task = asyncio.get_running_loop().create_task(
                self._worker(instance), name=f"batcher-worker-{index}"
            )
            self._workers.append(task)

    async def run_direct(self, payloads: list[Any], instance_index: int = 0) -> Sequence[Any]:
        """Run one batch on an instance outside the queue (warmup)."""
        loop = asyncio.get_running_loop()
        instance = self._instances[instance_index]
        return await loop.run_in_executor(self._executor, self._run_batch, instance, payloads)

    @property
    def instance_count(self) -> int:
        return len(self._instances)

    @property
    def depth(self) -> int:
        """Items waiting in the queue (not yet dispatched)."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._executing > 0

    async def drain(self, timeout_s: float) -> bool:
        """Stop taking work, finish what is queued and running; True if all finished."""
        self._closed = True
        self._not_empty.set()
        self._full.set()
        finished = True
        if self._workers:
            _, pending = await asyncio.wait(self._workers, timeout=timeout_s)
            finished = not pending
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(NotReady("the service shut down before this ran"))
        self._executor.shutdown(wait=False, cancel_futures=True)
        return finished

    # --- request side ----------------------------------------------------------
    def submit(self, payload: Any, size: int = 1, *, admitted: bool = False) -> asyncio.Future[Any]:
        """Queue a payload of ``size`` items; the future resolves to its result.

        ``admitted`` marks the continuation of a request that was already let
        in (a speech stream's next chunk): it skips the queue bound, so work
        that has started is finished rather than cut off halfway.
        """
        if self._closed:
            raise NotReady("the service is shutting down")
        if size > self.max_batch_size:
            raise InvalidInput(
                f"batch of {size} items exceeds the maximum batch size {self.max_batch_size}",
                code="batch_too_large",
            )
        if len(self._queue) >= self.max_queue_size and not admitted:
            raise Overloaded(f"request queue is full ({self.max_queue_size} waiting); retry later")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_WorkItem(payload, size, future, loop.time()))
        self._queued_rows += size
        self._idle.clear()
        self._observer.queue_depth(len(self._queue))
        self._not_empty.set()
        if self._queued_rows >= self.max_batch_size:
            self._full.set()
        return future

    async def infer(
        self,
        payload: Any,
        size: int = 1,
        *,
        timeout_s: float,
        disconnected: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """Submit and wait for the result, bounded by ``timeout_s``.

        ``disconnected`` is awaited alongside the result; if it completes first,
        the client has gone, the item is cancelled (skipped before compute) and
        ``ClientDisconnected`` is raised.
        """
        future = self.submit(payload, size)
        if disconnected is None:
            try:
                return await asyncio.wait_for(future, timeout_s)
            except TimeoutError:
                raise RequestTimeout(
                    f"no result within the request timeout of {timeout_s:g} s"
                ) from None
        watcher = asyncio.ensure_future(disconnected())
        try:
            done, _ = await asyncio.wait(
                (future, watcher), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            watcher.cancel()
        if future in done:
            return future.result()
        future.cancel()
        if watcher in done:
            raise ClientDisconnected()
        raise RequestTimeout(f"no result within the request timeout of {timeout_s:g} s")

    # --- worker side -----------------------------------------------------------
    async def _worker(self, instance: InstanceT) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            await self._execute(instance, batch)

    async def _next_batch(self) -> list[_WorkItem] | None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closed:
                    return None
                self._not_empty.clear()
                await self._not_empty.wait()
            if self._queued_rows < self.max_batch_size and self.max_wait_s > 0:
                delay = self._queue[0].enqueued_at + self.max_wait_s - loop.time()
                if delay > 0 and not self._closed:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), delay)
            batch = self._take()
            if batch:
                return batch

    def _take(self) -> list[_WorkItem]:
        batch: list[_WorkItem] = []
        rows = 0
        while self._queue and rows + self._queue[0].size <= self.max_batch_size:
            item = self._queue.popleft()
            self._queued_rows -= item.size
            if item.future.done():  # cancelled: timed out or client gone
                self.stats.skipped_cancelled += 1
                continue
            batch.append(item)
            rows += item.size
        if self._queued_rows < self.max_batch_size:
            self._full.clear()
        self._observer.queue_depth(len(self._queue))
        return batch

    async def _execute(self, instance: InstanceT, batch: list[_WorkItem]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        rows = sum(item.size for item in batch)
        self._observer.batch_dispatched(rows, [now - item.enqueued_at for item in batch])
        self._executing += 1
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(
                self._executor, self._run_splitting_on_oom, instance, [i.payload for i in batch]
            )
        except Exception as exc:  # the model raised: fail this batch only
            logger.exception("model call failed for a batch of %d items", rows)
            self.stats.failures += 1
            error = ModelFailure(f"the model failed on this batch: {type(exc).__name__}")
            results = [_Failure(error)] * len(batch)
        finally:
            self._executing -= 1
        self._observer.batch_computed(rows, time.perf_counter() - started)
        self.stats.batches += 1
        self.stats.items += rows
        if self._keep_batch_sizes:
            self.stats.batch_sizes.append(rows)
        for item, result in zip(batch, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, _Failure):
                item.future.set_exception(result.error)
            else:
                item.future.set_result(result)
        if not self._queue and self._executing == 0:
            self._idle.set()

    def _run_splitting_on_oom(self, instance: InstanceT, payloads: list[Any]) -> list[Any]:
        """Run a batch; on out-of-memory, retry its halves, then fail single items."""
        try:
            results = list(self._run_batch(instance, payloads))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            release_cached_memory()
            if len(payloads) == 1:
                logger.warning("out of memory on a single item; answering 503")
                return [_Failure(OutOfMemory("out of memory while computing this request"))]
            self.stats.oom_splits += 1
            middle = len(payloads) // 2
            logger.warning(
                "out of memory on a batch of %d payloads; retrying as %d + %d",
                len(payloads),
                middle,
                len(payloads) - middle,
            )
            return self._run_splitting_on_oom(
                instance, payloads[:middle]
            ) + self._run_splitting_on_oom(instance, payloads[middle:])
        if len(results) != len(payloads):
            raise RuntimeError(
                f"run_batch returned {len(results)} results for {len(payloads)} payloads"
            )
        return results

    async def wait_idle(self) -> None:
        await self._idle.wait()
