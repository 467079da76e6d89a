"""Shared helpers for the template tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from .combinations import combination_id

TEMPLATE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(
    cmd: list[str], cwd: Path, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a command with this environment's tools first on PATH; never raise on failure."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    return subprocess.run(
        cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_ok(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 0, (
        f"{what} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    )


@pytest.fixture
def bake(cookies):  # type: ignore[no-untyped-def]
    """Bake with extra context and return the project path, asserting success."""

    def _bake(**context: str) -> Path:
        result = cookies.bake(extra_context=context)
        assert result.exception is None, f"bake failed: {result.exception}"
        assert result.exit_code == 0
        return Path(result.project_path)

    return _bake


@pytest.fixture(scope="session")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict[str, str]], Path]:
    """Bake a combination once per session (worker) and return the project directory.

    Shared by tests/test_deployment.py and tests/test_crds.py: a combination's tests in both
    carry the same xdist group, so they run on one worker and share its bake.
    """
    root = tmp_path_factory.mktemp("baked")
    cache: dict[str, Path] = {}

    def bake(combination: dict[str, str]) -> Path:
        key = combination_id(combination)
        if key not in cache:
            project = cookiecutter(
                str(TEMPLATE), no_input=True, extra_context=combination, output_dir=str(root / key)
            )
            cache[key] = Path(project)
        return cache[key]

    return bake
