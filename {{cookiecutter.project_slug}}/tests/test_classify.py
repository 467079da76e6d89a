"""POST /v1/classify: top-k labels for JPEG and PNG uploads, clear 4xx for bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.main import create_app

from .conftest import make_settings, run_async, running_app
from .images import image_bytes, png_bomb


def classify(client: TestClient, data: bytes, k: int | None = None, name: str = "image.png"):  # type: ignore[no-untyped-def]
    params = {} if k is None else {"k": k}
    return client.post(
        "/v1/classify", files={"file": (name, data, "application/octet-stream")}, params=params
    )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_classifies_an_image(client: TestClient, fmt: str) -> None:
    response = classify(client, image_bytes(1, fmt=fmt), k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "{{ cookiecutter.project_slug }}"
    labels = client.app.state.service.model.labels
    predictions = body["predictions"]
    assert len(predictions) == min(3, len(labels))
    assert all(p["label"] in labels for p in predictions)
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)
    assert response.headers["x-request-id"]


def test_full_ranking_is_the_models_postprocess(client: TestClient) -> None:
    """Every label once, best first, scored by ``Model.postprocess`` of the model's output."""
    model = client.app.state.service.model
    data = image_bytes(2)
    predictions = classify(client, data, k=100).json()["predictions"]
    assert sorted(p["label"] for p in predictions) == sorted(model.labels)
    scores = model.postprocess(model.predict(model.preprocess(data)[np.newaxis])[0])
    expected = sorted(zip(model.labels, scores, strict=True), key=lambda pair: -pair[1])
    assert [p["label"] for p in predictions] == [label for label, _ in expected]
    for prediction, (_, score) in zip(predictions, expected, strict=True):
        assert prediction["score"] == pytest.approx(float(score), rel=1e-4, abs=1e-6)


def test_deterministic(client: TestClient) -> None:
    first = classify(client, image_bytes(3)).json()
    assert classify(client, image_bytes(3)).json() == first


def test_request_id_is_echoed(client: TestClient) -> None:
    response = client.post(
        "/v1/classify",
        files={"file": ("a.png", image_bytes(4))},
        headers={"X-Request-ID": "abc-123"},
    )
    assert response.headers["x-request-id"] == "abc-123"


@pytest.mark.parametrize(
    ("data", "status", "param"),
    [
        (b"this is not an image", 400, "file"),
        (b"", 400, "file"),
        (image_bytes(5)[:120], 400, "file"),  # truncated PNG
        (png_bomb(), 413, "file"),
        (b"GIF89a" + b"\x00" * 64, 400, "file"),
    ],
    ids=["text", "empty", "truncated", "decompression-bomb", "gif"],
)
def test_bad_images_are_refused(client: TestClient, data: bytes, status: int, param: str) -> None:
    response = classify(client, data)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["message"]


@pytest.mark.parametrize("k", [0, -1, 101, "three"])
def test_bad_k(client: TestClient, k: object) -> None:
    response = client.post(
        "/v1/classify", files={"file": ("a.png", image_bytes(6))}, params={"k": k}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "k"


def test_missing_file_field(client: TestClient) -> None:
    response = client.post("/v1/classify", files={"other": ("a.png", image_bytes(8))})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


def test_body_over_the_limit_is_413(model_path: Path) -> None:
    with TestClient(create_app(make_settings(model_path, max_body_bytes=4096))) as client:
        response = classify(client, image_bytes(9, size=(200, 200)))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert classify(client, image_bytes(10, size=(8, 8))).status_code == 200


def test_concurrent_requests_each_get_their_own_result(model_path: Path) -> None:
    """Distinct images sent together (and batched) get exactly their solo answers."""
    images = [image_bytes(seed) for seed in range(24)]
    settings = make_settings(model_path, max_batch_wait_ms=20)

    async def scenario() -> tuple[list[dict], list[dict]]:
        async with running_app(create_app(settings)) as client:

            async def one(data: bytes) -> dict:
                response = await client.post(
                    "/v1/classify", files={"file": ("x.png", data)}, params={"k": 3}
                )
                assert response.status_code == 200, response.text
                return response.json()

            alone = [await one(data) for data in images]
            together = await asyncio.gather(*(one(data) for data in images))
            return alone, list(together)

    alone, together = run_async(scenario())
    assert len({str(a["predictions"]) for a in alone}) > 1, (
        "test images should not all classify alike"
    )
    for solo, batched in zip(alone, together, strict=True):
        assert [p["label"] for p in batched["predictions"]] == [
            p["label"] for p in solo["predictions"]
        ]
        for p, q in zip(batched["predictions"], solo["predictions"], strict=True):
            assert p["score"] == pytest.approx(q["score"], rel=1e-4, abs=1e-6)
