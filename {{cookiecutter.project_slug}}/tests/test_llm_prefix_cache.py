"""Prefix caching: reused prefixes give the answers a full prefill gives, in bounded memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.llm.kv_cache import cache_length
from {{ cookiecutter.package_name }}.llm.prefix_cache import BLOCK_TOKENS, PrefixCache
from {{ cookiecutter.package_name }}.llm.sampling import SamplingParams
from {{ cookiecutter.package_name }}.llm.scheduler import Scheduler
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.errors import StartupFailed

from .conftest import make_settings

TOLERANCE = {"atol": 2e-3, "rtol": 2e-3}
SYSTEM = "You are a terse assistant. Answer in one line, no preamble. " * 4
COMPLETION = {"max_tokens": 8, "temperature": 0}


@pytest.fixture(scope="module")
def model(model_path: Path) -> Model:
    loaded = Model(make_settings(model_path))
    loaded.load()
    return loaded


def shared_start(model: Model, limit: int) -> list[int]:
    """The tokens of a system prompt, at most half of ``limit`` (a team model may be short)."""
    return model.tokenizer.encode(SYSTEM)[: limit // 2]


def ids(model: Model, count: int, seed: int = 0) -> list[int]:
    """``count`` token ids the tokenizer has, in a repeatable order."""
    vocab = model.tokenizer.vocab_size
    return [(seed + 7 * i) % vocab for i in range(count)]


def expected_hit(stored: list[int], prompt: list[int]) -> int:
    pairs = zip(stored, prompt, strict=False)
    common = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(stored), len(prompt)))
    return min(common, len(prompt) - 1) // BLOCK_TOKENS * BLOCK_TOKENS


def test_extend_after_cached_prefixes_matches_whole_prefills(model: Model) -> None:
    """A batch of prompts with different cached prefixes and remainders of different lengths
    (the shorter ones padded between past and new tokens) answers as whole prefills do."""
    limit = min(model.context_length, 256) - 1
    shared = shared_start(model, limit)
    assert len(shared) >= 2 * BLOCK_TOKENS
    prompts = [
        shared + ids(model, 5, seed=1),
        shared + ids(model, 30, seed=2),
        shared[: len(shared) // 3] + ids(model, 12, seed=3),
    ]
    prompts = [p[:limit] for p in prompts]
    cache = PrefixCache(2**26)
    whole, whole_caches = model.prefill(prompts)
    cache.store(prompts[0], whole_caches[0])
    hits = [cache.lookup(p) for p in prompts]
    assert [h.length for h in hits] == [expected_hit(prompts[0], p) for p in prompts]
    assert all(h.length >= BLOCK_TOKENS for h in hits)
    extended, caches = model.extend(
        [p[h.length :] for p, h in zip(prompts, hits, strict=True)], [h.cache for h in hits]
    )
    np.testing.assert_allclose(extended, whole, **TOLERANCE)
    assert [cache_length(c) for c in caches] == [len(p) for p in prompts]
    # the next steps decode from either cache alike
    next_tokens = [int(t) for t in whole.argmax(-1)]
    after_whole, _ = model.decode(next_tokens, whole_caches)
    after_extend, _ = model.decode(next_tokens, caches)
    np.testing.assert_allclose(after_extend, after_whole, **TOLERANCE)


def test_lookup_finds_the_longest_cached_run_of_whole_blocks(model: Model) -> None:
    cache = PrefixCache(2**26)
    first = ids(model, 3 * BLOCK_TOKENS + 5)
    _, caches = model.prefill([first])
    cache.store(first, caches[0])
    assert cache.blocks == 3
    # a prompt always keeps a token to compute, even when it is all cached
    assert cache.lookup(first[: 3 * BLOCK_TOKENS]).length == 2 * BLOCK_TOKENS
    assert cache.lookup(first[: 3 * BLOCK_TOKENS + 1]).length == 3 * BLOCK_TOKENS
    changed = list(first)
    changed[BLOCK_TOKENS + 2] = (changed[BLOCK_TOKENS + 2] + 1) % model.tokenizer.vocab_size
    assert cache.lookup(changed).length == BLOCK_TOKENS  # it differs inside the second block
    assert cache.lookup(ids(model, 40, seed=1)).length == 0


def test_a_block_is_reused_only_behind_the_same_prefix(model: Model) -> None:
    """The same tokens after a different start have other keys and values: no hit."""
    cache = PrefixCache(2**26)
    block, tail = ids(model, BLOCK_TOKENS, seed=5), ids(model, 4, seed=6)
    stored = ids(model, BLOCK_TOKENS, seed=1) + block + tail
    _, caches = model.prefill([stored])
    cache.store(stored, caches[0])
    assert cache.lookup(ids(model, BLOCK_TOKENS, seed=2) + block + tail).length == 0


def test_memory_stays_bounded_and_evicts_chains_from_their_ends(model: Model) -> None:
    prompt = ids(model, 4 * BLOCK_TOKENS + 1)
    _, caches = model.prefill([prompt])
    probe = PrefixCache(2**26)
    probe.store(prompt, caches[0])
    block_bytes = probe.bytes // 4
    cache = PrefixCache(3 * block_bytes)
    cache.store(prompt, caches[0])
    assert cache.bytes <= 3 * block_bytes and cache.blocks == 3
    assert cache.lookup(prompt).length == 3 * BLOCK_TOKENS  # the first three blocks stayed
    for i in range(20):  # other prompts push it out; the bound holds throughout
        other = ids(model, 2 * BLOCK_TOKENS + 1, seed=i + 1)
        _, other_caches = model.prefill([other])
        cache.store(other, other_caches[0])
        assert cache.bytes <= cache.max_bytes
    assert cache.lookup(prompt).length == 0
    assert cache.lookup(other).length == 2 * BLOCK_TOKENS  # the newest is cached


def test_the_token_budget_counts_only_the_tokens_after_a_cached_prefix(model: Model) -> None:
    """Four prompts of 100 tokens with a cached start of 96 fit one step's budget of 64."""
    shared = ids(model, 6 * BLOCK_TOKENS)
    scheduler = Scheduler(
        model,
        max_running=8,
        max_waiting=8,
        max_tokens_per_step=64,
        context_length=min(model.context_length, 256),
        request_timeout_s=30,
        prefix_cache=PrefixCache(2**26),
        keep_history=True,
    )
    params = SamplingParams(max_tokens=2, temperature=0)

    async def run() -> None:
        scheduler.start()
        first = scheduler.submit([[*shared, 1]], params)
        async for _ in first.events():
            pass
        # four prompts queued at once (one request), each 100 tokens long
        later = scheduler.submit([[*shared, *ids(model, 4, seed=i)] for i in range(4)], params)
        async for _ in later.events():
            pass
        await scheduler.drain(10)

    asyncio.run(run())
    assert len(scheduler.stats.prefill_batches) == 2, scheduler.stats.prefill_batches
    assert len(scheduler.stats.prefill_batches[-1]) == 4  # all four in one step
    assert scheduler.stats.cached_prompt_tokens == 4 * len(shared)


