"""Optional API key: Bearer auth on every route but health, constant-time compare."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.workload import PROTECTED_ROUTERS

from .conftest import make_settings

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def secured(model_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(model_path, api_key=KEY))) as client:
        yield client


def protected_get_paths() -> list[str]:
    """A GET route of every protected router (POST routes are covered by their own tests)."""
    paths = []
    for router in PROTECTED_ROUTERS:
        for route in router.routes:
            if "GET" in getattr(route, "methods", set()):
                # path parameters ({name}, {model}) name the served model
                paths.append(re.sub(r"\{\w+\}", "{{ cookiecutter.project_slug }}", route.path))
    return paths


def test_health_stays_open(secured: TestClient) -> None:
    assert secured.get("/health/live").status_code == 200
    assert secured.get("/health/ready").status_code == 200


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-key", f"Basic {KEY}", f"Bearer {KEY}x", "Bearer"],
    ids=["missing", "wrong", "wrong-scheme", "longer", "empty"],
)
def test_rejects_bad_credentials(secured: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for path in protected_get_paths():
        response = secured.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]  # a dict, or a string on the v2 protocol's routes
        message = error["message"] if isinstance(error, dict) else error
        assert message == "missing or invalid API key"


def test_accepts_the_key(secured: TestClient) -> None:
    assert protected_get_paths(), "the workload exposes no protected GET route"
    for path in protected_get_paths():
        assert secured.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200, (
            path
        )


def test_no_key_configured_means_open(client: TestClient) -> None:
    for path in protected_get_paths():
        assert client.get(path).status_code == 200, path
