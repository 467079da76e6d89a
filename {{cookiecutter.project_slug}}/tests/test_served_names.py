"""Served model names (SERVED_MODEL_NAMES), driven by the official ``openai`` client.

One model under several names, as vLLM's ``--served-model-name``: every name is
listed by ``GET /v1/models`` and accepted as a request's ``model``; answers carry
the first. Workload-agnostic: ``workload_requests`` makes this workload's request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings

from . import workload_requests as workload
from .conftest import live_server, make_settings

NAMES = ["team-model", "acme/team-model-v2", "gpt-4o-mini", "Org.Name/sub/model:v1"]


@pytest.fixture(scope="module")
def base_url(model_path: Path) -> Iterator[str]:
    with live_server(create_app(make_settings(model_path, served_model_names=NAMES))) as address:
        yield f"http://{address}"


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_every_name_is_listed_in_order(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list().data] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_name_is_retrieved(client: openai.OpenAI, name: str) -> None:
    # the client sends a slash as %2F; the route takes it either way
    assert client.models.retrieve(name).id == name


def test_an_unknown_name_is_404(client: openai.OpenAI, base_url: str) -> None:
    for name in ("no-such-model", "acme/other", "acme"):
        with pytest.raises(openai.NotFoundError) as error:
            client.models.retrieve(name)
        assert error.value.body["code"] == "model_not_found"
    raw = httpx.get(f"{base_url}/v1/models/acme/team-model-v2/extra")
    assert raw.status_code == 404 and raw.json()["error"]["code"] == "model_not_found"


def answers(base_url: str, model: str) -> httpx.Response:
    async def one() -> httpx.Response:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            return await workload.send(http, 0, model=model)

    return asyncio.run(one())


@pytest.mark.parametrize("name", NAMES)
def test_every_name_is_served(base_url: str, name: str) -> None:
    response = answers(base_url, name)
    assert response.status_code == 200, response.text[:300]
    if response.headers["content-type"].startswith("application/json"):
        assert response.json()["model"] == NAMES[0]  # the first name, whichever was asked


def test_a_request_for_another_model_is_404(base_url: str) -> None:
    response = answers(base_url, "acme/not-served")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["param"] == "model" and error["code"] == "model_not_found"
    assert "'acme/not-served' does not exist" in error["message"]


def test_names_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    variable = f"{ENV_PREFIX}SERVED_MODEL_NAMES"
    monkeypatch.setenv(variable, " acme/model , alias ")
    settings = Settings(_env_file=None)
    assert settings.served_model_names == ["acme/model", "alias"]
    assert settings.model_name == "acme/model"
    monkeypatch.setenv(variable, '["alias", "acme/model"]')
    assert Settings(_env_file=None).served_model_names == ["alias", "acme/model"]
    monkeypatch.setenv(f"{ENV_PREFIX}MODEL_NAME", "alias")  # the first: consistent
    assert Settings(_env_file=None).model_name == "alias"


def test_model_name_alone_is_the_one_served_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}MODEL_NAME", "Qwen/Qwen2.5-0.5B-Instruct")
    settings = Settings(_env_file=None)
    assert settings.served_model_names == ["Qwen/Qwen2.5-0.5B-Instruct"]
    assert Settings(_env_file=None, model_name="plain").served_model_names == ["plain"]


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"served_model_names": "a,b,a"}, "lists 'a' more than once"),
        ({"served_model_names": "acme//model"}, "is not a model name"),
        ({"served_model_names": "acme/../model"}, "is not a model name"),
        ({"served_model_names": "acme/model/"}, "is not a model name"),
        ({"served_model_names": "with space"}, "is not a model name"),
        ({"served_model_names": "x" * 257}, "is not a model name"),
        ({"served_model_names": '["a", '}, "is not a valid JSON list"),
        ({"served_model_names": "a,b", "model_name": "b"}, "must be the first of"),
        ({"model_name": "acme//model"}, "model_name"),
        ({"model_name": "trailing/"}, "model_name"),
    ],
)
def test_bad_names_fail_startup(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], fragment: str
) -> None:
    for field, value in values.items():
        monkeypatch.setenv(f"{ENV_PREFIX}{field.upper()}", value)
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None)
    assert fragment in str(error.value)
