"""Requests with known answers for the workload-agnostic resilience tests: speech.

Each index names a distinct text and voice; the answer is the PCM audio, so
audio delivered to the wrong request is caught.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import numpy as np

from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import JSON_HEADERS, Hostile

DISTINCT_REQUESTS = 12
# The Model methods that run the network: the tests slow them down or make them fail.
COMPUTE_METHODS = ("predict",)
# Seconds one slowed-down call takes in the draining test (one batch of two chunks).
SLOW_CALL_S = 0.4
ROUTE = "/v1/audio/speech"
# The JSON route the generic hostile-input tests aim at.
JSON_ROUTE = ROUTE

_MODEL = Settings(_env_file=None).model_name
_VOICES = list(Model.voices)

Answer = np.ndarray


async def send(client: httpx.AsyncClient, index: int, model: str = _MODEL) -> httpx.Response:
    index %= DISTINCT_REQUESTS
    body = {
        "model": model,
        # one sentence, so one chunk: each request is one batcher item, like other workloads'
        "input": f"Request number {index} says " + "word " * (1 + index % 4),
        "voice": _VOICES[index % len(_VOICES)],
        "response_format": "pcm",
    }
    return await client.post(ROUTE, json=body)


def answer_of(response: httpx.Response) -> Answer:
    return np.frombuffer(response.content, dtype="<i2")


def same_answer(got: Answer, expected: Answer) -> bool:
    # batched and single calls may round differently: within -60 dB is the same audio
    return len(got) == len(expected) and int(np.abs(got.astype(np.int32) - expected).max()) <= 33


def fingerprint(answer: Answer) -> Any:
    """What must differ between two distinct requests' answers."""
    return (len(answer), int(np.abs(answer.astype(np.int32)).sum() // 1000))


def capacity(concurrent: int, queued: int) -> dict[str, Any]:
    """Settings that compute ``concurrent`` requests at once and let ``queued`` more wait."""
    return {"max_batch_size": concurrent, "max_queue_size": queued, "max_batch_wait_ms": 2}


def pending(service: Any) -> int:
    """Requests admitted and not yet answered."""
    return service.batcher.depth


def hostile_requests() -> dict[str, Hostile]:
    """Hostile input only this workload has: absurd texts, voices and speeds."""
    base = {"model": _MODEL, "input": "hi", "voice": _VOICES[0]}
    return {
        "input-over-the-limit": Hostile(
            ROUTE, {"json": {**base, "input": "x" * 100_000}}, 400, "input"
        ),
        "unknown-voice": Hostile(ROUTE, {"json": {**base, "voice": "x" * 10_000}}, 400, "voice"),
        "absurd-speed": Hostile(ROUTE, {"json": {**base, "speed": 1e308}}, 400, "speed"),
        "nan-speed": Hostile(
            ROUTE,
            {"content": json.dumps({**base, "speed": math.nan}), "headers": JSON_HEADERS},
            400,
            "speed",
        ),
    }
