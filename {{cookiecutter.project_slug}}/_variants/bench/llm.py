"""Benchmark continuous batching against one-at-a-time serving: same model, same run.

Starts the service (``python -m {{ cookiecutter.package_name }}``) twice on free local ports, with
MAX_RUNNING_SEQUENCES=32 (continuous batching) and =1 (one sequence at a
time), and drives each in turn with 1, 8 and 32 concurrent streaming clients
over the OpenAI completions API. Every client sends its next request as soon as the
previous one ends (a closed loop), greedy, completions of 64 to 128 tokens.

Streams start 25 ms apart (no thundering herd at time zero) and the model
runs with INTRA_OP_THREADS=1 by default (``--threads``): on a small machine
the engine, the event loop and this client share the cores, and a spinning
multi-threaded runtime starves the other two.

Per level it reports aggregate generated tokens/s, time to first token (TTFT:
request sent -> first text chunk) and inter-token latency (ITL: gaps between
text chunks; one chunk per token for the demo model), p50 and p99; prints a
table and writes ``bench-results/llm.json`` and ``bench-results/llm.png``.

    python scripts/bench.py                        # both modes, levels 1 8 32
    python scripts/bench.py --concurrency 1 4 16 --max-tokens 32
    python scripts/bench.py --url http://127.0.0.1:8000   # a running server, as configured
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings

PACKAGE = "{{ cookiecutter.package_name }}"
MODES = {"continuous batching": 32, "one at a time": 1}
STAGGER_S = 0.025


@dataclass
class Level:
    mode: str
    concurrency: int
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    seconds: float = 0.0
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float | int | str]:
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "ttft_p50_ms": round(percentile(self.ttft, 50) * 1000, 1),
            "ttft_p99_ms": round(percentile(self.ttft, 99) * 1000, 1),
            "itl_p50_ms": round(percentile(self.itl, 50) * 1000, 2),
            "itl_p99_ms": round(percentile(self.itl, 99) * 1000, 2),
        }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def prompt(index: int) -> str:
    """Prompts of 10 to 45 bytes, so batches hold ragged sequences."""
    return f"Story {index}: " + "once upon a time " * (index % 3)


def completion_length(index: int, max_tokens: int) -> int:
    """Lengths spread over [max_tokens / 2, max_tokens]: sequences finish at different steps."""
    return max_tokens // 2 + (index * 37) % (max_tokens // 2 + 1)


async def one_request(
    client: httpx.AsyncClient, model: str, index: int, max_tokens: int, level: Level
) -> None:
    body = {
        "model": model,
        "prompt": prompt(index),
        "max_tokens": completion_length(index, max_tokens),
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sent = time.perf_counter()
    last = None
    async with client.stream("POST", "/v1/completions", json=body) as response:
        if response.status_code != 200:
            level.errors += 1
            return
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                level.tokens += chunk["usage"]["completion_tokens"]
            if chunk.get("choices") and chunk["choices"][0]["text"]:
                now = time.perf_counter()
                if last is None:
                    level.ttft.append(now - sent)
                else:
                    level.itl.append(now - last)
                last = now
    level.requests += 1


async def run_level(url: str, mode: str, concurrency: int, requests: int, max_tokens: int) -> Level:
    level = Level(mode, concurrency)
    async with AsyncExitStack() as stack:
        # one client (one keep-alive connection) per stream: a pool shared by many
        # concurrent requests costs httpx milliseconds of CPU each, on the service's cores
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=600, limits=limits)
            )
            for _ in range(concurrency)
        ]
        model = (await clients[0].get("/v1/models")).json()["data"][0]["id"]
        for client in clients:  # connections and caches warm
            await one_request(client, model, 0, 4, Level(mode, 1))
        counter = iter(range(requests))

        async def stream(number: int) -> None:
            await asyncio.sleep(number * STAGGER_S)
            for index in counter:
                await one_request(clients[number], model, index, max_tokens, level)

        started = time.perf_counter()
        await asyncio.gather(*(stream(n) for n in range(concurrency)))
        level.seconds = time.perf_counter() - started
    return level


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    model_path: Path, max_running: int, threads: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        f"{ENV_PREFIX}MODEL_PATH": str(model_path),
        f"{ENV_PREFIX}HOST": "127.0.0.1",
        f"{ENV_PREFIX}PORT": str(port),
        f"{ENV_PREFIX}MAX_RUNNING_SEQUENCES": str(max_running),
        f"{ENV_PREFIX}MAX_WAITING_SEQUENCES": "1024",
        f"{ENV_PREFIX}REQUEST_TIMEOUT_S": "3600",  # one at a time, 32 streams wait long
        f"{ENV_PREFIX}LOG_LEVEL": "WARNING",
        f"{ENV_PREFIX}INTRA_OP_THREADS": str(threads),
    }
    server = subprocess.Popen([sys.executable, "-m", PACKAGE], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not become ready within 300 s")


def table(levels: list[Level]) -> str:
    header = (
        "| mode | streams | requests | errors | tokens/s "
        "| TTFT p50 | TTFT p99 | ITL p50 | ITL p99 |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in levels:
        s = level.summary()
        lines.append(
            f"| {s['mode']} | {s['concurrency']} | {s['requests']} | {s['errors']} "
            f"| {s['tokens_per_s']:.0f} "
            f"| {s['ttft_p50_ms']:.0f} ms | {s['ttft_p99_ms']:.0f} ms "
            f"| {s['itl_p50_ms']:.1f} ms | {s['itl_p99_ms']:.1f} ms |"
        )
    return "\n".join(lines)


def plot(levels: list[Level], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for number, mode in enumerate(dict.fromkeys(level.mode for level in levels)):
        color = f"C{number}"
        rows = [level for level in levels if level.mode == mode]
        x = [level.concurrency for level in rows]
        axes[0].plot(x, [lv.tokens_per_s for lv in rows], marker="o", color=color, label=mode)
        for q, style in ((50, "-"), (99, "--")):
            axes[1].plot(
                x,
                [percentile(lv.ttft, q) * 1000 for lv in rows],
                style,
                color=color,
                marker="o",
                label=f"{mode} p{q}",
            )
            axes[2].plot(
                x,
                [percentile(lv.itl, q) * 1000 for lv in rows],
                style,
                color=color,
                marker="o",
                label=f"{mode} p{q}",
            )
    titles = (
        "generated tokens/s (aggregate)",
        "time to first token (ms)",
        "inter-token latency (ms)",
    )
    for axis, title in zip(axes, titles, strict=True):
        axis.set_title(title)
        axis.set_xlabel("concurrent streams")
        axis.set_xscale("log", base=2)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    axes[1].set_yscale("log")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-path", type=Path, default=Settings.model_fields["model_path"].default
    )
    parser.add_argument("--url", help="benchmark this running server instead of starting two")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=128, help="longest completion")
    parser.add_argument(
        "--requests", type=int, default=0, help="per level; default max(16, 2 x streams)"
    )
    parser.add_argument("--threads", type=int, default=1, help="INTRA_OP_THREADS of the servers")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()

    levels: list[Level] = []
    servers: dict[str, tuple[subprocess.Popen[bytes] | None, str]] = {}
    try:
        if args.url:
            servers["server"] = (None, args.url)
        elif not args.model_path.exists():
            raise SystemExit(f"{args.model_path} does not exist: run `make model` first")
        else:  # both up at once, levels interleaved: load on the machine drifts alike for both
            for mode, running in MODES.items():
                servers[mode] = start_server(args.model_path, running, args.threads)
        for concurrency in args.concurrency:
            for mode, (_, url) in servers.items():
                requests = args.requests or max(16, 2 * concurrency)
                level = asyncio.run(run_level(url, mode, concurrency, requests, args.max_tokens))
                levels.append(level)
                print(table([level]).splitlines()[-1], flush=True)
    finally:
        for server, _ in servers.values():
            if server is not None:
                server.terminate()
                server.wait(timeout=60)
    levels.sort(key=lambda level: (list(servers).index(level.mode), level.concurrency))

    print()
    print(table(levels))
    by = {(lv.mode, lv.concurrency): lv for lv in levels}
    top = max(args.concurrency)
    batched, single = by.get(("continuous batching", top)), by.get(("one at a time", top))
    idle = by.get(("continuous batching", min(args.concurrency)))
    if batched and single and idle:
        speedup = batched.tokens_per_s / single.tokens_per_s
        ttft_ratio = percentile(batched.ttft, 50) / percentile(idle.ttft, 50)
        print(
            f"\nat {top} streams: continuous batching gives {speedup:.1f}x the tokens/s "
            "of one at a time;"
        )
        print(f"TTFT p50 is {ttft_ratio:.1f}x its value at {idle.concurrency} stream(s)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "llm.json").write_text(json.dumps([lv.summary() for lv in levels], indent=2) + "\n")
    plot(levels, args.out / "llm.png")
    print(f"wrote {args.out / 'llm.json'} and {args.out / 'llm.png'}")


if __name__ == "__main__":
    main()
