"""The one thread that calls the model: loading, warmup, start-up checks and every step.

torch runs its CPU kernels on libgomp's OpenMP pool, and every thread that
enters a parallel region keeps a pool of its own. Once the pools' threads
outnumber the CPUs, libgomp stops spinning between parallel regions and parks
its workers on a futex (its "throttled" spin count), so a decode step of many
small kernels waits on a wake-up per kernel. On 2 cores, a 4-layer GPT-2 decode
step took 1.9 ms on the thread that had loaded and warmed the model and 6.0 ms
on a second thread, the engine thread as it was. Loading or warming up on a
pool thread (``asyncio.to_thread``) is enough to leave a second pool behind.

A plain ``ThreadPoolExecutor`` would do, but its threads are joined at
interpreter exit: a model call that never returns would keep a drained
process alive. This thread is a daemon.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class EngineThread:
    """Runs submitted calls one after another, in order, on one daemon thread."""

    def __init__(self, name: str = "generation-engine") -> None:
        self._calls: queue.SimpleQueue[tuple[Future, Callable[[], object]] | None]
        self._calls = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        future: Future[R] = Future()
        self._calls.put((future, lambda: function(*args, **kwargs)))
        return future

    async def call(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``function`` on the engine thread and wait for it without blocking the loop."""
        return await asyncio.wrap_future(self.submit(function, *args, **kwargs))

    def close(self) -> None:
        """End the thread once the calls submitted so far have run."""
        self._calls.put(None)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # the caller's to handle, as an executor would
                future.set_exception(exc)
