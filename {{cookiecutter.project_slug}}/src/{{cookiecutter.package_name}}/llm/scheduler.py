"""Continuous batching: sequences join the running batch at every step and leave when done.

One engine thread owns the model (``llm/engine_thread.py``: the same thread
loaded and warmed it); the event loop never waits on it. Each step:

1. sequences whose client went away are dropped: their slot and KV cache are free;
2. waiting sequences are admitted while a slot is free (``max_running``) and the
   step's token budget lasts (``max_tokens_per_step``: one token per running
   sequence plus the prompt tokens admitted, less those found in the prefix
   cache; the first waiting prompt is always admitted when a slot is free),
   and prefilled in one batched call. Prefill comes first, so a new request
   waits at most one decode step for its first token, and the budget bounds
   how long running streams pause for it;
3. every running sequence gets its next token from one batched decode call.

With a prefix cache (``llm/prefix_cache.py``), an admitted prompt that starts
with cached blocks is not prefilled but extended: only its tokens after the
cached prefix run through the model (``Model.extend``), batched with the other
hits, while the misses are prefilled as before; every prefilled prompt's
blocks are then cached.

Tokens reach the requests' coroutines on the event loop in one hand-off per
call. The waiting queue is bounded: beyond it ``submit`` refuses at once
(503). With ``max_running=1`` the same loop serves one sequence at a time.

A request is a ``Generation`` of one or more sequences: ``n`` choices per
prompt, several prompts for completions. The n choices of a prompt are
admitted and prefilled together, once; every sequence then samples with its
own options and generator (``sampling.next_tokens`` handles the whole batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
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
from .engine_thread import EngineThread
from .prefix_cache import PrefixCache, PrefixHit
from .sampling import SamplingParams, SequenceSampling, TokenLogprob, next_tokens
from .text_stream import TextStream
from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)


class GenerationModel(Protocol):
    """What the scheduler needs from ``model.py``; caches are the model's own objects.

    Prefix caching also needs ``extend(tokens, caches)`` (each sequence's next tokens
    after its cache) and ``llm/kv_cache.SequenceKV`` caches; a model without
    ``extend`` is served without it.
    """

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

    def generation_finished(self, generated_tokens: int, sequences: int) -> None:
        """A request's last sequence finished: the tokens its ``sequences`` choices generated."""

    def grammar_computed(self, seconds: float) -> None:
        """One step's structured-output masks took ``seconds`` in the grammar engine."""

    def prefix_cache_lookup(self, prompt_tokens: int, cached_tokens: int, cache_bytes: int) -> None:
        """A prompt found its first ``cached_tokens`` in the prefix cache (0: a miss), which
        holds ``cache_bytes`` of keys and values."""


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

    def generation_finished(self, generated_tokens: int, sequences: int) -> None:
        pass

    def grammar_computed(self, seconds: float) -> None:
        pass

    def prefix_cache_lookup(self, prompt_tokens: int, cached_tokens: int, cache_bytes: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class GenerationEvent:
    """New text for choice ``index``; its last event has a ``finish_reason`` ("stop" or "length").

    ``logprobs`` holds one entry per token this event adds, when the request asked for them.
    """

    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] = ()
    error: ServiceError | None = None


class SequenceState:
    """One generated sequence (one choice of a request): advanced by the engine thread only."""

    def __init__(
        self,
        generation: Generation,
        index: int,
        prompt_ids: list[int],
        params: SamplingParams,
        tokenizer: Tokenizer,
        eos: frozenset[int],
    ) -> None:
        self.generation = generation
        self.index = index
        self.prompt_ids = prompt_ids  # shared by the n choices of one prompt
        self.params = params
        self.sampling = SequenceSampling.start(params, prompt_ids, eos)
        self.text = TextStream(tokenizer, prompt_ids, params.stop)
        self.cache: Any = None
        self.last_token = -1
        self.last_token_at = 0.0
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.finished = False

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def cancelled(self) -> bool:
        return self.generation.cancelled


