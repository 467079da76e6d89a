"""Hostile input is refused clearly and hurts no one else; weights are never unpickled.

Generic attacks (oversized and streamed bodies, invalid UTF-8, deeply nested
or truncated JSON) aim at the workload's JSON route; ``workload_requests``
adds what only this workload has (image bombs, absurd tensors, absurd
max_tokens, ...). All of them are sent at once, interleaved with ordinary
requests whose answers are known: each hostile request must get its status and
a JSON error naming what was wrong, and each ordinary one exactly its own answer.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from {{ cookiecutter.package_name }}.main import create_app

from . import workload_requests as workload
from .conftest import JSON_HEADERS, Hostile, make_settings, run_async, running_app

MAX_BODY_BYTES = 256 * 1024


async def streamed_body(size: int) -> AsyncIterator[bytes]:
    """A body sent in chunks without Content-Length: the limit must be counted as it arrives."""
    for _ in range(size // 65_536 + 1):
        yield b" " * 65_536


def generic_requests() -> dict[str, Hostile]:
    route = workload.JSON_ROUTE
    nested = b"[" * 100_000 + b"]" * 100_000
    return {
        "body-over-the-limit": Hostile(
            route, {"content": b" " * (MAX_BODY_BYTES + 1), "headers": JSON_HEADERS}, 413, "bytes"
        ),
        "streamed-body-over-the-limit": Hostile(
            route,
            {"content": streamed_body(2 * MAX_BODY_BYTES), "headers": JSON_HEADERS},
            413,
            "bytes",
        ),
        "invalid-utf-8": Hostile(
            route, {"content": b'{"x": "\xff\xfe"}', "headers": JSON_HEADERS}, 400, "JSON"
        ),
        "deeply-nested-json": Hostile(
            route, {"content": nested, "headers": JSON_HEADERS}, 400, "JSON"
        ),
        "truncated-json": Hostile(
            route, {"content": b'{"model": ', "headers": JSON_HEADERS}, 400, "JSON"
        ),
    }


def refusal(response: httpx.Response) -> tuple[str, str]:
    """The error's message and the field it names, in the route's protocol's error shape."""
    error = response.json()["error"]
    if response.request.url.path.startswith("/v2/"):  # the v2 protocol: a bare string
        assert isinstance(error, str), response.text
        return error, ""
    return error["message"], error["param"] or ""


def test_hostile_requests_are_refused_clearly_without_hurting_others(model_path: Path) -> None:
    app = create_app(make_settings(model_path, max_body_bytes=MAX_BODY_BYTES))
    hostile = {**generic_requests(), **workload.hostile_requests()}

    async def scenario() -> tuple[dict[str, httpx.Response], list[Any], list[httpx.Response]]:
        async with running_app(app) as client:
            solo = []
            for index in range(workload.DISTINCT_REQUESTS):
                solo.append(workload.answer_of(await workload.send(client, index)))
            # interleaved: attacks land between (and in the same batches as) ordinary requests
            ordinary: list[asyncio.Future[httpx.Response]] = []
            attacks: dict[str, asyncio.Future[httpx.Response]] = {}
            names = list(hostile)
            for index in range(max(len(names), workload.DISTINCT_REQUESTS)):
                if index < workload.DISTINCT_REQUESTS:
                    ordinary.append(asyncio.ensure_future(workload.send(client, index)))
                if index < len(names):
                    case = hostile[names[index]]
                    attacks[names[index]] = asyncio.ensure_future(
                        client.post(case.path, **case.request)
                    )
            await asyncio.gather(*ordinary, *attacks.values())
            assert (await client.get("/health/ready")).status_code == 200
            refused = {name: future.result() for name, future in attacks.items()}
            return refused, solo, [future.result() for future in ordinary]

    refused, solo, answers = run_async(scenario())
    problems = []
    for name, response in refused.items():
        case = hostile[name]
        if response.status_code != case.status:
            problems.append(f"{name}: {response.status_code} {response.text[:200]}")
            continue
        message, param = refusal(response)
        if case.names not in param and case.names not in message:
            problems.append(
                f"{name}: the error does not name {case.names!r}: {response.text[:200]}"
            )
    assert not problems, "\n".join(problems)
    for index, response in enumerate(answers):
        assert response.status_code == 200, (index, response.text)
        assert workload.same_answer(workload.answer_of(response), solo[index]), index
    print(f"hostile input: {len(refused)} kinds refused, {len(answers)} ordinary requests intact")


def test_starting_and_serving_unpickles_nothing(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights come from ONNX or safetensors files: loading must never reach an unpickler."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("something tried to unpickle")

    class RefusingUnpickler(pickle.Unpickler):
        def load(self) -> Any:
            refuse()

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)
    torch = sys.modules.get("torch")  # imported by model.py on the torch backend
    if torch is not None:
        monkeypatch.setattr(torch, "load", refuse)

    async def scenario() -> httpx.Response:
        async with running_app(create_app(make_settings(model_path))) as client:
            assert (await client.get("/health/ready")).status_code == 200
            return await workload.send(client, 0)

    assert run_async(scenario()).status_code == 200
