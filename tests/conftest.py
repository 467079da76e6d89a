"""Shared helpers for the template tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