class Generation:
    """One request: its prompts times ``n`` sequences, and the events they send its coroutine.

    The n choices of a prompt form one group: admitted together, prefilled once,
    sharing that prompt's KV cache (decode never modifies a cache in place, so
    they diverge from their first sampled token on). Choice ``i`` of prompt
    ``p`` has index ``p * n + i``, the order OpenAI numbers them in.
    """

    def __init__(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        n: int,
        tokenizer: Tokenizer,
        eos: frozenset[int],
        timeout_s: float | None = None,
    ) -> None:
        self.prompts = [list(p) for p in prompts]
        self.timeout_s = timeout_s
        self.arrived = time.perf_counter()
        self.cancelled = False
        self.failed = False
        self.groups = [
            [
                SequenceState(self, p * n + i, prompt, params.for_choice(i), tokenizer, eos)
                for i in range(n)
            ]
            for p, prompt in enumerate(self.prompts)
        ]
        self.sequences = [s for group in self.groups for s in group]
        # engine-thread state
        self.started = False  # a first token exists
        self.unfinished = len(self.sequences)
        # event-loop state
        self._open = len(self.sequences)  # choices whose finishing event has not been read
        self._events: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self.trace = tracing.GenerationTrace.start(self.prompt_tokens, params.max_tokens)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompts)

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.sequences)

    @property
    def finished(self) -> bool:
        """Every choice's finishing event has been read."""
        return self._open == 0

    def cancel(self) -> None:
        """The client went away: the engine drops these sequences at its next step.

        A no-op once every sequence has finished (or the request failed)."""
        if self.cancelled or self.unfinished == 0:
            return
        self.cancelled = True
        if self.trace is not None:
            self.trace.finish("cancelled", self.completion_tokens)

    async def next_event(self) -> GenerationEvent:
        """The next event, or ``RequestTimeout`` when none comes within ``timeout_s`` (if set).

        The bound holds even when the engine thread is stuck in a stalled model
        call: the request answers 504 (an error event mid-stream) and the engine
        drops the sequences once the call returns.
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
        if event.finish_reason is not None:
            self._open -= 1
        return event

    async def events(self) -> AsyncIterator[GenerationEvent]:
        """Events until every choice has finished; raises the error a failed sequence got."""
        while not self.finished:
            yield await self.next_event()


@dataclass
class SchedulerStats:
    steps: int = 0
    prefill_calls: int = 0
    decode_calls: int = 0
    extend_calls: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens found in the prefix cache
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
        prefix_cache: PrefixCache | None = None,
        engine: EngineThread | None = None,
        keep_history: bool = False,
    ) -> None:
        self.model = model
        self.engine = engine or EngineThread()
        self.prefix_cache = prefix_cache
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.max_tokens_per_step = max_tokens_per_step
        self.context_length = context_length
        self.request_timeout_s = request_timeout_s
        self._observer: GenerationObserver = observer or NullGenerationObserver()
        self._eos = frozenset(model.tokenizer.eos_token_ids)
        self._waiting: deque[list[SequenceState]] = deque()  # groups: one prompt's n choices
        self._waiting_count = 0  # sequences in _waiting (read without the lock)
        self._running: list[SequenceState] = []
        self._prefilling: list[SequenceState] = []
        self._cond = threading.Condition()
        self._closed = False  # no new work
        self._abort = False  # stop now, failing what is left
        self._engine_loop: Future[None] | None = None  # _run on the engine thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keep_history = keep_history
        self.stats = SchedulerStats()

    # --- request side (event loop) ------------------------------------------------
    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return self._waiting_count

    @property
    def kv_cache_usage(self) -> float:
        """Token positions the running sequences hold at their next step, over the most the
        cache holds (``max_running`` sequences at ``context_length``), from 0 to 1."""
        held = sum(s.prompt_tokens + s.completion_tokens for s in self._running)
        return held / (self.max_running * self.context_length)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._engine_loop = self.engine.submit(self._run)

    def submit(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, n: int = 1
    ) -> Generation:
        """Queue ``n`` sequences per prompt, all or none: refuse at once when shutting down,
        when too many wait, or when a prompt's choices could never run together."""
        if self._closed or self._engine_loop is None:
            raise NotReady(
                "the service is shutting down" if self._closed else "the model is not ready"
            )
        if not 1 <= n <= self.max_running:
            raise InvalidInput(
                f"n must be between 1 and {self.max_running} (MAX_RUNNING_SEQUENCES)", param="n"
            )
        for prompt_ids in prompts:
            if not prompt_ids:
                raise InvalidInput("the prompt is empty", param="prompt")
            if len(prompt_ids) + params.max_tokens > self.context_length:
                raise InvalidInput(
                    f"prompt ({len(prompt_ids)} tokens) plus max_tokens ({params.max_tokens}) "
                    f"exceeds the context length of {self.context_length} tokens",
                    param="max_tokens",
                    code="context_length_exceeded",
                )
        generation = Generation(
            prompts, params, n, self.model.tokenizer, self._eos, timeout_s=self.request_timeout_s
        )
        with self._cond:
            free_slots = max(0, self.max_running - len(self._running) - len(self._prefilling))
            if self._waiting_count + len(generation.sequences) > self.max_waiting + free_slots:
                raise Overloaded(f"too many sequences waiting ({self.max_waiting}); retry later")
            self._waiting.extend(generation.groups)
            self._waiting_count += len(generation.sequences)
            self._cond.notify()
        return generation

    async def drain(self, timeout_s: float) -> bool:
        """Take no new work; let running and waiting sequences finish; True if all did in time."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.engine.close()
        engine_loop = self._engine_loop
        if engine_loop is None:
            self._fail_all(NotReady("the service shut down before this ran"))
            return True
        await asyncio.to_thread(wait_for_futures, [engine_loop], timeout_s)
        finished = engine_loop.done()
        if not finished:
            with self._cond:
                self._abort = True
                self._cond.notify_all()
            await asyncio.to_thread(wait_for_futures, [engine_loop], 10.0)
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
                    for sequence in [*self._prefilling, *self._running]:
                        self._fail(sequence.generation, ModelFailure("generation failed"))
                    self._running, self._prefilling = [], []
        finally:
            self._fail_all(NotReady("the service shut down before this sequence finished"))

    def _admit(self) -> list[list[SequenceState]]:
        """Pop the waiting groups this step can prefill (called with the lock held)."""
        now = time.perf_counter()
        if any(
            g[0].cancelled or now - g[0].generation.arrived > self.request_timeout_s
            for g in self._waiting
        ):
            kept: deque[list[SequenceState]] = deque()
            for group in self._waiting:
                generation = group[0].generation
                if generation.cancelled:
                    self.stats.dropped_cancelled += len(group)
                elif now - generation.arrived > self.request_timeout_s:
                    waited = f"{self.request_timeout_s:g} s"
                    self._fail(generation, RequestTimeout(f"not started within {waited}"))
                else:
                    kept.append(group)
            self._waiting = kept
            self._waiting_count = sum(len(g) for g in kept)
        live = sum(not s.cancelled for s in self._running)
        free = self.max_running - live
        budget = self.max_tokens_per_step - live
        admitted: list[list[SequenceState]] = []
        while self._waiting and len(self._waiting[0]) <= free:
            group = self._waiting[0]
            cost = group[0].prompt_tokens  # the n choices of a prompt share one prefill
            if self.prefix_cache is not None:  # only the tokens after a cached prefix run
                cost -= self.prefix_cache.cached_length(group[0].prompt_ids)
            if admitted and cost > budget:
                break
            admitted.append(self._waiting.popleft())
            self._waiting_count -= len(group)
            free -= len(group)
            budget -= cost
        # still holding slots while their prompts run
        self._prefilling = [s for group in admitted for s in group]
        return admitted

    def _step(self, admitted: list[list[SequenceState]]) -> None:
        self.stats.steps += 1
        before = self.stats.tokens
        running = []
        for sequence in self._running:
            if sequence.finished:  # its request failed
                continue
            if sequence.cancelled:
                sequence.cache = None  # the slot and its KV cache are free from now on
                self.stats.dropped_cancelled += 1
            else:
                running.append(sequence)
        self._running = running
        if admitted:
            admitted_at = time.perf_counter()
            for group in admitted:
                waited = admitted_at - group[0].generation.arrived
                self._observer.sequence_admitted(group[0].prompt_tokens, waited)
            self.stats.prefill_calls += 1
            if self._keep_history:
                self.stats.prefill_batches.append([id(g[0].generation) for g in admitted])
            events: list[tuple[Generation, GenerationEvent]] = []
            started_ns = tracing.now_ns()
            prefilled = self._prefill(admitted)
            if started_ns:
                traces = [g[0].generation.trace for g in admitted]
                queued = [trace.queued if trace else None for trace in traces]
                tracing.record_batch(queued, "prefill", started_ns, rows=len(admitted))
            self._advance(prefilled, events)
            self._running += [s for s in self._prefilling if not s.finished]
            self._prefilling = []
            self._deliver(events)  # first tokens go out before the decode step runs
        if self._running:
            batch = self._running
            self.stats.decode_calls += 1
            self.stats.largest_decode_batch = max(self.stats.largest_decode_batch, len(batch))
            if self._keep_history:
                self.stats.decode_batches.append([id(s.generation) for s in batch])
            events = []
            decoded = self._call(
                self.model.decode,
                [[s] for s in batch],
                lambda b: ([g[0].last_token for g in b], [g[0].cache for g in b]),
            )
            self._advance(decoded, events)
            self._running = [s for s in batch if not s.finished]
            self._deliver(events)
        self._observer.tokens_generated(self.stats.tokens - before)
        self._observer.sequences(len(self._running), self.waiting, self.kv_cache_usage)

    def _prefill(
        self, admitted: list[list[SequenceState]]
    ) -> list[tuple[list[list[SequenceState]], np.ndarray, list[Any]]]:
        """The admitted prompts' first logits and caches: misses prefilled in one call, prompts
        that start with cached blocks extended after them in another; then cached."""
        if self.prefix_cache is None:
            return self._call(self.model.prefill, admitted, _prompts)
        hits: dict[int, PrefixHit] = {}
        for group in admitted:
            hit = self.prefix_cache.lookup(group[0].prompt_ids)
            self._observer.prefix_cache_lookup(
                group[0].prompt_tokens, hit.length, self.prefix_cache.bytes
            )
            if hit.cache is not None:
                hits[id(group)] = hit
                self.stats.cached_prompt_tokens += hit.length
        results = []
        if missed := [g for g in admitted if id(g) not in hits]:
            results += self._call(self.model.prefill, missed, _prompts)
        if cached := [g for g in admitted if id(g) in hits]:
            self.stats.extend_calls += 1

            def remainders(batch: list[list[SequenceState]]) -> tuple[Any, ...]:
                found = [hits[id(g)] for g in batch]
                rest = [g[0].prompt_ids[h.length :] for g, h in zip(batch, found, strict=True)]
                return rest, [h.cache for h in found]

            results += self._call(self.model.extend, cached, remainders)  # type: ignore[attr-defined]
        for groups, _, caches in results:
            for group, cache in zip(groups, caches, strict=True):
                self.prefix_cache.store(group[0].prompt_ids, cache)
        return results

    def _call(
        self,
        function: Callable[..., tuple[np.ndarray, list[Any]]],
        batch: list[list[SequenceState]],
        arguments: Callable[[list[list[SequenceState]]], tuple[Any, ...]],
    ) -> list[tuple[list[list[SequenceState]], np.ndarray, list[Any]]]:
        """One model call over groups (one row each); on out-of-memory retry its halves;
        a failure fails this batch's requests only. Returns (groups, logits, caches) per call."""
        try:
            started = time.perf_counter()
            logits, caches = function(*arguments(batch))
            self._observer.batch_computed(len(batch), time.perf_counter() - started)
            if len(logits) != len(batch) or len(caches) != len(batch):
                raise RuntimeError(
                    f"the model returned {len(logits)} rows for {len(batch)} sequences"
                )
            return [(batch, np.asarray(logits), list(caches))]
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
                error: ServiceError = OutOfMemory("out of memory while generating this sequence")
            else:
                logger.exception("model call failed for %d sequences", len(batch))
                error = ModelFailure(f"the model failed: {type(exc).__name__}")
            for group in batch:
                self._fail(group[0].generation, error)
            return []

    def _advance(
        self,
        results: list[tuple[list[list[SequenceState]], np.ndarray, list[Any]]],
        events: list[tuple[Generation, GenerationEvent]],
    ) -> None:
        """Give each sequence its cache, choose all next tokens in one batched call, accept them."""
        for groups, logits, caches in results:
            sequences: list[SequenceState] = []
            for group, cache in zip(groups, caches, strict=True):
                for sequence in group:
                    if not sequence.finished:
                        sequence.cache = cache
                        sequences.append(sequence)
            if len(sequences) != len(groups):  # n > 1 (or a failed request): a row per sequence
                rows = [r for r, g in enumerate(groups) for s in g if not s.finished]
                logits = logits[rows]
            if not sequences:
                continue
            choices = next_tokens(logits, [s.sampling for s in sequences])
            if choices.grammar_s:
                self._observer.grammar_computed(choices.grammar_s)
            for sequence, token, logprob in zip(
                sequences, choices.tokens, choices.logprobs, strict=True
            ):
                self._accept(sequence, token, logprob, events)

    def _accept(
        self,
        sequence: SequenceState,
        token: int,
        logprob: TokenLogprob | None,
        events: list[tuple[Generation, GenerationEvent]],
    ) -> None:
        """Take the chosen token, turn it into text, and decide whether the sequence is done."""
        generation = sequence.generation
        now = time.perf_counter()
        if not generation.started:
            generation.started = True
            self._observer.first_token(now - generation.arrived)
            if generation.trace is not None:
                generation.trace.first_token()
        elif sequence.completion_tokens:
            self._observer.inter_token(now - sequence.last_token_at)
        sequence.last_token_at = now
        sequence.last_token = token
        sequence.completion_tokens += 1
        sequence.sampling.record(token)
        self.stats.tokens += 1
        finish: str | None = None
        if token in sequence.sampling.stop_ids:
            finish, text = "stop", sequence.text.flush()
        else:
            text = sequence.text.push(token)
            if sequence.text.stopped:
                finish = "stop"
            elif sequence.sampling.grammar_done:  # the structured output is complete
                finish = "stop"
                text += sequence.text.flush()
            elif (
                sequence.completion_tokens >= sequence.params.max_tokens
                or sequence.prompt_tokens + sequence.completion_tokens >= self.context_length
            ):
                finish = "length"
                text += sequence.text.flush()
        if finish is not None:
            sequence.finished = True
            sequence.finish_reason = finish
            sequence.cache = None
            generation.unfinished -= 1
            if generation.unfinished == 0:
                tokens, sequences = generation.completion_tokens, len(generation.sequences)
                self._observer.generation_finished(tokens, sequences)
                if generation.trace is not None:
                    generation.trace.finish(finish, generation.completion_tokens)
        if text or finish is not None or logprob is not None:
            lp = (logprob,) if logprob is not None else ()
            events.append((generation, GenerationEvent(sequence.index, text, finish, lp)))

    def _fail(self, generation: Generation, error: ServiceError) -> None:
        """Fail the whole request (its other sequences are dropped at their next step)."""
        if generation.failed:
            return
        generation.failed = True
        generation.cancelled = True
        if generation.trace is not None:
            generation.trace.finish("error", generation.completion_tokens, error.message)
        for sequence in generation.sequences:
            sequence.finished = True
            sequence.cache = None
        self._deliver([(generation, GenerationEvent(error=error))])

    def _fail_all(self, error: ServiceError) -> None:
        with self._cond:
            left = [*(s for g in self._waiting for s in g), *self._prefilling, *self._running]
            self._waiting.clear()
            self._waiting_count = 0
        self._running = []
        for sequence in left:
            if not sequence.finished:
                self._fail(sequence.generation, error)

    def _deliver(self, events: list[tuple[Generation, GenerationEvent]]) -> None:
        if not events or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody listens any more
            self._loop.call_soon_threadsafe(_put_events, events)


def _prompts(batch: list[list[SequenceState]]) -> tuple[list[list[int]]]:
    return ([group[0].prompt_ids for group in batch],)


def _put_events(events: list[tuple[Generation, GenerationEvent]]) -> None:
    for generation, event in events:
        generation._events.put_nowait(event)
