"""Requests with known answers for the workload-agnostic resilience tests: image classification.

Each index names a distinct image; the answer is the whole ranking with its
scores, different for every image, so a result delivered to the wrong request
is caught. Tensor names and shapes come from the contract in ``model.py``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np

from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.vision.v2 import NUMPY_TO_V2

from .conftest import Hostile
from .images import image_bytes, png_bomb

DISTINCT_REQUESTS = 12
# The Model methods that run the network: the tests slow them down or make them fail.
COMPUTE_METHODS = ("predict",)
# Seconds one slowed-down call takes in the draining test (one batch of two images).
SLOW_CALL_S = 0.4
ROUTE = "/v1/classify"
V2_INFER = f"/v2/models/{Settings(_env_file=None).model_name}/infer"
# The JSON route the generic hostile-input tests aim at (the native route takes images).
JSON_ROUTE = V2_INFER

_IMAGES = [image_bytes(seed) for seed in range(DISTINCT_REQUESTS)]

Answer = list[tuple[str, float]]


async def send(client: httpx.AsyncClient, index: int) -> httpx.Response:
    files = {"file": ("x.png", _IMAGES[index % DISTINCT_REQUESTS])}
    return await client.post(ROUTE, files=files, params={"k": 100})


def answer_of(response: httpx.Response) -> Answer:
    return [(p["label"], p["score"]) for p in response.json()["predictions"]]


def same_answer(got: Answer, expected: Answer) -> bool:
    return [label for label, _ in got] == [label for label, _ in expected] and np.allclose(
        [score for _, score in got], [score for _, score in expected], rtol=1e-4, atol=1e-6
    )


def fingerprint(answer: Answer) -> Any:
    """What must differ between two distinct requests' answers: the ranking and its scores.

    Four decimals, the resolution of ``same_answer``: a small model's scores may
    differ between images only in the third.
    """
    return tuple((label, round(score, 4)) for label, score in answer)


def capacity(concurrent: int, queued: int) -> dict[str, Any]:
    """Settings that compute ``concurrent`` requests at once and let ``queued`` more wait."""
    return {"max_batch_size": concurrent, "max_queue_size": queued, "max_batch_wait_ms": 2}


def pending(service: Any) -> int:
    """Requests admitted and not yet answered."""
    return service.batcher.depth


def hostile_requests() -> dict[str, Hostile]:
    """Hostile input only this workload has: image bombs and absurd tensors."""
    shape = list(Model.input_shape)
    tensor = {
        "name": Model.input_name,
        "datatype": NUMPY_TO_V2[np.dtype(Model.input_dtype)],
        "data": [0.0],
    }
    header = json.dumps(
        {"inputs": [{**tensor, "shape": [1, *shape], "parameters": {"binary_data_size": 2**40}}]}
    ).encode()
    return {
        "decompression-bomb": Hostile(
            ROUTE, {"files": {"file": ("b.png", png_bomb())}}, 413, "file"
        ),
        "absurd-tensor-shape": Hostile(
            V2_INFER, {"json": {"inputs": [{**tensor, "shape": [2**62, *shape]}]}}, 400, "shape"
        ),
        "negative-tensor-shape": Hostile(
            V2_INFER, {"json": {"inputs": [{**tensor, "shape": [-1, *shape]}]}}, 400, "shape"
        ),
        "absurd-binary-size": Hostile(
            V2_INFER,
            {"content": header, "headers": {"Inference-Header-Content-Length": str(len(header))}},
            400,
            "declares",
        ),
    }
