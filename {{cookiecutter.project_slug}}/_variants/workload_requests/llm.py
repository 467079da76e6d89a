"""Requests with known answers for the workload-agnostic resilience tests: text generation.

Each index names a distinct prompt, generated greedily; the answer is the text
with its finish reason and token counts, so text delivered to the wrong
request is caught.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx

from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import JSON_HEADERS, Hostile

DISTINCT_REQUESTS = 12
# The Model methods that run the network: the tests slow them down or make them fail.
COMPUTE_METHODS = ("prefill", "decode")
# Seconds one slowed-down call takes in the draining test (a request makes 1 + MAX_TOKENS calls).
SLOW_CALL_S = 0.05
MAX_TOKENS = 6
ROUTE = "/v1/completions"
# The JSON route the generic hostile-input tests aim at.
JSON_ROUTE = ROUTE

_MODEL = Settings(_env_file=None).model_name

Answer = tuple[str, str, dict[str, int]]


async def send(client: httpx.AsyncClient, index: int, model: str = _MODEL) -> httpx.Response:
    index %= DISTINCT_REQUESTS
    body = {
        "model": model,
        "prompt": f"Request {index}: {'tell me ' * (index % 4)}about the number {index * 37}",
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }
    return await client.post(ROUTE, json=body)


def answer_of(response: httpx.Response) -> Answer:
    body = response.json()
    choice = body["choices"][0]
    return choice["text"], choice["finish_reason"], body["usage"]


def same_answer(got: Answer, expected: Answer) -> bool:
    return got == expected


def fingerprint(answer: Answer) -> Any:
    """What must differ between two distinct requests' answers."""
    return answer[0], answer[2]["prompt_tokens"]


def capacity(concurrent: int, queued: int) -> dict[str, Any]:
    """Settings that generate ``concurrent`` sequences at once and let ``queued`` more wait."""
    return {"max_running_sequences": concurrent, "max_waiting_sequences": queued}


def pending(service: Any) -> int:
    """Sequences admitted and not yet finished."""
    return service.scheduler.waiting + service.scheduler.running


def hostile_requests() -> dict[str, Hostile]:
    """Hostile input only this workload has: absurd generation parameters and prompts."""
    base = {"model": _MODEL, "prompt": "hi"}
    chat = "/v1/chat/completions"
    return {
        "huge-max-tokens": Hostile(
            ROUTE, {"json": {**base, "max_tokens": 10**12}}, 400, "max_tokens"
        ),
        "huge-n": Hostile(ROUTE, {"json": {**base, "n": 10**6}}, 400, "n"),
        "token-ids-outside-the-vocabulary": Hostile(
            ROUTE, {"json": {**base, "prompt": [2**40]}}, 400, "prompt"
        ),
        "prompt-longer-than-the-context": Hostile(
            ROUTE, {"json": {**base, "prompt": "x" * 100_000}}, 400, "prompt"
        ),
        "nan-temperature": Hostile(
            ROUTE,
            {"content": json.dumps({**base, "temperature": math.nan}), "headers": JSON_HEADERS},
            400,
            "temperature",
        ),
        "message-without-role": Hostile(
            chat, {"json": {"model": _MODEL, "messages": [{"content": "hi"}]}}, 400, "role"
        ),
    }
