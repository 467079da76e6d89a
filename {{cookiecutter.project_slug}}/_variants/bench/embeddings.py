"""Benchmark ``POST /v1/embeddings``: items/s and latency percentiles at rising concurrency.

Closed loop: at each concurrency level, that many clients send requests back to
back for ``--duration`` seconds (after a short warm-up); every request embeds
``--inputs-per-request`` distinct sentences of 8 to 40 words (a fixed seed makes
runs comparable). It prints one row per level: requests/s, items/s, p50, p90 and
p99 latency, and errors.

Without ``--url`` it starts the service itself twice, on a free local port and
with the model MODEL_PATH points at (default ``models/``): once with dynamic
batching (MAX_BATCH_SIZE=32, MAX_BATCH_WAIT_MS=2) and once without
(MAX_BATCH_SIZE=1), so the two tables compare batching on and off on this
machine. With ``--url`` it measures a service that is already running, as it
is configured.

    python scripts/bench.py                      # batching on and off
    python scripts/bench.py --url http://127.0.0.1:8000 --concurrency 1,8,32
    python scripts/bench.py --json bench.json --plot bench.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

PACKAGE = "{{ cookiecutter.package_name }}"
ENV_PREFIX = PACKAGE.upper() + "_"
MODES: dict[str, dict[str, str]] = {
    "batching on": {"MAX_BATCH_SIZE": "32", "MAX_BATCH_WAIT_MS": "2"},
    "batching off": {"MAX_BATCH_SIZE": "1", "MAX_BATCH_WAIT_MS": "0"},
}
# common words: one token each for the demo tokenizer, as for real ones
WORDS = (
    "the people water search model document data text vector service light city river "
    "mountain book learn read write find answer time day night world house tree school "
    "family story paper food small great long little good new old first last never always"
)
VOCABULARY = WORDS.split()


def sentences(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(VOCABULARY, k=rng.randint(8, 40))) for _ in range(count)]


def one_connection_client(url: str, headers: dict[str, str]) -> httpx.AsyncClient:
    """A client with one keep-alive connection, one per simulated user.

    One pool shared by many concurrent requests costs httpx milliseconds of CPU per
    request (measured: 11 ms at 64 connections against 1.6 ms at 4), on the cores the
    service also runs on; per-user clients keep the load generator cheap and honest.
    """
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers)


async def one_level(
    url: str, concurrency: int, duration_s: float, inputs_per_request: int, headers: dict[str, str]
) -> dict[str, Any]:
    """Run ``concurrency`` closed-loop clients for ``duration_s``; return the level's figures."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    pool = sentences(512, seed=concurrency)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(one_connection_client(url, headers))
            for _ in range(concurrency)
        ]

        async def worker(index: int, deadline: float, record: bool) -> None:
            nonlocal errors
            client = clients[index]
            sent = 0
            while time.perf_counter() < deadline:
                start = (index * 97 + sent * inputs_per_request) % len(pool)
                texts = [pool[(start + i) % len(pool)] for i in range(inputs_per_request)]
                body = {"input": texts, "encoding_format": "base64"}  # what the openai client sends
                began = time.perf_counter()
                response = await client.post("/v1/embeddings", json=body)
                if record:
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - began)
                    else:
                        key = f"{response.status_code} {response.text[:160]}"
                        errors[key] = errors.get(key, 0) + 1
                sent += 1

        warm_until = time.perf_counter() + min(1.0, duration_s / 4)
        await asyncio.gather(*(worker(i, warm_until, False) for i in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(i, started + duration_s, True) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    millis = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "concurrency": concurrency,
        "requests_per_s": len(latencies) / elapsed,
        "items_per_s": len(latencies) * inputs_per_request / elapsed,
        "p50_ms": float(np.percentile(millis, 50)),
        "p90_ms": float(np.percentile(millis, 90)),
        "p99_ms": float(np.percentile(millis, 99)),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


FIGURES = ("requests_per_s", "items_per_s", "p50_ms", "p90_ms", "p99_ms")


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    columns = ("concurrency", "req/s", "items/s", "p50 ms", "p90 ms", "p99 ms", "errors")
    print(" ".join(f"{name:>11}" for name in columns))
    for row in rows:
        figures = [row[key] for key in FIGURES]
        print(
            f"{row['concurrency']:>11} "
            + " ".join(f"{value:>11.1f}" for value in figures)
            + f" {row['errors']:>11}"
        )
        for kind, count in row["error_kinds"].items():
            print(f"{'':>11} {count} x {kind}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def service(overrides: dict[str, str], max_concurrency: int) -> Iterator[str]:
    """Start the service as ``python -m`` would run it in production; yield its URL once ready."""
    port = free_port()
    env = {
        **os.environ,
        **{ENV_PREFIX + key: value for key, value in overrides.items()},
        f"{ENV_PREFIX}HOST": "127.0.0.1",
        f"{ENV_PREFIX}PORT": str(port),
        f"{ENV_PREFIX}LOG_LEVEL": "WARNING",
        f"{ENV_PREFIX}MAX_QUEUE_SIZE": str(max(256, 4 * max_concurrency)),
        "PYTHONPATH": os.pathsep.join(filter(None, ["src", os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen([sys.executable, "-m", PACKAGE], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the service exited ({process.returncode}) during start-up")
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the service did not become ready within 300 s")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # drains, then exits
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in results.items():
        levels = [row["concurrency"] for row in rows]
        throughput.plot(levels, [row["items_per_s"] for row in rows], marker="o", label=name)
        latency.plot(levels, [row["p99_ms"] for row in rows], marker="o", label=name)
    for axis, label in ((throughput, "items/s"), (latency, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle("POST /v1/embeddings")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"\nwrote {path}")


async def run_levels(
    url: str, args: argparse.Namespace, headers: dict[str, str]
) -> list[dict[str, Any]]:
    return [
        await one_level(url, level, args.duration, args.inputs_per_request, headers)
        for level in args.concurrency
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running service; default: start it, batching on and off")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 4, 16, 64],
        help="comma-separated levels (default 1,4,16,64)",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per level")
    parser.add_argument("--inputs-per-request", type=int, default=1)
    parser.add_argument("--api-key", default=os.environ.get(f"{ENV_PREFIX}API_KEY"))
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--plot", type=Path, help="also draw items/s and p99 per level (PNG)")
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    print(
        f"{os.cpu_count()} CPUs; {args.duration:g} s per level; "
        f"{args.inputs_per_request} input(s) per request"
    )
    results: dict[str, list[dict[str, Any]]] = {}
    if args.url:
        results[args.url] = asyncio.run(run_levels(args.url.rstrip("/"), args, headers))
        print_table(args.url, results[args.url])
    else:
        for name, overrides in MODES.items():
            with service(overrides, max(args.concurrency)) as url:
                results[name] = asyncio.run(run_levels(url, args, headers))
            settings = ", ".join(f"{key}={value}" for key, value in overrides.items())
            print_table(f"{name} ({settings})", results[name])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
