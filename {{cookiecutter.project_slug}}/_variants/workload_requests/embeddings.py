"""Requests with known answers for the workload-agnostic resilience tests: text embeddings.

Each index names a distinct text; the answer is its vector, so a vector
delivered to the wrong request is caught.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import JSON_HEADERS, Hostile

DISTINCT_REQUESTS = 12
# The Model methods that run the network: the tests slow them down or make them fail.
COMPUTE_METHODS = ("predict",)
# Seconds one slowed-down call takes in the draining test (one batch of two texts).
SLOW_CALL_S = 0.4
ROUTE = "/v1/embeddings"
# The JSON route the generic hostile-input tests aim at.
JSON_ROUTE = ROUTE

_MODEL = Settings(_env_file=None).model_name
_TEXTS = [
    f"Request {index}: {'a quick brown fox ' * (index % 3)}jumps over {index * 7} lazy dogs"
    for index in range(DISTINCT_REQUESTS)
]

Answer = np.ndarray


async def send(client: httpx.AsyncClient, index: int, model: str = _MODEL) -> httpx.Response:
    body = {"model": model, "input": _TEXTS[index % DISTINCT_REQUESTS]}
    return await client.post(ROUTE, json=body)


def answer_of(response: httpx.Response) -> Answer:
    return np.asarray(response.json()["data"][0]["embedding"], dtype=np.float32)


def same_answer(got: Answer, expected: Answer) -> bool:
    return got.shape == expected.shape and bool(np.allclose(got, expected, atol=1e-5))


def fingerprint(answer: Answer) -> Any:
    """What must differ between two distinct requests' answers."""
    return tuple(np.round(answer[:8], 3).tolist())


def capacity(concurrent: int, queued: int) -> dict[str, Any]:
    """Settings that compute ``concurrent`` requests at once and let ``queued`` more wait."""
    return {"max_batch_size": concurrent, "max_queue_size": queued, "max_batch_wait_ms": 2}


def pending(service: Any) -> int:
    """Requests admitted and not yet answered."""
    return service.batcher.depth


def hostile_requests() -> dict[str, Hostile]:
    """Hostile input only this workload has: absurd input lists, lengths and token ids."""
    return {
        "too-many-inputs": Hostile(ROUTE, {"json": {"input": ["a"] * 10_000}}, 400, "input"),
        "input-over-the-token-limit": Hostile(
            ROUTE, {"json": {"input": "word " * 20_000}}, 400, "input"
        ),
        "token-id-out-of-range": Hostile(
            ROUTE, {"json": {"input": [[1, 2], [3, 10**30]]}}, 400, "input[1][1]"
        ),
        "token-array-over-the-limit": Hostile(
            ROUTE, {"json": {"input": [[1] * 100_000]}}, 400, "input[0]"
        ),
        "lone-surrogate": Hostile(
            ROUTE,
            {"content": b'{"input": "\\ud800"}', "headers": JSON_HEADERS},
            400,
            "input",
        ),
        "huge-dimensions": Hostile(
            ROUTE, {"json": {"input": "hi", "dimensions": 10**12}}, 400, "dimensions"
        ),
    }