@pytest.fixture(scope="module")
def served(model_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """The same model with prefix caching (the default) and without."""
    with (
        TestClient(create_app(make_settings(model_path))) as cached,
        TestClient(create_app(make_settings(model_path, prefix_cache_mb=0))) as uncached,
    ):
        yield cached, uncached


def complete(client: TestClient, prompt: str | list[int]) -> str:
    body = {"model": client.get("/v1/models").json()["data"][0]["id"], "prompt": prompt}
    response = client.post("/v1/completions", json=body | COMPLETION)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


{%- if cookiecutter.monitoring == 'prometheus' %}


def hit_tokens(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("inference_prefix_cache_hit_tokens_total{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("inference_prefix_cache_hit_tokens_total is not exported")
{%- endif %}


def test_served_answers_are_the_same_with_and_without_the_cache(
    served: tuple[TestClient, TestClient],
) -> None:
    """Concurrent requests sharing a system prompt, each checked against a service that
    prefills every prompt whole: cached prefixes never change or mix up an answer."""
    cached, uncached = served
    service = cached.app.state.service
    assert service.scheduler.prefix_cache is not None
    assert uncached.app.state.service.scheduler.prefix_cache is None
    tokenizer, limit = service.model.tokenizer, service.context_length - COMPLETION["max_tokens"]
    shared = shared_start(service.model, limit)
    questions = [
        (shared + tokenizer.encode(f" Question {i}: " + "why " * i))[:limit] for i in range(12)
    ]
    expected = [complete(uncached, q) for q in questions]
    assert len(set(expected)) > 1, "the model answers every prompt alike: no mix-up to see"
    stats = service.scheduler.stats
    before, extends = stats.cached_prompt_tokens, stats.extend_calls
{%- if cookiecutter.monitoring == 'prometheus' %}
    exported = hit_tokens(cached)
{%- endif %}
    assert complete(cached, questions[0]) == expected[0]  # a miss: fills the cache
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda q: complete(cached, q), questions))
    assert answers == expected
    assert stats.extend_calls > extends
    assert stats.cached_prompt_tokens - before >= 12 * (len(shared) // BLOCK_TOKENS * BLOCK_TOKENS)
{%- if cookiecutter.monitoring == 'prometheus' %}
    assert hit_tokens(cached) - exported == stats.cached_prompt_tokens - before
{%- endif %}


def test_an_extend_that_disagrees_with_prefill_fails_start_up(model_path: Path) -> None:
    class IgnoresThePast(Model):
        def extend(self, tokens, caches):  # type: ignore[no-untyped-def]
            return self.prefill(tokens)

    app = create_app(make_settings(model_path), model_factory=IgnoresThePast)
    disagrees = r"Model\.extend after a cached prefix disagrees"
    with pytest.raises(StartupFailed, match=disagrees), TestClient(app):
        pass


def test_a_model_without_extend_is_served_without_prefix_caching(model_path: Path) -> None:
    class NoExtend(Model):
        extend = property()  # type: ignore[assignment]  # hasattr() is False

    with TestClient(create_app(make_settings(model_path), model_factory=NoExtend)) as client:
        assert client.app.state.service.scheduler.prefix_cache is None
        service = client.app.state.service
        shared = shared_start(service.model, service.context_length - 8)
        assert complete(client, [*shared, 1])
        assert complete(client, [*shared, 2])
