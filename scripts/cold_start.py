"""Measure the cold start that scaling from zero costs: process start to /health/ready 200.

    python scripts/cold_start.py [--runs 3] [--workloads vision llm embeddings tts]

For each workload (onnxruntime, cpu, every other option at its default): bake it, build its
demo model, then start `python -m <package>` --runs times with the environment the image
sets (HOST, PORT; INTRA_OP_THREADS=2 as in deploy/k8s) and poll /health/ready every 20 ms
until it answers 200. Prints, per run, the wall time to ready and the service's own
inference_model_load_seconds and inference_warmup_seconds, then the median per workload.
This is the part of a cold start the service owns; a cluster adds scheduling, the image
pull and (with KServe's storage initialiser) the model download before the process starts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
PACKAGE = "ai_service"
PREFIX = PACKAGE.upper() + "_"
GAUGE = re.compile(r"^(inference_(?:model_load|warmup)_seconds)\{[^}]*\} ([0-9.e+-]+)$", re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def one_start(
    project: Path, env: dict[str, str], timeout_s: float
) -> tuple[float, dict[str, float]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run_env = {**env, f"{PREFIX}HOST": "127.0.0.1", f"{PREFIX}PORT": str(port)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", PACKAGE],
        cwd=project,
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while status(f"{base}/health/ready") != 200:
            if process.poll() is not None:
                raise SystemExit(f"{project.name}: the service exited with {process.returncode}")
            if time.perf_counter() - started > timeout_s:
                raise SystemExit(f"{project.name}: not ready within {timeout_s} s")
            time.sleep(0.02)
        ready_s = time.perf_counter() - started
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            gauges = {name: float(value) for name, value in GAUGE.findall(response.read().decode())}
        return ready_s, gauges
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=["vision", "llm", "embeddings", "tts"])
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cold-start-"))
    summary = []
    try:
        for workload in args.workloads:
            context = {"workload": workload, "backend": "onnxruntime", "device": "cpu"}
            project = Path(
                cookiecutter(
                    str(TEMPLATE),
                    no_input=True,
                    extra_context=context,
                    output_dir=str(workdir / workload),
                )
            )
            env = {
                **os.environ,
                "PYTHONPATH": str(project / "src"),
                f"{PREFIX}INTRA_OP_THREADS": "2",
            }
            subprocess.run(
                [sys.executable, "scripts/make_demo_model.py"],
                cwd=project,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            runs = []
            for run in range(1, args.runs + 1):
                ready_s, gauges = one_start(project, env, args.timeout)
                load = gauges.get("inference_model_load_seconds", float("nan"))
                warmup = gauges.get("inference_warmup_seconds", float("nan"))
                print(
                    f"{workload:<11} run {run}: ready after {ready_s:6.2f} s "
                    f"(model load {load:.2f} s, warmup {warmup:.2f} s)",
                    flush=True,
                )
                runs.append((ready_s, load, warmup))
            summary.append(
                (workload, [statistics.median(column) for column in zip(*runs, strict=True)])
            )
        print("\nmedian of", args.runs, "runs: workload, ready s, model load s, warmup s")
        for workload, (ready_s, load, warmup) in summary:
            print(f"{workload:<11} {ready_s:6.2f} {load:6.2f} {warmup:6.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
