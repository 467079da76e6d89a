"""Continuous batching: sequences join the running batch at every step and leave when done.

One engine thread owns the model; the event loop never waits on it. Each step:

1. sequences whose client went away are dropped: their slot and KV cache are free;
2. waiting sequences are admitted while a slot is free (``max_running``) and the
   step's token budget lasts (``max_tokens_per_step``: one token per running
   sequence plus the prompts admitted; the first waiting prompt is always
   admitted when a slot is free), and prefilled in one batched call. Prefill
   comes first, so a new request waits at most one decode step for its first
   token, and the budget bounds how long running streams pause for it;
3. every running sequence gets its next token from one batched decode call.

Tokens reach the requests' coroutines on the event loop in one hand-off per
call. The waiting queue is bounded: beyond it ``submit`` refuses at once
(503). With ``max_running=1`` the same loop serves one sequence at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..serving import tracing
from ..serving.errors import (
    InvalidInput,
    ModelFailure,
    NotReady,
    OutOfMemory,
    Overloaded,
    RequestTimeout,
    ServiceError,
)
from ..serving.oom import is_out_of_memory, release_cached_memory
from .sampling import SamplingParams, new_rng, sample
from .text_stream import TextStream
from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)


class GenerationModel(Protocol):
    """What the scheduler needs from ``model.py``; caches are the model's own objects."""

    tokenizer: Tokenizer

    def prefill(self, prompts: list[list[int]]) -> tuple[np.ndarray, list[Any]]: ...

    def decode(self, tokens: list[int], caches: list[Any]) -> tuple[np.ndarray, list[Any]]: ...


class GenerationObserver(Protocol):
    """Receives the scheduler's events (from its thread); the metrics module implements it."""

    def sequence_admitted(self, prompt_tokens: int, waited_s: float) -> None:
        """A sequence left the waiting queue for the running batch after ``waited_s``."""

    def first_token(self, seconds: float) -> None: ...

    def inter_token(self, seconds: float) -> None: ...

    def tokens_generated(self, count: int) -> None: ...

    def sequences(self, running: int, waiting: int, kv_cache_usage: float) -> None:
        """After every step: sequences in the batch, waiting for a slot, and the KV cache's use.

        ``kv_cache_usage`` (0 to 1) is the token positions the running sequences hold in the
        KV cache at their next step over what it holds at most (every slot at the context
        length): the load the inference gateway balances on (``Scheduler.kv_cache_usage``).
        """
        ...

    def batch_computed(self, size: int, compute_s: float) -> None: ...


class NullGenerationObserver:
    def sequence_admitted(self, prompt_tokens: int, waited_s: float) -> None:
        pass

    def first_token(self, seconds: float) -> None:
        pass

    def inter_token(self, seconds: float) -> None:
        pass

    def tokens_generated(self, count: int) -> None:
        pass

    def sequences(self, running: int, waiting: int, kv_cache_usage: float) -> None:
        pass

    def batch_computed(self, size: int, compute_s: float) -> None:
        pass


@dataclass(frozen=True, slots=True)
class GenerationEvent:
    """New text for one request; the last event has a ``finish_reason`` ("stop" or "length")."""

    text: str = ""
    finish_reason: str | None = None
    error: ServiceError | None = None


