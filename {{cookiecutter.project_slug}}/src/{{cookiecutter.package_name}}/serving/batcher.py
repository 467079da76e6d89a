"""Dynamic batching behind a bounded queue.

A request first takes an ``Admission`` (``admit()``), before its body is read:
a full queue or a closed batcher refuses it there, at once and for the price
of a few comparisons. The admitted request reads and pre-processes its input,
then ``infer``s a payload of ``size`` items (a v2 tensor may carry several rows).

One worker per model instance takes work from a shared FIFO queue and
dispatches a batch as soon as one of these holds:

- ``max_batch_size`` items wait (a full batch goes at once);
- the oldest queued item has waited ``max_wait_s``;
- no admitted request is still on its way to the queue (all of them are
  queued already), so waiting could not fill the batch: at low load a lone
  request is dispatched at once instead of paying ``max_wait_s``.

The model runs in a worker thread (one per instance), so the event loop keeps
reading and parsing requests while it computes, and the next batch fills up
meanwhile.

Guarantees:
- every result goes to exactly the request that submitted it (results are
  matched by position and checked for count);
- a full queue refuses at once (``Overloaded``: 503 + Retry-After) instead of
  growing without bound;
- a request not answered within its timeout gets ``RequestTimeout`` (504); one
  whose client went away gets ``ClientDisconnected``; either way its item is
  dropped before it reaches the model;
- an exception fails only the batch it happened in; an out-of-memory error
  splits the batch in halves and retries down to single payloads, and a single
  payload that still does not fit answers ``OutOfMemory`` (503).

Optional cost budget: a payload may also carry a ``cost`` (for text models, its
tokens) and ``max_batch_cost`` then bounds a batch's total cost as well as its
item count. A payload that costs more than the budget on its own still runs,
alone in its batch, so nothing starves.
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

from . import tracing
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

    def batch_dispatched(self, size: int, queue_waits_s: list[float]) -> None: ...

    def batch_computed(self, size: int, compute_s: float) -> None: ...


class NullObserver:
    def queue_depth(self, depth: int) -> None:
        pass

    def batch_dispatched(self, size: int, queue_waits_s: list[float]) -> None:
        pass

    def batch_computed(self, size: int, compute_s: float) -> None:
        pass


@dataclass(slots=True, eq=False)
class _WorkItem:
    payload: Any
    size: int
    future: asyncio.Future[Any]
    enqueued_at: float
    cost: int = 0
    trace: tracing.Captured | None = None  # the request's trace context (tracing on)


@dataclass(slots=True)
class _Failure:
    """Marks an item whose computation failed (kept apart from real results)."""

    error: ServiceError


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    skipped: int = 0  # timed out or disconnected before compute
    oom_splits: int = 0
    failures: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class Admission:
    """A request admitted to the batcher but not yet queued (reading, pre-processing).

    While it is open it holds one queue slot and tells the batcher that one
    more item is on its way. ``infer`` turns it into a queued item; leaving
    the ``with`` block without queueing (bad input, an error) releases it.
    """

    __slots__ = ("_batcher", "_open")

    def __init__(self, batcher: Batcher[Any]) -> None:
        self._batcher = batcher
        self._open = True

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        if self._open:
            self._open = False
            self._batcher._arrival_left()

    async def infer(
        self,
        payload: Any,
        size: int = 1,
        *,
        cost: int = 0,
        timeout_s: float,
        disconnected: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """Queue the payload and wait for its result (see ``Batcher.infer``)."""
        if not self._open:
            raise RuntimeError("this admission was already used")
        return await self._batcher.infer(
            payload,
            size,
            cost=cost,
            timeout_s=timeout_s,
            disconnected=disconnected,
            admission=self,
        )


def model_threads(instances: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=instances, thread_name_prefix="model")


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
        max_batch_cost: int | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        """``executor``: the threads that call the model, one per instance (by default new
        ones); pass those that loaded the instances (see ``InferenceService.load``)."""
        if not instances:
            raise ValueError("at least one model instance is needed")
        self._run_batch = run_batch
        self._instances = list(instances)
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue_size = max_queue_size
        self.max_batch_cost = max_batch_cost
        self._observer: BatchObserver = observer or NullObserver()
        self._queue: deque[_WorkItem] = deque()
        self._queued_rows = 0
        self._queued_cost = 0
        self._arriving = 0  # admitted requests not yet queued
        self._accepting = True  # admit() and bare submit() take new work
        self._closed = False  # workers stop once the queue is empty
        self._no_arrivals = asyncio.Event()
        self._no_arrivals.set()
        self._not_empty = asyncio.Event()
        self._dispatch_now = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._executor = executor or model_threads(len(self._instances))
        self.stats = BatcherStats()
        self._keep_batch_sizes = keep_batch_sizes

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for index, instance in enumerate(self._instances):
            task = loop.create_task(self._worker(instance), name=f"batcher-worker-{index}")
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
        """Requests waiting in the queue (not yet dispatched)."""
        return len(self._queue)

    async def drain(self, timeout_s: float) -> bool:
        """Stop taking work, finish what is admitted, queued and running; True if all did.

        Requests admitted before the drain (still reading their body) may still
        queue; new ones are refused. Whatever is left after ``timeout_s`` fails.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._accepting = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_arrivals.wait(), timeout_s)
        self._closed = True
        self._not_empty.set()
        self._dispatch_now.set()
        finished = True
        if self._workers:
            remaining = max(0.0, deadline - loop.time())
            _, pending = await asyncio.wait(self._workers, timeout=remaining)
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
    def check_room(self) -> None:
        """Refuse at once where ``admit()`` would, taking nothing.

        For a route to call before it reads an upload: the upload holds no slot
        while it arrives (a stalled one would hold it until its deadline).
        """
        if not self._accepting:
            raise NotReady("the service is shutting down")
        if self._queued_rows + self._arriving >= self.max_queue_size:
            raise self._overloaded()

    def admit(self) -> Admission:
        """Admit one request once its body is read, or refuse it at once.

        Raises ``NotReady`` while draining and ``Overloaded`` (503 with
        Retry-After) when the queue and the requests already on their way to
        it fill ``max_queue_size``.
        """
        if not self._accepting:
            raise NotReady("the service is shutting down")
        if self._queued_rows + self._arriving >= self.max_queue_size:
            raise self._overloaded()
        self._arriving += 1
        self._no_arrivals.clear()
        return Admission(self)

    def _arrival_left(self) -> None:
        self._arriving -= 1
        if self._arriving == 0:
            self._no_arrivals.set()
            if self._queue:
                self._dispatch_now.set()  # nothing else is coming: do not wait for it

    def _overloaded(self) -> Overloaded:
        return Overloaded(f"request queue is full ({self.max_queue_size} items); retry later")

    def submit(
        self,
        payload: Any,
        size: int = 1,
        *,
        cost: int = 0,
        admission: Admission | None = None,
        continuation: bool = False,
    ) -> asyncio.Future[Any]:
        """Queue a payload of ``size`` items (and ``cost``); the future resolves to its result.

        ``continuation`` marks the next part of a request that was let in earlier
        (a speech stream's next chunk): it skips the queue bound and is taken
        until the workers stop, so work that has started is not cut off halfway.
        """
        if self._closed or (admission is None and not continuation and not self._accepting):
            raise NotReady("the service is shutting down")
        if size > self.max_batch_size:
            raise InvalidInput(
                f"batch of {size} items exceeds the maximum batch size {self.max_batch_size}",
                code="batch_too_large",
            )
        others_arriving = self._arriving - (1 if admission is not None else 0)
        if self._queued_rows + others_arriving + size > self.max_queue_size and not continuation:
            raise self._overloaded()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_WorkItem(payload, size, future, loop.time(), cost, tracing.capture()))
        self._queued_rows += size
        self._queued_cost += cost
        self._observer.queue_depth(len(self._queue))
        if admission is not None:
            admission.release()  # after queueing, so the batcher sees the item, not a gap
        self._not_empty.set()
        if self._full_batch_waiting():
            self._dispatch_now.set()
        return future

    async def infer(
        self,
        payload: Any,
        size: int = 1,
        *,
        cost: int = 0,
        timeout_s: float,
        disconnected: Callable[[], Awaitable[Any]] | None = None,
        admission: Admission | None = None,
    ) -> Any:
        """Submit and wait for the result, bounded by ``timeout_s``.

        ``disconnected`` is run alongside: if it returns first, the client has
        gone, the item is dropped before compute and ``ClientDisconnected`` is
        raised. A timeout raises ``RequestTimeout`` and drops the item too.
        """
        future = self.submit(payload, size, cost=cost, admission=admission)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout_s, _time_out, future, timeout_s)
        watcher: asyncio.Task[Any] | None = None
        if disconnected is not None:
            watcher = loop.create_task(disconnected())
            watcher.add_done_callback(lambda task: _client_gone(future, task))
        try:
            return await future
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()

    # --- worker side -----------------------------------------------------------
    async def _worker(self, instance: InstanceT) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            await self._execute(instance, batch)

    def _should_wait(self) -> bool:
        return (
            not self._full_batch_waiting()
            and self._arriving > 0
            and self.max_wait_s > 0
            and not self._closed
        )

    async def _next_batch(self) -> list[_WorkItem] | None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closed:
                    return None
                self._not_empty.clear()
                await self._not_empty.wait()
            if self._should_wait():
                delay = self._queue[0].enqueued_at + self.max_wait_s - loop.time()
                if delay > 0:
                    self._dispatch_now.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._dispatch_now.wait(), delay)
            batch = self._take()
            if batch:
                return batch

    def _full_batch_waiting(self) -> bool:
        """Enough is queued to fill a batch, by items or by cost."""
        if self._queued_rows >= self.max_batch_size:
            return True
        return self.max_batch_cost is not None and self._queued_cost >= self.max_batch_cost

    def _fits(self, batch: list[_WorkItem], rows: int, cost: int, item: _WorkItem) -> bool:
        if rows + item.size > self.max_batch_size:
            return False
        # the first item always fits the cost budget: one costlier than it runs alone
        return not batch or self.max_batch_cost is None or cost + item.cost <= self.max_batch_cost

    def _take(self) -> list[_WorkItem]:
        batch: list[_WorkItem] = []
        rows = cost = 0
        while self._queue and self._fits(batch, rows, cost, self._queue[0]):
            item = self._queue.popleft()
            self._queued_rows -= item.size
            self._queued_cost -= item.cost
            if item.future.done():  # timed out, client gone or cancelled
                self.stats.skipped += 1
                continue
            batch.append(item)
            rows += item.size
            cost += item.cost
        if not self._full_batch_waiting():
            self._dispatch_now.clear()
        self._observer.queue_depth(len(self._queue))
        return batch

    async def _execute(self, instance: InstanceT, batch: list[_WorkItem]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        rows = sum(item.size for item in batch)
        self._observer.batch_dispatched(rows, [now - item.enqueued_at for item in batch])
        started = time.perf_counter()
        started_ns = tracing.now_ns()
        try:
            results = await loop.run_in_executor(
                self._executor, self._run_splitting_on_oom, instance, [i.payload for i in batch]
            )
        except Exception as exc:  # the model raised: fail this batch only
            logger.exception("model call failed for a batch of %d items", rows)
            self.stats.failures += 1
            error = ModelFailure(f"the model failed on this batch: {type(exc).__name__}")
            results = [_Failure(error)] * len(batch)
        self._observer.batch_computed(rows, time.perf_counter() - started)
        if started_ns:
            failed = [isinstance(result, _Failure) for result in results]
            tracing.record_batch(
                [i.trace for i in batch], "model", started_ns, rows=rows, failed=failed
            )
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

    def _run_splitting_on_oom(self, instance: InstanceT, payloads: list[Any]) -> list[Any]:
        """Run a batch; on out-of-memory, retry its halves, then fail single payloads."""
        try:
            results = list(self._run_batch(instance, payloads))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            release_cached_memory()
            if len(payloads) == 1:
                logger.warning("out of memory on a single request; answering 503")
                return [_Failure(OutOfMemory("out of memory while computing this request"))]
            self.stats.oom_splits += 1
            middle = len(payloads) // 2
            logger.warning(
                "out of memory on a batch of %d requests; retrying as %d + %d",
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


def _time_out(future: asyncio.Future[Any], timeout_s: float) -> None:
    if not future.done():
        message = f"no result within the request timeout of {timeout_s:g} s"
        future.set_exception(RequestTimeout(message))


def _client_gone(future: asyncio.Future[Any], watcher: asyncio.Task[Any]) -> None:
    """The disconnect watcher finished: unless it was cancelled, the client is gone."""
    if watcher.cancelled():
        return
    if watcher.exception() is not None:  # the connection broke: treat it as gone
        logger.debug("disconnect watcher failed", exc_info=watcher.exception())
    if not future.done():
        future.set_exception(ClientDisconnected())
