"""Optional API key: Bearer auth on every route but health, constant-time compare."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.main import create_app, workload

from .conftest import make_settings

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def secured(model_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(model_path, api_key=KEY))) as client:
        yield client


def protected_get_paths() -> list[str]:
    """A GET route of every protected router (POST routes are covered by their own tests)."""
    paths = []
    for router in workload.PROTECTED_ROUTERS:
        for route in router.routes:
            if "GET" in getattr(route, "methods", set()):
                # path parameters ({name}, {model:path}) name the served model
                served = "{{ cookiecutter.project_slug }}"
                paths.append(re.sub(r"\{\w+(:\w+)?\}", served, route.path))
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


# Open on purpose: probes (the kubelet sends no key), the scrape endpoint (Prometheus,
# inside the cluster) and the API's own description. Every other route needs the key.
OPEN_PATHS = {
    "/health/live",
    "/health/ready",
    "/v2/health/live",
    "/v2/health/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every operation in the OpenAPI schema."""
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def test_every_other_route_needs_the_key_before_its_body_is_read(model_path: Path) -> None:
    """Every operation the app serves, with a garbage body: 401 before any parsing."""
    app = create_app(make_settings(model_path, api_key=KEY))
    checked = []
    with TestClient(app) as client:
        for method, template in sorted(served_routes(app)):
            path = re.sub(r"\{\w+\}", "{{ cookiecutter.project_slug }}", template)
            response = client.request(method, path, content=b"\xff{not json")
            if template in OPEN_PATHS:
                assert response.status_code != 401, (method, path)
            else:
                assert response.status_code == 401, (method, path, response.text)
                checked.append(f"{method} {path}")
    assert any(route.startswith("POST ") for route in checked), checked


def test_the_key_is_compared_in_constant_time(
    secured: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every presented key goes through ``secrets.compare_digest``, whatever its length."""
    compared: list[tuple[bytes, bytes]] = []
    real = secrets.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(secrets, "compare_digest", recording)
    path = protected_get_paths()[0]
    tokens = ["x", KEY[:-1] + "y", KEY + "extra", KEY]
    for token in tokens:
        secured.get(path, headers={"Authorization": f"Bearer {token}"})
    assert [presented.decode() for presented, _ in compared] == tokens
    assert all(expected == KEY.encode() for _, expected in compared)