class Generation:
    """One request's sequence: advanced by the engine thread, read by the request's coroutine."""

    def __init__(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        tokenizer: Tokenizer,
        timeout_s: float | None = None,
    ) -> None:
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.timeout_s = timeout_s
        self.arrived = time.perf_counter()
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.cancelled = False
        # engine-thread state
        self.cache: Any = None
        self.last_token = -1
        self.last_token_at = 0.0
        self.finished = False
        self.text = TextStream(tokenizer, self.prompt_ids, params.stop)
        self.rng = new_rng(params.seed)
        self._events: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self.trace = tracing.GenerationTrace.start(self.prompt_tokens, params.max_tokens)

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    def cancel(self) -> None:
        """The client went away: the engine drops this sequence at its next step."""
        self.cancelled = True
        if self.trace is not None:
            self.trace.finish("cancelled", self.completion_tokens)

    async def next_event(self) -> GenerationEvent:
        """The next event, or ``RequestTimeout`` when none comes within ``timeout_s`` (if set).

        The bound holds even when the engine thread is stuck in a stalled model
        call: the request answers 504 (an error event mid-stream) and the engine
        drops the sequence once the call returns.
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                event = await self._events.get()
        except TimeoutError:
            self.cancel()
            raise RequestTimeout(
                f"no token within {self.timeout_s:g} s (waiting for a slot or a stalled model call)"
            ) from None
        if event.error is not None:
            raise event.error
        return event

    async def events(self) -> AsyncIterator[GenerationEvent]:
        """Events until the one with a finish reason; raises the error a failed sequence got."""
        while True:
            event = await self.next_event()
            yield event
            if event.finish_reason is not None:
                return


@dataclass
class SchedulerStats:
    steps: int = 0
    prefill_calls: int = 0
    decode_calls: int = 0
    tokens: int = 0
    dropped_cancelled: int = 0
    largest_decode_batch: int = 0
    # ids (``id(generation)``) in each decode call, when ``keep_history`` is set (tests)
    decode_batches: list[list[int]] = field(default_factory=list)
    prefill_batches: list[list[int]] = field(default_factory=list)


class Scheduler:
    def __init__(
        self,
        model: GenerationModel,
        *,
        max_running: int,
        max_waiting: int,
        max_tokens_per_step: int,
        context_length: int,
        request_timeout_s: float,
        observer: GenerationObserver | None = None,
        keep_history: bool = False,
    ) -> None:
        self.model = model
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.max_tokens_per_step = max_tokens_per_step
        self.context_length = context_length
        self.request_timeout_s = request_timeout_s
        self._observer: GenerationObserver = observer or NullGenerationObserver()
        self._eos = frozenset(model.tokenizer.eos_token_ids)
        self._waiting: deque[Generation] = deque()
        self._running: list[Generation] = []
        self._prefilling: list[Generation] = []
        self._cond = threading.Condition()
        self._closed = False  # no new work
        self._abort = False  # stop now, failing what is left
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keep_history = keep_history
        self.stats = SchedulerStats()

    # --- request side (event loop) ------------------------------------------------
    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_cache_usage(self) -> float:
        """Token positions the running sequences hold at their next step, over the most the
        cache holds (``max_running`` sequences at ``context_length``), from 0 to 1."""
        held = sum(g.prompt_tokens + g.completion_tokens for g in self._running)
        return held / (self.max_running * self.context_length)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="generation-engine", daemon=True)
        self._thread.start()

    def submit(self, prompt_ids: Sequence[int], params: SamplingParams) -> Generation:
        """Queue a sequence; refuse at once when shutting down or when too many wait."""
        if self._closed or self._thread is None:
            raise NotReady(
                "the service is shutting down" if self._closed else "the model is not ready"
            )
        if not prompt_ids:
            raise InvalidInput("the prompt is empty", param="prompt")
        if len(prompt_ids) + params.max_tokens > self.context_length:
            raise InvalidInput(
                f"prompt ({len(prompt_ids)} tokens) plus max_tokens ({params.max_tokens}) exceeds "
                f"the context length of {self.context_length} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        generation = Generation(
            prompt_ids, params, self.model.tokenizer, timeout_s=self.request_timeout_s
        )
        with self._cond:
            free_slots = max(0, self.max_running - len(self._running) - len(self._prefilling))
            if len(self._waiting) >= self.max_waiting + free_slots:
                raise Overloaded(f"too many sequences waiting ({self.max_waiting}); retry later")
            self._waiting.append(generation)
            self._cond.notify()
        return generation

    async def drain(self, timeout_s: float) -> bool:
        """Take no new work; let running and waiting sequences finish; True if all did in time."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if thread is None:
            self._fail_all(NotReady("the service shut down before this ran"))
            return True
        await asyncio.to_thread(thread.join, timeout_s)
        finished = not thread.is_alive()
        if not finished:
            with self._cond:
                self._abort = True
                self._cond.notify_all()
            await asyncio.to_thread(thread.join, 10.0)
        return finished

    # --- engine thread --------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._waiting or self._running or self._closed or self._abort):
                        self._cond.wait()
                    if self._abort or (self._closed and not self._waiting and not self._running):
                        return
                    admitted = self._admit()
                try:
                    self._step(admitted)
                except Exception:  # a bug, not a model error: fail this batch, keep serving
                    logger.exception("generation step failed")
                    for generation in [*admitted, *self._running]:
                        if not generation.finished:
                            self._fail(generation, ModelFailure("generation failed"))
                    self._running, self._prefilling = [], []
        finally:
            self._fail_all(NotReady("the service shut down before this sequence finished"))

    def _admit(self) -> list[Generation]:
        """Pop the waiting sequences this step can prefill (called with the lock held)."""
        now = time.perf_counter()
        if any(g.cancelled or now - g.arrived > self.request_timeout_s for g in self._waiting):
            kept: deque[Generation] = deque()
            for generation in self._waiting:
                if generation.cancelled:
                    self.stats.dropped_cancelled += 1
                elif now - generation.arrived > self.request_timeout_s:
                    waited = f"{self.request_timeout_s:g} s"
                    self._fail(generation, RequestTimeout(f"not started within {waited}"))
                else:
                    kept.append(generation)
            self._waiting = kept
        live = sum(not g.cancelled for g in self._running)
        free = self.max_running - live
        budget = self.max_tokens_per_step - live
        admitted: list[Generation] = []
        while self._waiting and len(admitted) < free:
            cost = self._waiting[0].prompt_tokens
            if admitted and cost > budget:
                break
            admitted.append(self._waiting.popleft())
            budget -= cost
        self._prefilling = admitted  # still holding slots while their prompts run
        return admitted

    def _step(self, admitted: list[Generation]) -> None:
        self.stats.steps += 1
        before = self.stats.tokens
        running = []
        for generation in self._running:
            if generation.cancelled:
                generation.cache = None  # the slot and its KV cache are free from now on
                self.stats.dropped_cancelled += 1
            else:
                running.append(generation)
        self._running = running
        if admitted:
            admitted_at = time.perf_counter()
            for generation in admitted:
                self._observer.sequence_admitted(
                    generation.prompt_tokens, admitted_at - generation.arrived
                )
            self.stats.prefill_calls += 1
            if self._keep_history:
                self.stats.prefill_batches.append([id(g) for g in admitted])
            events: list[tuple[Generation, GenerationEvent]] = []
            started_ns = tracing.now_ns()
            prefilled = self._call(
                self.model.prefill, admitted, lambda batch: ([g.prompt_ids for g in batch],)
            )
            if started_ns:
                traces = [g.trace.queued if g.trace else None for g in admitted]
                tracing.record_batch(traces, "prefill", started_ns, rows=len(admitted))
            for generation, logits, cache, best in prefilled:
                generation.cache = cache
                self._accept(generation, logits, best, events)
            self._running += [g for g in admitted if not g.finished]
            self._prefilling = []
            self._deliver(events)  # first tokens go out before the decode step runs
        if self._running:
            batch = self._running
            self.stats.decode_calls += 1
            self.stats.largest_decode_batch = max(self.stats.largest_decode_batch, len(batch))
            if self._keep_history:
                self.stats.decode_batches.append([id(g) for g in batch])
            events = []
            for generation, logits, cache, best in self._call(
                self.model.decode,
                batch,
                lambda b: ([g.last_token for g in b], [g.cache for g in b]),
            ):
                generation.cache = cache
                self._accept(generation, logits, best, events)
            self._running = [g for g in batch if not g.finished]
            self._deliver(events)
        self._observer.tokens_generated(self.stats.tokens - before)
        self._observer.sequences(len(self._running), len(self._waiting), self.kv_cache_usage)

    def _call(
        self,
        function: Callable[..., tuple[np.ndarray, list[Any]]],
        batch: list[Generation],
        arguments: Callable[[list[Generation]], tuple[Any, ...]],
    ) -> list[tuple[Generation, np.ndarray, Any, int]]:
        """One model call; on out-of-memory retry its halves; a failure fails this batch only."""
        try:
            started = time.perf_counter()
            logits, caches = function(*arguments(batch))
            self._observer.batch_computed(len(batch), time.perf_counter() - started)
            if len(logits) != len(batch) or len(caches) != len(batch):
                raise RuntimeError(
                    f"the model returned {len(logits)} rows for {len(batch)} sequences"
                )
            best = np.asarray(logits).argmax(axis=-1)  # greedy choices, one call for the batch
            return list(zip(batch, logits, caches, best.tolist(), strict=True))
        except Exception as exc:
            if is_out_of_memory(exc):
                release_cached_memory()
                if len(batch) > 1:
                    middle = len(batch) // 2
                    logger.warning(
                        "out of memory on %d sequences; retrying as two halves", len(batch)
                    )
                    return self._call(function, batch[:middle], arguments) + self._call(
                        function, batch[middle:], arguments
                    )
                self._fail(batch[0], OutOfMemory("out of memory while generating this sequence"))
                return []
            logger.exception("model call failed for %d sequences", len(batch))
            for generation in batch:
                self._fail(generation, ModelFailure(f"the model failed: {type(exc).__name__}"))
            return []

    def _accept(
        self,
        generation: Generation,
        logits: np.ndarray,
        best: int,
        events: list[tuple[Generation, GenerationEvent]],
    ) -> None:
        """Sample the next token, turn it into text, and decide whether the sequence is done."""
        params = generation.params
        token = best if params.greedy else sample(logits, params, generation.rng)
        now = time.perf_counter()
        if generation.completion_tokens == 0:
            self._observer.first_token(now - generation.arrived)
            if generation.trace is not None:
                generation.trace.first_token()
        else:
            self._observer.inter_token(now - generation.last_token_at)
        generation.last_token_at = now
        generation.last_token = token
        generation.completion_tokens += 1
        self.stats.tokens += 1
        finish: str | None = None
        if token in self._eos:
            finish, text = "stop", generation.text.flush()
        else:
            text = generation.text.push(token)
            if generation.text.stopped:
                finish = "stop"
            elif (
                generation.completion_tokens >= generation.params.max_tokens
                or generation.prompt_tokens + generation.completion_tokens >= self.context_length
            ):
                finish = "length"
                text += generation.text.flush()
        if finish is not None:
            generation.finished = True
            generation.finish_reason = finish
            generation.cache = None
            if generation.trace is not None:
                generation.trace.finish(finish, generation.completion_tokens)
        if text or finish is not None:
            events.append((generation, GenerationEvent(text, finish)))

    def _fail(self, generation: Generation, error: ServiceError) -> None:
        if generation.trace is not None:
            generation.trace.finish("error", generation.completion_tokens, error.message)
        generation.finished = True
        generation.cache = None
        self._deliver([(generation, GenerationEvent(error=error))])

    def _fail_all(self, error: ServiceError) -> None:
        with self._cond:
            left = [*self._waiting, *self._prefilling, *self._running]
            self._waiting.clear()
        self._running = []
        for generation in left:
            if not generation.finished:
                self._fail(generation, error)

    def _deliver(self, events: list[tuple[Generation, GenerationEvent]]) -> None:
        if not events or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody listens any more
            self._loop.call_soon_threadsafe(_put_events, events)


def _put_events(events: list[tuple[Generation, GenerationEvent]]) -> None:
    for generation, event in events:
        generation._events.put_nowait(event)
