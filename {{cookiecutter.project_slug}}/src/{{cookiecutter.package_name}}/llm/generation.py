"""The loaded language model, its scheduler and the readiness state, as one object the routes use.

The llm workload's ``serving.lifecycle.Service``: the same readiness and drain
contract as the batching workloads' service (health probes and SIGTERM
handling use either), with a continuous-batching ``Scheduler`` in place of the
request batcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Protocol

from fastapi import Depends

from ..serving import tracing
from ..serving.deps import get_service
from ..serving.device import Device
from ..serving.lifecycle import Readiness
from ..serving.warmup import warmup_batch_sizes
from ..settings import Settings
from .contract import WARMUP_TEXT, check_extend, check_tokenizer
from .engine_thread import EngineThread
from .grammar import GrammarEngine
from .prefix_cache import BLOCK_TOKENS, PrefixCache
from .sampling import SamplingParams
from .scheduler import Generation, GenerationModel, GenerationObserver, Scheduler

logger = logging.getLogger(__name__)


class LanguageModel(GenerationModel, Protocol):
    """``model.py``'s contract: the scheduler's calls plus loading and limits."""

    device: Device | None
    vocab_size: int  # logits per position
    context_length: int

    def load(self) -> None: ...


class GenerationService:
    def __init__(self, model: LanguageModel, scheduler: Scheduler, grammar: GrammarEngine) -> None:
        self.model = model
        self.scheduler = scheduler
        self.grammar = grammar
        self.readiness = Readiness()
        self.load_seconds = 0.0
        self.warmup_seconds = 0.0

    @property
    def context_length(self) -> int:
        return self.scheduler.context_length

    @classmethod
    async def load(
        cls,
        factory: Callable[[], LanguageModel],
        settings: Settings,
        observer: GenerationObserver | None = None,
    ) -> GenerationService:
        started = time.perf_counter()
        model = factory()
        engine = EngineThread()  # the model's one thread, from loading to the last step
        await engine.call(model.load)
        check_tokenizer(model.tokenizer, model.vocab_size)
        context_length = settings.context_length or model.context_length
        if context_length > model.context_length:
            raise ValueError(
                f"CONTEXT_LENGTH={settings.context_length} exceeds the model's maximum of "
                f"{model.context_length} tokens"
            )
        prefix_cache = None
        # a hit needs a prompt of a whole block and a token more
        reusable = context_length > BLOCK_TOKENS + 1
        if settings.prefix_cache_mb and hasattr(model, "extend") and reusable:
            prefix_cache = PrefixCache(settings.prefix_cache_mb * 2**20)
        scheduler = Scheduler(
            model,
            max_running=settings.max_running_sequences,
            max_waiting=settings.max_waiting_sequences,
            max_tokens_per_step=settings.max_tokens_per_step,
            context_length=context_length,
            request_timeout_s=settings.request_timeout_s,
            observer=observer,
            prefix_cache=prefix_cache,
            engine=engine,
        )
        # the vocabulary as the grammar engine reads it (about 1 s for a large Hugging Face one)
        grammar = await asyncio.to_thread(GrammarEngine, model.tokenizer, model.vocab_size)
        service = cls(model, scheduler, grammar)
        service.load_seconds = time.perf_counter() - started
        logger.info(
            "model loaded in %.3f s (context length %d)", service.load_seconds, context_length
        )
        return service

    async def start(self) -> None:
        """Warm up every shape the scheduler will use, start the engine and report ready."""
        started = time.perf_counter()
        scheduler = self.scheduler
        shapes = await scheduler.engine.call(
            warm_up, self.model, scheduler.max_running, scheduler.context_length
        )
        if scheduler.prefix_cache is not None:
            check = await scheduler.engine.call(
                check_extend, self.model, scheduler.prefix_cache, scheduler.context_length
            )
            shapes.append(check)
        self.warmup_seconds = time.perf_counter() - started
        logger.info("warmup done in %.3f s: %s", self.warmup_seconds, "; ".join(shapes))
        self.scheduler.start()
        self.readiness.ready = True

    def submit(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, n: int = 1
    ) -> Generation:
        self.readiness.check()
        generation = self.scheduler.submit(prompts, params, n)
        waiting, running = self.scheduler.waiting, self.scheduler.running
        tracing.event("admitted", **{"sequences.waiting": waiting, "sequences.running": running})
        return generation

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new work (readiness 503), let running and waiting sequences finish."""
        self.readiness.draining = True
        finished = await self.scheduler.drain(timeout_s)
        logger.info(
            "drained %s", "cleanly" if finished else f"with work left after {timeout_s:g} s"
        )
        return finished


# What an llm route declares to receive the service.
GenerationServiceDep = Annotated[GenerationService, Depends(get_service)]


def warm_up(model: GenerationModel, max_running: int, context_length: int) -> list[str]:
    """Prefill and decode at every batch size up to ``max_running``, then at the longest context.

    The first call of a shape pays for kernel selection and memory-pool growth
    (and on a GPU, for the allocator reaching its peak): warmup pays instead of
    the first requests, and a batch that cannot fit fails start-up, not traffic.
    """
    shapes: list[str] = []
    prompt = model.tokenizer.encode(WARMUP_TEXT)[: max(1, context_length - 2)]
    for size in warmup_batch_sizes(max_running):
        logits, caches = model.prefill([prompt] * size)
        model.decode([int(row.argmax()) for row in logits], caches)
        shapes.append(f"{size}x{len(prompt)} prefill + decode")
    longest = (prompt * (context_length // len(prompt) + 1))[: context_length - 1]
    logits, caches = model.prefill([longest])
    model.decode([int(logits[0].argmax())] * max_running, caches * max_running)
    shapes.append(f"1x{len(longest)} prefill, {max_running}x{len(longest)} decode")
    return shapes
