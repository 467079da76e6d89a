"""The KV cache and batching are exact, the model fits its contract, warmup covers every shape.

All but the reference test hold for any model that satisfies ``model.py``'s contract.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import model as model_module
from {{ cookiecutter.package_name }}.llm.kv_cache import cache_length
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.warmup import warmup_batch_sizes

from .conftest import make_settings

TOLERANCE = {"atol": 2e-3, "rtol": 2e-3}
DEMO_GREEDY = "~Rt?p2&y"  # from "The demo model says"


@pytest.fixture(scope="module")
def model(model_path: Path) -> Model:
    loaded = Model(make_settings(model_path, intra_op_threads=1))
    loaded.load()
    return loaded


def test_cached_decode_matches_a_full_recompute(model: Model) -> None:
    """Each decode step reuses the cache, and gives what rerunning the whole sequence gives."""
    sequence = model.tokenizer.encode("The cache must not change the answer.")
    logits, caches = model.prefill([sequence])
    for _ in range(4):
        token = int(logits[0].argmax())
        sequence.append(token)
        logits, caches = model.decode([token], caches)
        recomputed, _ = model.prefill([sequence])
        np.testing.assert_allclose(logits[0], recomputed[0], **TOLERANCE)
    assert cache_length(caches[0]) == len(sequence)


def test_a_padded_batch_matches_each_sequence_alone(model: Model) -> None:
    prompts = [
        model.tokenizer.encode(t) for t in ("short", "a rather longer prompt than that", "mid-size")
    ]
    batch_logits, batch_caches = model.prefill(prompts)
    tokens = [int(row.argmax()) for row in batch_logits]
    # caches of three different lengths decode together
    step_logits, step_caches = model.decode(tokens, batch_caches)
    for i, prompt in enumerate(prompts):
        alone, cache = model.prefill([prompt])
        np.testing.assert_allclose(batch_logits[i], alone[0], **TOLERANCE)
        alone_step, alone_cache = model.decode([tokens[i]], cache)
        np.testing.assert_allclose(step_logits[i], alone_step[0], **TOLERANCE)
        assert cache_length(step_caches[i]) == cache_length(alone_cache[0]) == len(prompt) + 1


def test_sequences_from_different_steps_batch_together(model: Model) -> None:
    """A decode batch mixes caches of several earlier calls, in any order, some left out."""
    first = [model.tokenizer.encode(t) for t in ("one prompt", "another, longer prompt")]
    second = [model.tokenizer.encode("joined later")]
    logits_a, caches_a = model.prefill(first)
    logits_b, caches_b = model.prefill(second)
    tokens = [int(logits_b[0].argmax()), int(logits_a[1].argmax())]
    mixed, _ = model.decode(tokens, [caches_b[0], caches_a[1]])  # caches_a[0] left the batch
    for row, (prompt, token) in enumerate(zip([second[0], first[1]], tokens, strict=True)):
        _, cache = model.prefill([prompt])
        alone, _ = model.decode([token], cache)
        np.testing.assert_allclose(mixed[row], alone[0], **TOLERANCE)


def test_logits_cover_the_declared_vocabulary(model: Model) -> None:
    logits, caches = model.prefill([model.tokenizer.encode("x")] * 2)
    assert logits.shape == (2, model.vocab_size) == (2, model_module.VOCAB_SIZE)
    assert model.tokenizer.vocab_size <= model.vocab_size
    logits, _ = model.decode([0, 1], caches)
    assert logits.shape == (2, model.vocab_size)
    assert model.context_length == model_module.CONTEXT_LENGTH


@pytest.mark.reference
def test_the_demo_model_answers_as_built(model: Model) -> None:
    """Greedy tokens of the demo's fixed-seed weights (both backends build the same values)."""
    assert (model.vocab_size, model.context_length) == (259, 1024)
    sequence = model.tokenizer.encode("The demo model says")
    assert len(sequence) == len(b"The demo model says")  # byte-level tokens
    logits, caches = model.prefill([sequence])
    greedy = []
    for _ in range(8):
        greedy.append(int(logits[0].argmax()))
        logits, caches = model.decode([greedy[-1]], caches)
    assert model.tokenizer.decode(greedy) == DEMO_GREEDY


def test_warmup_covers_prefill_and_decode_shapes_before_ready(model_path: Path) -> None:
    prefills: list[tuple[int, int]] = []
    decodes: list[tuple[int, int]] = []

    class Recording(Model):
        def prefill(self, prompts):  # type: ignore[no-untyped-def]
            prefills.append((len(prompts), max(len(p) for p in prompts)))
            return super().prefill(prompts)

        def decode(self, tokens, caches):  # type: ignore[no-untyped-def]
            decodes.append((len(tokens), max(cache_length(c) for c in caches)))
            return super().decode(tokens, caches)

    settings = make_settings(model_path, max_running_sequences=4, intra_op_threads=1)
    with TestClient(create_app(settings, model_factory=Recording)) as client:
        assert client.get("/health/ready").status_code == 200
        context = client.app.state.service.context_length
    sizes = warmup_batch_sizes(4)
    assert {size for size, _ in prefills} == set(sizes)
    assert {size for size, _ in decodes} == set(sizes)
    assert (1, context - 1) in prefills  # the longest prompt
    assert (4, context - 1) in decodes  # the biggest decode batch at the longest past


def test_the_model_is_loaded_warmed_and_stepped_on_one_thread(model_path: Path) -> None:
    """torch's OpenMP pool slows down once a second thread has computed (llm/engine_thread)."""
    threads: dict[str, set[int]] = {"load": set(), "prefill": set(), "decode": set()}

    class Recording(Model):
        def load(self) -> None:
            threads["load"].add(threading.get_ident())
            super().load()

        def prefill(self, prompts):  # type: ignore[no-untyped-def]
            threads["prefill"].add(threading.get_ident())
            return super().prefill(prompts)

        def decode(self, tokens, caches):  # type: ignore[no-untyped-def]
            threads["decode"].add(threading.get_ident())
            return super().decode(tokens, caches)

    settings = make_settings(model_path, max_running_sequences=2, intra_op_threads=1)
    with TestClient(create_app(settings, model_factory=Recording)) as client:
        warmed = {name: set(ids) for name, ids in threads.items()}
        body = {"model": settings.model_name, "prompt": "once upon", "max_tokens": 4}
        assert client.post("/v1/completions", json=body).status_code == 200
    assert len(threads["load"]) == 1
    assert warmed["prefill"] == warmed["decode"] == threads["load"]  # warmup
    assert threads["prefill"] == threads["decode"] == threads["load"]  # serving
    assert threading.get_ident() not in threads["load"]
