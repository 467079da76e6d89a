"""Continuous batching: joins, leaves, limits, backpressure, cancellation and failures.

Driven with a fake model whose decode steps the tests release one at a time,
so every scheduling decision is checked exactly, not by timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.llm.sampling import SamplingParams
from {{ cookiecutter.package_name }}.llm.scheduler import Generation, Scheduler
from {{ cookiecutter.package_name }}.llm.tokenizer import ByteTokenizer
from {{ cookiecutter.package_name }}.serving.errors import ModelFailure, NotReady, Overloaded, RequestTimeout

from .conftest import run_async
from .llm_support import FakeModel, greedy_continuation, oom_above, wait_until

TOKENIZER = ByteTokenizer()


def greedy(max_tokens: int = 8, **options: Any) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, **options)


def expected_text(prompt: str, tokens: int) -> str:
    return TOKENIZER.decode(greedy_continuation(TOKENIZER.encode(prompt), tokens))


async def collect(generation: Generation) -> tuple[str, str]:
    parts, finish = [], ""
    async for event in generation.events():
        parts.append(event.text)
        finish = event.finish_reason or finish
    return "".join(parts), finish


def scenario(model: FakeModel, test: Callable[[Scheduler], Awaitable[None]], **limits: Any) -> None:
    options: dict[str, Any] = {
        "max_running": 4,
        "max_waiting": 8,
        "max_tokens_per_step": 256,
        "context_length": model.context_length,
        "request_timeout_s": 10.0,
    }
    options.update(limits)

    async def run() -> None:
        scheduler = Scheduler(model, keep_history=True, **options)
        scheduler.start()
        try:
            await asyncio.wait_for(test(scheduler), timeout=20)
        finally:
            if model.gate is not None:
                model.gate.release(10_000)
            await scheduler.drain(5)

    run_async(run())


def submit(scheduler: Scheduler, prompt: str, params: SamplingParams) -> Generation:
    return scheduler.submit([TOKENIZER.encode(prompt)], params)


def test_each_sequence_gets_its_own_tokens() -> None:
    prompts = ["alpha", "a much longer prompt than the others", "z"]

    async def test(scheduler: Scheduler) -> None:
        generations = [submit(scheduler, p, greedy(8)) for p in prompts]
        results = await asyncio.gather(*(collect(g) for g in generations))
        for prompt, generation, (text, finish) in zip(prompts, generations, results, strict=True):
            assert text == expected_text(prompt, 8)
            assert finish == "length"
            assert generation.completion_tokens == 8

    scenario(FakeModel(), test)


def test_new_sequences_join_the_running_batch() -> None:
    gate = threading.Semaphore(0)
    model = FakeModel(gate=gate)

    async def test(scheduler: Scheduler) -> None:
        first = submit(scheduler, "first", greedy(12))
        gate.release(2)
        await asyncio.to_thread(wait_until, lambda: len(model.decode_batches) == 2)
        second = submit(scheduler, "second one", greedy(6))
        gate.release(10_000)
        results = await asyncio.gather(collect(first), collect(second))
        assert results[0][0] == expected_text("first", 12)
        assert results[1][0] == expected_text("second one", 6)
        # "second one" was prefilled on its own while "first" kept decoding, then both
        # decoded together until it finished
        assert model.prefill_batches == [[5], [10]]
        sizes = [len(batch) for batch in model.decode_batches]
        assert sizes[:2] == [1, 1]
        assert 2 in sizes

    scenario(model, test)


def test_finished_sequences_leave_the_batch() -> None:
    model = FakeModel()

    async def test(scheduler: Scheduler) -> None:
        short = submit(scheduler, "ab", greedy(3))
        long = submit(scheduler, "cd", greedy(10))
        await asyncio.gather(collect(short), collect(long))

    # submitted together: one prefill of both; "ab" needs 2 decode steps, "cd" 9
    scenario(model, test)
    assert model.prefill_batches in ([[2, 2]], [[2], [2]])
    sizes = [len(batch) for batch in model.decode_batches]
    assert sizes.count(2) <= 2
    assert sum(sizes) == 2 + 9


@pytest.mark.parametrize("max_running", [1, 2])
def test_never_more_running_than_the_limit(max_running: int) -> None:
    model = FakeModel()
    prompts = [f"prompt {i}" for i in range(5)]

    async def test(scheduler: Scheduler) -> None:
        generations = [submit(scheduler, p, greedy(6)) for p in prompts]
        results = await asyncio.gather(*(collect(g) for g in generations))
        assert [text for text, _ in results] == [expected_text(p, 6) for p in prompts]
        assert scheduler.stats.largest_decode_batch <= max_running

    scenario(model, test, max_running=max_running)
    assert max(len(b) for b in model.decode_batches) <= max_running
    assert max(len(b) for b in model.prefill_batches) <= max_running


@pytest.mark.parametrize(("budget", "prefills"), [(10, [[6], [6], [6]]), (20, [[6, 6, 6]])])
def test_token_budget_limits_prefill_per_step(budget: int, prefills: list[list[int]]) -> None:
    gate = threading.Semaphore(0)
    model = FakeModel(gate=gate)

    async def test(scheduler: Scheduler) -> None:
        running = submit(scheduler, "x", greedy(30))
        await asyncio.to_thread(wait_until, lambda: scheduler.running == 1)
        waiting = [submit(scheduler, f"wait {i}", greedy(4)) for i in range(3)]  # 6 tokens each
        gate.release(10_000)
        await asyncio.gather(*(collect(g) for g in [running, *waiting]))

    # one running sequence uses 1 token of the budget; the first waiting prompt always fits
    scenario(model, test, max_tokens_per_step=budget)
    assert model.prefill_batches == [[1], *prefills]


def test_full_waiting_queue_answers_overloaded() -> None:
    gate = threading.Semaphore(0)
    model = FakeModel(gate=gate)

    async def test(scheduler: Scheduler) -> None:
        running = submit(scheduler, "run", greedy(5))
        await asyncio.to_thread(wait_until, lambda: scheduler.running == 1)
        waiting = submit(scheduler, "wait", greedy(5))
        with pytest.raises(Overloaded) as refused:
            submit(scheduler, "refused", greedy(5))
        assert refused.value.status_code == 503
        assert refused.value.headers["Retry-After"] == "1"
        gate.release(10_000)
        assert (await collect(running))[0] == expected_text("run", 5)
        assert (await collect(waiting))[0] == expected_text("wait", 5)

    scenario(model, test, max_running=1, max_waiting=1)


def test_cancelled_sequence_frees_its_slot_at_the_next_step() -> None:
    gate = threading.Semaphore(0)
    model = FakeModel(gate=gate)

    async def test(scheduler: Scheduler) -> None:
        gone = submit(scheduler, "client goes away", greedy(40))
        await asyncio.to_thread(wait_until, lambda: scheduler.running == 1)
        waiting = submit(scheduler, "next", greedy(4))
        gone.cancel()
        gate.release(10_000)
        assert (await collect(waiting))[0] == expected_text("next", 4)
        assert scheduler.stats.dropped_cancelled == 1
        assert scheduler.running == 0

    scenario(model, test, max_running=1)
    # the cancelled sequence ran at most the one decode step already under way
    assert model.decode_batches[0] == [len("client goes away")]
    assert all(len(batch) == 1 for batch in model.decode_batches)
    assert len(model.decode_batches) <= 1 + 3


def test_sequence_waiting_past_the_timeout_gets_504() -> None:
    gate = threading.Semaphore(0)
    model = FakeModel(gate=gate)

    async def test(scheduler: Scheduler) -> None:
        running = submit(scheduler, "slow", greedy(3))
        await asyncio.to_thread(wait_until, lambda: scheduler.running == 1)
        late = submit(scheduler, "late", greedy(3))
        await asyncio.sleep(0.3)
        gate.release(10_000)
        with pytest.raises(RequestTimeout) as timed_out:
            await collect(late)
        assert timed_out.value.status_code == 504
        await collect(running)

    scenario(model, test, max_running=1, request_timeout_s=0.2)


def test_end_of_text_and_stop_strings_finish_with_stop() -> None:
    prompt = "stop here"
    tokens = TOKENIZER.encode(prompt)
    eos_at = len(tokens) + 5
    model = FakeModel(script={eos_at: ByteTokenizer.END_OF_TEXT})
    full = expected_text(prompt, 5)
    stop = full[2:4]

    async def test(scheduler: Scheduler) -> None:
        eos = submit(scheduler, prompt, greedy(20))
        assert await collect(eos) == (full, "stop")
        assert eos.completion_tokens == 6  # the end-of-text token was generated too
        stopped = submit(scheduler, prompt, greedy(20, stop=("never", stop)))
        text, finish = await collect(stopped)
        assert (text, finish) == (full[: full.find(stop)], "stop")

    scenario(model, test)


def test_multibyte_characters_are_never_split() -> None:
    prompt = TOKENIZER.encode("say:")
    forced = list("é€😀".encode())
    model = FakeModel(script={len(prompt) + i: byte for i, byte in enumerate(forced)})

    async def test(scheduler: Scheduler) -> None:
        generation = scheduler.submit([prompt], greedy(len(forced)))
        texts = [event.text async for event in generation.events()]
        assert "".join(texts) == "é€😀"
        assert all("\ufffd" not in text for text in texts)
        assert [t for t in texts if t] == ["é", "€", "😀"]

    scenario(model, test)


def test_a_model_failure_fails_only_its_batch() -> None:
    failures = iter([RuntimeError("boom")])
    model = FakeModel(
        fail_when=lambda call, size: next(failures, None) if call == "decode" else None
    )

    async def test(scheduler: Scheduler) -> None:
        with pytest.raises(ModelFailure) as failed:
            await collect(submit(scheduler, "unlucky", greedy(4)))
        assert failed.value.status_code == 500
        assert (await collect(submit(scheduler, "fine", greedy(4))))[0] == expected_text("fine", 4)

    scenario(model, test)


def test_out_of_memory_splits_the_batch() -> None:
    gate = threading.Semaphore(0)
    model = FakeModel(gate=gate, fail_when=oom_above(1))
    prompts = ["one", "two", "three"]

    async def test(scheduler: Scheduler) -> None:
        blocker = submit(scheduler, "zero", greedy(3))
        await asyncio.to_thread(wait_until, lambda: scheduler.running == 1)
        generations = [submit(scheduler, p, greedy(3)) for p in prompts]
        gate.release(10_000)
        results = await asyncio.gather(*(collect(g) for g in [blocker, *generations]))
        assert [text for text, _ in results] == [expected_text(p, 3) for p in ["zero", *prompts]]

    scenario(model, test)
    assert all(len(batch) == 1 for batch in model.decode_batches + model.prefill_batches)


def test_drain_finishes_running_work_then_refuses() -> None:
    model = FakeModel()

    async def test(scheduler: Scheduler) -> None:
        generations = [submit(scheduler, p, greedy(5)) for p in ("a", "b")]
        assert await scheduler.drain(5)
        results = await asyncio.gather(*(collect(g) for g in generations))
        assert [text for text, _ in results] == [expected_text(p, 5) for p in ("a", "b")]
        with pytest.raises(NotReady):
            submit(scheduler, "late", greedy(5))

    scenario(model, test)


def test_the_observer_sees_every_sequence_and_token() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.calls: dict[str, list[Any]] = {}

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *args: self.calls.setdefault(name, []).append(args)

    recorder = Recorder()
    model = FakeModel()

    async def run() -> None:
        scheduler = Scheduler(
            model,
            max_running=4,
            max_waiting=4,
            max_tokens_per_step=256,
            context_length=64,
            request_timeout_s=10,
            observer=recorder,
        )
        scheduler.start()
        generations = [scheduler.submit([TOKENIZER.encode(p)], greedy(4)) for p in ("ab", "cde")]
        await asyncio.gather(*(collect(g) for g in generations))
        await scheduler.drain(5)

    run_async(run())
    calls = recorder.calls
    assert sorted(args[0] for args in calls["sequence_admitted"]) == [2, 3]
    assert all(args[1] >= 0 for args in calls["sequence_admitted"])  # the wait for a slot
    assert len(calls["first_token"]) == 2
    assert len(calls["inter_token"]) == 2 * 3
    assert sum(args[0] for args in calls["tokens_generated"]) == 8
    assert calls["sequences"][-1] == (0, 0, 0.0)
    # KV-cache use: positions held over 4 slots x 64; at most both prompts (2 + 3) with their
    # 4 tokens each, and never after they finished
    usage = [kv for _, _, kv in calls["sequences"]]
    assert 0 < max(usage) <= (2 + 3 + 2 * 4) / (4 * 64)
    assert all(seconds >= 0 for (seconds,) in calls["first_token"] + calls["inter_token"])
