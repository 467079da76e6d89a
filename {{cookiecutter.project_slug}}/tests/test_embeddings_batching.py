"""Batching text by inputs and tokens (request splitter, batcher cost budget), disconnects."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.embeddings.tokens import (
    chunk,
    length_groups,
    pad,
    run_embedding_batch,
)
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.batcher import Batcher

from .conftest import make_settings, running_app


def sequences(*lengths: int) -> list[list[int]]:
    return [[index] * length for index, length in enumerate(lengths)]


def test_chunk_respects_items_and_tokens_and_keeps_order() -> None:
    inputs = sequences(3, 4, 5, 2, 9, 1, 1)
    payloads = chunk(inputs, max_items=3, max_tokens=8)
    assert [[s[0] for s in payload] for payload in payloads] == [[0, 1], [2, 3], [4], [5, 6]]
    assert [s for payload in payloads for s in payload] == inputs
    for payload in payloads:
        assert len(payload) <= 3
        assert sum(map(len, payload)) <= 8 or len(payload) == 1  # only a lone input may exceed


def test_chunk_bounds_items() -> None:
    assert [len(p) for p in chunk(sequences(*[1] * 7), max_items=3, max_tokens=1000)] == [3, 3, 1]


def test_pad_masks_the_padding() -> None:
    input_ids, mask = pad([[5, 6, 7], [8]], pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


class RowIdModel:
    """Embeds a sequence as [first id, length]: enough to see which row went where."""

    def predict(self, batch: list[list[int]]) -> np.ndarray:
        return np.array([[s[0], len(s)] for s in batch], dtype=np.float32)


def test_run_embedding_batch_gives_each_payload_its_rows() -> None:
    payloads = [sequences(2, 3), [[7, 7]], [[9], [4, 4, 4, 4]]]
    results = run_embedding_batch(RowIdModel(), payloads)
    assert [r.tolist() for r in results] == [[[0, 2], [1, 3]], [[7, 2]], [[9, 1], [4, 4]]]


def test_length_groups_cut_where_padding_would_pass_the_bound() -> None:
    lengths = [40, 10, 11, 41, 12, 39, 10, 42]
    groups = length_groups(lengths, call_tokens=20, max_padding=0.2)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    assert [[lengths[i] for i in group] for group in groups] == [[10, 10, 11, 12], [39, 40, 41, 42]]
    for group in groups:
        padded = len(group) * max(lengths[i] for i in group)
        assert padded - sum(lengths[i] for i in group) <= 0.2 * padded


def test_length_groups_keep_small_groups_together() -> None:
    """Padding cheaper than another model call is kept: a call has a fixed cost."""
    assert length_groups([5, 50, 6], call_tokens=100, max_padding=0.1) == [[0, 2, 1]]
    assert length_groups([5, 50, 6], call_tokens=10, max_padding=0.1) == [[0, 2], [1]]


def test_run_embedding_batch_groups_by_length_and_puts_rows_back() -> None:
    calls: list[list[int]] = []

    class RecordingModel(RowIdModel):
        def predict(self, batch: list[list[int]]) -> np.ndarray:
            calls.append([len(s) for s in batch])
            return super().predict(batch)

    long, short = [[5] * 300, [6] * 290], [[7] * 3, [8] * 4]
    payloads = [[long[0], short[0]], [short[1], long[1]]]
    results = run_embedding_batch(RecordingModel(), payloads)
    assert [r.tolist() for r in results] == [[[5, 300], [7, 3]], [[8, 4], [6, 290]]]
    assert calls == [[3, 4], [290, 300]]  # no call pads a 3-token input to 300


def run_batcher(
    max_batch_size: int, max_batch_cost: int | None, costs: list[int]
) -> tuple[list[Any], list[list[int]]]:
    """Queue one item per cost at once; return the results and each dispatched batch's costs."""
    dispatched: list[list[int]] = []

    def run_batch(model: Any, payloads: list[Any]) -> list[Any]:
        dispatched.append([cost for _, cost in payloads])
        return [f"result {index}" for index, _ in payloads]

    async def scenario() -> list[Any]:
        batcher: Batcher[Any] = Batcher(
            run_batch,
            [object()],
            max_batch_size=max_batch_size,
            max_wait_s=0.05,
            max_queue_size=100,
            max_batch_cost=max_batch_cost,
        )
        futures = [batcher.submit((i, cost), 1, cost=cost) for i, cost in enumerate(costs)]
        batcher.start()
        results = await asyncio.gather(*futures)
        await batcher.drain(5)
        return results

    return asyncio.run(scenario()), dispatched


