"""Bring your own model: a differently shaped model, `model.py` edited, contract suite green.

For each workload (``tests/model_swap/<workload>.py``): bake the project, build
the team's model inside the test, edit only ``model.py``, then

1. the project's contract suite passes against it (``pytest --model-path``;
   reference tests, pinned to the demo model, are skipped and say so);
2. the service started on it answers the workload's real client.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import assert_ok, run
from .model_swap import Swap

WORKLOADS = ("vision", "llm", "embeddings", "tts")


def swaps() -> list[tuple[str, Swap]]:
    found = []
    for workload in WORKLOADS:
        try:
            module = importlib.import_module(f"tests.model_swap.{workload}")
        except ModuleNotFoundError:
            continue
        for index, swap in enumerate(module.SWAPS):
            found.append(
                (f"{workload}-{swap.combination.get('backend', 'onnxruntime')}-{index}", swap)
            )
    return found


SWAPS = swaps()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within {timeout_s} s")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "swap"), SWAPS, ids=[name for name, _ in SWAPS])
def test_a_team_model_passes_the_contract_suite_and_serves(
    bake, tmp_path: Path, name: str, swap: Swap
) -> None:
    project = bake(**swap.combination)
    swap.edit_model(project)
    model_path = swap.build_model(project, tmp_path / "team-model")
    env = {"PYTHONPATH": str(project / "src"), **swap.env}
    result = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-m",
            "not heavy",
            # one argument: as two, pytest takes the path for a test path before the
            # project's conftest (which defines --model-path) is loaded
            f"--model-path={model_path}",
        ],
        project,
        **env,
    )
    assert_ok(result, f"{name}: the contract suite against the team's model")
    assert "skipped" in result.stdout, "reference tests must be skipped, and say so"

    package = next(p.name for p in (project / "src").iterdir() if (p / "main.py").is_file())
    prefix = package.upper() + "_"
    port = free_port()
    server_env = {
        **os.environ,
        **env,
        f"{prefix}MODEL_PATH": str(model_path),
        f"{prefix}PORT": str(port),
        f"{prefix}HOST": "127.0.0.1",
        f"{prefix}CPU_FALLBACK": "true",
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", package], cwd=project, env=server_env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        swap.check_served(project, model_path, url)
    except AssertionError:
        log.flush()
        raise AssertionError((tmp_path / "server.log").read_text()[-4000:]) from None
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
