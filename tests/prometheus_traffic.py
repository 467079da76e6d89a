"""Requests that exercise every route of a running baked service, for tests/test_prometheus.py.

``traffic(workload)`` sends a few requests per route (health checks included), one that
the service must refuse with a 4xx, and then a burst of concurrent inference requests
against a service started with ``OVERLOAD_SETTINGS`` (one item in compute, one or two waiting) until
at least one answers 503, so that every status family the dashboard shows has a series.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

# <PACKAGE>_* settings (without the prefix) that make a burst of requests overflow the queue
OVERLOAD_SETTINGS: dict[str, dict[str, str]] = {
    "vision": {"MAX_BATCH_SIZE": "1", "MAX_QUEUE_SIZE": "1"},
    "embeddings": {"MAX_BATCH_SIZE": "1", "MAX_QUEUE_SIZE": "2"},  # a request of 2 inputs fits
    "tts": {"MAX_BATCH_SIZE": "1", "MAX_QUEUE_SIZE": "1"},
    "llm": {"MAX_RUNNING_SEQUENCES": "1", "MAX_WAITING_SEQUENCES": "0"},
}
BURST_CONCURRENCY = 12
BURSTS = 10  # at most, until one request got 503


def expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    assert response.status_code in statuses, (
        f"{response.request.method} {response.request.url.path}: {response.status_code} "
        f"{response.text[:300]}"
    )
    return response


def png(size: int, seed: int = 0) -> bytes:
    from PIL import Image

    image = Image.effect_noise((size, size), 64 + seed).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def health(client: httpx.Client) -> None:
    for path in ("/health/live", "/health/ready"):
        expect(client.get(path), 200)


def model_name(client: httpx.Client) -> str:
    return expect(client.get("/v1/models"), 200).json()["data"][0]["id"]


# --- per workload: requests per route, and one inference request for the burst ----------------
def vision(client: httpx.Client, name: str) -> Callable[[httpx.Client], int]:
    health(client)
    for path in ("/v2/health/live", "/v2/health/ready"):
        expect(client.get(path), 200)
    expect(client.get("/v2"), 200)
    expect(client.get("/v2/models/no-such-model"), 404)
    metadata = expect(client.get(f"/v2/models/{name}"), 200).json()
    expect(client.get(f"/v2/models/{name}/ready"), 200)
    tensor = metadata["inputs"][0]
    shape = [1 if dim < 0 else dim for dim in tensor["shape"]]
    zeros = [0.0] * math.prod(shape)
    infer = {"inputs": [{**{k: tensor[k] for k in ("name", "datatype")}, "shape": shape}]}
    infer["inputs"][0]["data"] = zeros
    expect(client.post(f"/v2/models/{name}/infer", json=infer), 200)
    for seed in range(3):
        files = {"file": ("x.png", png(64, seed), "image/png")}
        expect(client.post("/v1/classify", files=files, params={"k": 3}), 200)
    expect(client.post("/v1/classify", files={"file": ("x.png", b"not an image")}), 400, 415)
    large = png(1024)

    def one(burst_client: httpx.Client) -> int:
        files = {"file": ("x.png", large, "image/png")}
        return burst_client.post("/v1/classify", files=files).status_code

    return one


def llm(client: httpx.Client, name: str) -> Callable[[httpx.Client], int]:
    health(client)
    assert model_name(client) == name
    expect(client.get(f"/v1/models/{name}"), 200)
    prompt = {"model": name, "prompt": "The number 7", "max_tokens": 4, "temperature": 0}
    expect(client.post("/v1/completions", json=prompt), 200)
    expect(client.post("/v1/completions", json={**prompt, "stream": True}), 200)
    chat = {
        "model": name,
        "messages": [{"role": "user", "content": "Count to three."}],
        "max_tokens": 4,
        "temperature": 0,
    }
    expect(client.post("/v1/chat/completions", json=chat), 200)
    expect(client.post("/v1/chat/completions", json={**chat, "stream": True}), 200)
    response = {"model": name, "input": "Count to three.", "max_output_tokens": 4}
    expect(client.post("/v1/responses", json=response), 200)
    expect(client.post("/v1/completions", json={**prompt, "max_tokenz": 4}), 400, 422)
    long = {**prompt, "max_tokens": 48}

    def one(burst_client: httpx.Client) -> int:
        return burst_client.post("/v1/completions", json=long).status_code

    return one


def embeddings(client: httpx.Client, name: str) -> Callable[[httpx.Client], int]:
    health(client)
    assert model_name(client) == name
    expect(client.get(f"/v1/models/{name}"), 200)
    for body in (
        {"model": name, "input": "a quick brown fox"},
        {"model": name, "input": ["one", "two"]},
        {"model": name, "input": "base64 please", "encoding_format": "base64"},
    ):
        expect(client.post("/v1/embeddings", json=body), 200)
    expect(client.post("/v1/embeddings", json={"model": name}), 400, 422)
    text = {"model": name, "input": "jumps over the lazy dog"}

    def one(burst_client: httpx.Client) -> int:
        return burst_client.post("/v1/embeddings", json=text).status_code

    return one


def tts(client: httpx.Client, name: str) -> Callable[[httpx.Client], int]:
    health(client)
    assert model_name(client) == name
    expect(client.get(f"/v1/models/{name}"), 200)
    speech = {"model": name, "input": "Hello there.", "voice": "alloy", "response_format": "wav"}
    expect(client.post("/v1/audio/speech", json=speech), 200)
    expect(client.post("/v1/audio/speech", json={**speech, "response_format": "pcm"}), 200)
    expect(client.post("/v1/audio/speech", json={**speech, "voice": 7}), 400, 422)
    long = {**speech, "input": "A longer sentence for the burst of requests. " * 3}

    def one(burst_client: httpx.Client) -> int:
        return burst_client.post("/v1/audio/speech", json=long).status_code

    return one


WORKLOADS: dict[str, Callable[[httpx.Client, str], Callable[[httpx.Client], int]]] = {
    "vision": vision,
    "llm": llm,
    "embeddings": embeddings,
    "tts": tts,
}


def burst(base_url: str, one: Callable[[httpx.Client], int]) -> Counter[int]:
    """Concurrent inference requests until one is refused with 503 (the queue overflowed)."""
    statuses: Counter[int] = Counter()
    clients = [httpx.Client(base_url=base_url, timeout=60) for _ in range(BURST_CONCURRENCY)]
    try:
        with ThreadPoolExecutor(BURST_CONCURRENCY) as pool:
            for _ in range(BURSTS):
                statuses.update(pool.map(one, clients))
                if statuses[503]:
                    break
    finally:
        for client in clients:
            client.close()
    assert statuses[503], f"no request was refused in {BURSTS} bursts: {dict(statuses)}"
    assert set(statuses) <= {200, 503, 504}, dict(statuses)
    return statuses


def traffic(workload: str, base_url: str, model: str) -> Counter[int]:
    """One round: every route, one 4xx, then the burst; returns the burst's statuses."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        one = WORKLOADS[workload](client, model)
    return burst(base_url, one)