def test_batches_are_bounded_by_cost() -> None:
    costs = [30, 30, 30, 50, 10, 10, 100, 5]
    results, dispatched = run_batcher(max_batch_size=32, max_batch_cost=64, costs=costs)
    assert results == [f"result {i}" for i in range(len(costs))]
    assert dispatched == [[30, 30], [30], [50, 10], [10], [100], [5]]


def test_an_item_over_the_budget_runs_alone() -> None:
    _, dispatched = run_batcher(max_batch_size=8, max_batch_cost=10, costs=[25, 1, 1])
    assert dispatched == [[25], [1, 1]]


def test_without_a_budget_only_items_count() -> None:
    _, dispatched = run_batcher(max_batch_size=3, max_batch_cost=None, costs=[100, 100, 100, 100])
    assert dispatched == [[100, 100, 100], [100]]


@pytest.mark.parametrize("budget", [64, 1000])
def test_a_full_token_budget_dispatches_without_waiting(budget: int) -> None:
    """Another request is on its way, so a batch would wait for it, unless its budget is full."""
    dispatched: list[Any] = []

    async def scenario() -> None:
        def run_batch(model: Any, payloads: list[Any]) -> list[Any]:
            dispatched.extend(payloads)
            return payloads

        batcher: Batcher[Any] = Batcher(
            run_batch,
            [object()],
            max_batch_size=32,
            max_wait_s=5.0,
            max_queue_size=100,
            max_batch_cost=budget,
        )
        batcher.start()
        arriving = batcher.admit()  # a request still reading its body
        future = batcher.submit("x", 1, cost=64)
        await asyncio.sleep(0.1)
        assert dispatched == (["x"] if budget <= 64 else [])
        arriving.release()  # nothing else is coming: what waits goes now
        assert await asyncio.wait_for(future, 1.0) == "x"
        await batcher.drain(1)

    asyncio.run(scenario())


def test_a_client_that_disconnects_is_dropped_before_compute(model_path: Path) -> None:
    """While the model is busy, a request whose client has gone never reaches it (499)."""
    gate = threading.Event()
    calls: list[int] = []

    class GatedModel(Model):
        serving = False

        def predict(self, sequences: list[list[int]]) -> np.ndarray:
            if self.serving:
                calls.append(len(sequences))
                gate.wait(timeout=30)
            return super().predict(sequences)

    app = create_app(make_settings(model_path, max_batch_size=1), model_factory=GatedModel)

    async def gone_client() -> int:
        """Send a whole request, then disconnect at once; return the status it was given."""
        body = json.dumps({"input": "nobody waits for this"}).encode()
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/embeddings",
            "raw_path": b"/v1/embeddings",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        await app(scope, receive, send)
        return statuses[0]

    async def scenario() -> None:
        async with running_app(app) as client:
            app.state.service.model.serving = True
            busy = asyncio.ensure_future(client.post("/v1/embeddings", json={"input": "first"}))
            while not calls:  # the first request holds the only worker
                await asyncio.sleep(0.01)
            assert await gone_client() == 499
            gate.set()
            assert (await busy).status_code == 200
            assert app.state.service.batcher.stats.skipped == 1
        assert calls == [1]  # only the first request reached the model

    asyncio.run(scenario())
