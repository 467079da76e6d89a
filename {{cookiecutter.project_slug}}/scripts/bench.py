"""Benchmark the service against the limit of the machine it runs on.

    python scripts/bench.py                          # starts the service itself (make bench)
    python scripts/bench.py --url http://host:8000   # a running service, as it is configured

One run measures, on this machine:

1. raw: the model alone, in this process, with no HTTP: items/s at every
   warmup batch size (the best one counts) and the single-item latency;
2. body-only: req/s of ``POST /_bench/read-body`` (mounted by
   ``BENCH_ENDPOINT=true``), which only reads the same body the inference
   requests carry: what this server can do with no model at all;
3. served: req/s, p50 and p99 of the inference route at each concurrency,
   with batching on (``MAX_BATCH_SIZE=32``) and off (``MAX_BATCH_SIZE=1``):
   the same server build, restarted with different environment variables;
4. overload: 10x the target concurrency, clients retrying at once: the status
   codes seen (200, 503 and 504 only), p99 of the admitted requests, and how
   soon the service is ready again.

The limit a request path can reach is the serial sum of the two costs,
``1 / (1/raw + 1/body_only)``: per request, read the body and run the model.
It prints a table and writes ``bench.json`` and ``bench.png`` (throughput and
p99 against concurrency, with the limit line) to ``--out``.

With ``--url`` only that service is measured, as it is configured (the
body-only route needs ``BENCH_ENDPOINT=true`` there); the raw model is still
measured in this process, so run the benchmark on the service's machine.

The load generator is one asyncio process (uvloop when installed) with
keep-alive connections, requests encoded once, and a minimal HTTP/1.1
response reader: a few tens of microseconds of client CPU per request, so the
CPU stays with the server. The table shows both processes' CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without `make install`
    sys.path.insert(0, str(ROOT / "src"))

from {{ cookiecutter.package_name }}.model import Model  # noqa: E402
from {{ cookiecutter.package_name }}.serving.warmup import warmup_batch_sizes  # noqa: E402
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings  # noqa: E402

PACKAGE = "{{ cookiecutter.package_name }}"
BODY_ONLY_PATH = "/_bench/read-body"
CONFIGS: dict[str, dict[str, str]] = {
    "dynamic": {"MAX_BATCH_SIZE": "32", "MAX_BATCH_WAIT_MS": "2"},
    "none": {"MAX_BATCH_SIZE": "1", "MAX_BATCH_WAIT_MS": "0"},
}
TARGET_SHARE = 0.70  # of the serial-sum limit, at the target concurrency


# --- requests -------------------------------------------------------------------
@dataclass
class Target:
    host: str
    port: int
    api_key: str | None


def http_request(target: Target, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 keep-alive POST, encoded once and sent as is every time."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {target.host}:{target.port}"]
    if target.api_key:
        lines.append(f"Authorization: Bearer {target.api_key}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def v2_binary_body(model_name: str) -> tuple[str, bytes, dict[str, str]]:
    """One image tensor with the binary tensor extension (what tritonclient sends)."""
    rng = np.random.default_rng(0)
    tensor = rng.standard_normal((1, *Model.input_shape)).astype(Model.input_dtype)
    raw = tensor.tobytes()
    header = {
        "inputs": [
            {
                "name": Model.input_name,
                "datatype": "FP32",
                "shape": list(tensor.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": Model.output_name, "parameters": {"binary_data": False}}],
    }
    head = json.dumps(header).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    return f"/v2/models/{model_name}/infer", head + raw, headers


def classify_jpeg_body(model_name: str) -> tuple[str, bytes, dict[str, str]]:
    """A 224x224 photo-like JPEG sent as the raw body of /v1/classify."""
    from PIL import Image

    y, x = np.mgrid[0:224, 0:224]
    rng = np.random.default_rng(0)
    pixels = np.stack([x, y, (x + y) // 2], axis=-1) + rng.integers(0, 24, (224, 224, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return "/v1/classify?k=5", buffer.getvalue(), {"Content-Type": "image/jpeg"}


REQUESTS = {"v2-binary": v2_binary_body, "classify-jpeg": classify_jpeg_body}


# --- load generator ---------------------------------------------------------------
class ProtocolError(Exception):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server closes the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start < 0:
        raise ProtocolError("response without Content-Length")
    end = lower.index(b"\r\n", start + 2)
    body = await reader.readexactly(int(lower[start + 17 : end]))
    return status, body, b"\r\nconnection: close" in lower


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    statuses: dict[int, int]
    ok_latencies_ms: list[float] = field(repr=False)
    server_cpu: float | None  # cores busy on average
    client_cpu: float
    mean_batch: float | None = None  # items per model call (from /metrics when enabled)

    @property
    def ok_per_s(self) -> float:
        return self.statuses.get(200, 0) / self.seconds

    def percentile(self, q: float) -> float:
        if not self.ok_latencies_ms:
            return math.nan
        return float(np.percentile(self.ok_latencies_ms, q))

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "req_per_s": round(self.ok_per_s, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_cpu_cores": None if self.server_cpu is None else round(self.server_cpu, 2),
            "client_cpu_cores": round(self.client_cpu, 2),
            "mean_batch_size": None if self.mean_batch is None else round(self.mean_batch, 2),
        }


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process and its children (WORKERS > 1), from /proc.

    None where unknown (not Linux, or no process to watch).
    """
    if pid is None:
        return None
    stats: dict[int, list[str]] = {}
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stats[int(path.parent.name)] = path.read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
    if pid not in stats:
        return None
    tree = {pid} | {child for child, fields in stats.items() if int(fields[1]) == pid}
    ticks = sum(int(stats[p][11]) + int(stats[p][12]) for p in tree)
    return ticks / os.sysconf("SC_CLK_TCK")


async def generate_load(
    target: Target,
    request: bytes,
    concurrency: int,
    seconds: float,
    warmup_s: float,
    server_pid: int | None,
) -> LoadResult:
    """Closed loop: ``concurrency`` connections, each sending its next request at once.

    Requests completing in the ``seconds`` after ``warmup_s`` are counted.
    """
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    connections = [
        await asyncio.open_connection(target.host, target.port) for _ in range(concurrency)
    ]
    loop_start = time.perf_counter()
    window_start = loop_start + warmup_s
    window_end = window_start + seconds
    marks: dict[str, tuple[float, float | None]] = {}

    async def mark_window() -> None:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        marks["start"] = (time.process_time(), process_cpu_seconds(server_pid))
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        marks["end"] = (time.process_time(), process_cpu_seconds(server_pid))

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        perf_counter = time.perf_counter
        try:
            while (sent := perf_counter()) < window_end:
                writer.write(request)
                try:
                    status, _, close = await read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    status, close = 0, True  # the connection broke: count it, reconnect
                done = perf_counter()
                if window_start <= done < window_end:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append((done - sent) * 1000)
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(target.host, target.port)
        finally:
            writer.close()

    await asyncio.gather(mark_window(), *(connection(r, w) for r, w in connections))
    (client_0, server_0), (client_1, server_1) = marks["start"], marks["end"]
    server_cpu = None if server_0 is None or server_1 is None else (server_1 - server_0) / seconds
    return LoadResult(
        concurrency, seconds, dict(statuses), latencies, server_cpu, (client_1 - client_0) / seconds
    )


def batch_totals(target: Target) -> tuple[float, float] | None:
    """Items and model calls so far, from the service's /metrics (None without metrics)."""
    request = urllib.request.Request(f"http://{target.host}:{target.port}/metrics")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    totals = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for key in ("sum", "count"):
            if name.startswith(f"inference_batch_size_{key}"):
                totals[key] = float(value)
    return (totals["sum"], totals["count"]) if len(totals) == 2 else None


async def one_request(target: Target, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.write(request)
        status, body, _ = await read_response(reader)
        return status, body
    finally:
        writer.close()


# --- the model alone ---------------------------------------------------------------
@dataclass
class RawResult:
    items_per_s: dict[int, float]
    single_item_p50_ms: float

    @property
    def best_batch(self) -> int:
        return max(self.items_per_s, key=self.items_per_s.__getitem__)

    @property
    def best_items_per_s(self) -> float:
        return self.items_per_s[self.best_batch]


def measure_raw(settings: Settings, max_batch_size: int, seconds: float) -> RawResult:
    """The model's own speed in this process: predict() on ready batches, no HTTP."""
    model = Model(settings)
    model.load()
    items_per_s: dict[int, float] = {}
    single: list[float] = []
    for size in warmup_batch_sizes(max_batch_size):
        batch = model.example_batch(size)
        for _ in range(3):
            model.predict(batch)
        runs: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(runs) < 5:
            started = time.perf_counter()
            model.predict(batch)
            runs.append(time.perf_counter() - started)
        items_per_s[size] = size * len(runs) / sum(runs)
        if size == 1:
            single = runs
    del model
    return RawResult(items_per_s, statistics.median(single) * 1000)


# --- the server --------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base_url: str, timeout_s: float, process: subprocess.Popen[bytes] | None) -> float:
    """Poll /health/ready until 200; return the seconds it took."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.002)
    raise RuntimeError(f"{base_url} was not ready within {timeout_s:g} s")


@contextlib.contextmanager
def spawned_service(config: dict[str, str], log_path: Path):  # type: ignore[no-untyped-def]
    """Start ``python -m {{ cookiecutter.package_name }}`` on a free port with extra settings."""
    port = free_port()
    env = {
        **os.environ,
        **{ENV_PREFIX + name: value for name, value in config.items()},
        f"{ENV_PREFIX}HOST": "127.0.0.1",
        f"{ENV_PREFIX}PORT": str(port),
        f"{ENV_PREFIX}BENCH_ENDPOINT": "true",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", PACKAGE], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}", 180, process)
            yield port, process.pid
        except RuntimeError as exc:
            raise SystemExit(f"{exc}; its log: {log_path}") from None
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code != 0:
                print(f"warning: the service exited with code {code} (log: {log_path})")


# --- one benchmark run --------------------------------------------------------------
@dataclass
class Series:
    name: str
    results: list[LoadResult]

    def at(self, concurrency: int) -> LoadResult | None:
        return next((r for r in self.results if r.concurrency == concurrency), None)


@dataclass
class Overload:
    connections: int
    seconds: float
    statuses: dict[int, int]
    ok_p99_ms: float
    ok_max_ms: float
    request_timeout_s: float
    ready_after_ms: float
    next_request_ms: float


async def sweep(
    name: str,
    target: Target,
    request: bytes,
    levels: list[int],
    args: argparse.Namespace,
    server_pid: int | None,
) -> Series:
    results = []
    for concurrency in levels:
        before = await asyncio.to_thread(batch_totals, target)
        result = await generate_load(
            target, request, concurrency, args.duration, args.warmup, server_pid
        )
        after = await asyncio.to_thread(batch_totals, target)
        if before and after and after[1] > before[1]:
            result.mean_batch = (after[0] - before[0]) / (after[1] - before[1])
        results.append(result)
        s = result.summary()
        print(
            f"  {name:<10} c={concurrency:<4} {s['req_per_s']:>8.1f} req/s  "
            f"p50 {s['p50_ms']:>8.2f} ms  p99 {s['p99_ms']:>8.2f} ms  "
            f"batch {fmt(result.mean_batch)}  {s['statuses']}",
            flush=True,
        )
    return Series(name, results)


async def check_request(target: Target, request: bytes, what: str) -> None:
    status, body = await one_request(target, request)
    if status != 200:
        raise SystemExit(f"{what} answered {status}: {body[:500]!r}")


async def overload(
    target: Target,
    request: bytes,
    connections: int,
    args: argparse.Namespace,
    server_pid: int | None,
    request_timeout_s: float,
) -> Overload:
    result = await generate_load(target, request, connections, args.duration, 0.5, server_pid)
    base_url = f"http://{target.host}:{target.port}"
    ready_after = await asyncio.to_thread(wait_ready, base_url, 30, None)
    started = time.perf_counter()
    await check_request(target, request, "the first request after the overload")
    next_request = time.perf_counter() - started
    return Overload(
        connections,
        args.duration,
        {k: v for k, v in sorted(result.statuses.items())},
        result.percentile(99),
        max(result.ok_latencies_ms, default=math.nan),
        request_timeout_s,
        ready_after * 1000,
        next_request * 1000,
    )


async def bench_server(
    name: str,
    target: Target,
    requests: dict[str, bytes],
    args: argparse.Namespace,
    server_pid: int | None,
    *,
    with_body_only: bool,
    with_overload: bool,
    request_timeout_s: float,
) -> tuple[Series, Series | None, Overload | None]:
    await check_request(target, requests["infer"], "the inference route")
    served = await sweep(name, target, requests["infer"], args.levels, args, server_pid)
    body_only = None
    if with_body_only:
        status, _ = await one_request(target, requests["body_only"])
        if status == 200:
            body_only = await sweep(
                "body-only", target, requests["body_only"], args.levels, args, server_pid
            )
        else:
            print(
                f"  {BODY_ONLY_PATH} answered {status}: start the service with "
                f"{ENV_PREFIX}BENCH_ENDPOINT=true to measure the limit"
            )
    result = None
    if with_overload:
        connections = args.overload_factor * args.target_concurrency
        print(f"  overload: {connections} connections for {args.duration:g} s ...", flush=True)
        result = await overload(
            target, requests["infer"], connections, args, server_pid, request_timeout_s
        )
    return served, body_only, result


# --- report ------------------------------------------------------------------------
def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def report(
    raw: RawResult | None,
    series: list[Series],
    body_only: Series | None,
    overload_result: Overload | None,
    args: argparse.Namespace,
    request_info: str,
) -> dict[str, Any]:
    body_peak = max((r.ok_per_s for r in body_only.results), default=0) if body_only else None
    limit = None
    if raw is not None and body_peak:
        limit = 1 / (1 / raw.best_items_per_s + 1 / body_peak)
    print()
    print(f"request: {request_info}")
    if raw is not None:
        sizes = ", ".join(f"{b}: {v:.0f}" for b, v in raw.items_per_s.items())
        print(
            f"raw model, in process: best {raw.best_items_per_s:.0f} items/s at batch "
            f"{raw.best_batch}; single item p50 {raw.single_item_p50_ms:.3f} ms  ({sizes})"
        )
    if body_peak:
        print(f"body-only {BODY_ONLY_PATH}: best {body_peak:.0f} req/s")
    if limit:
        print(f"serial-sum limit 1/(1/raw + 1/body-only): {limit:.0f} req/s")
    columns = [*series, *([body_only] if body_only else [])]
    print("batch: mean items per model call; cpu: cores the service process kept busy")
    header = f"{'conc':>5} |" + "|".join(
        f" {s.name + ' req/s':>15} {'p50 ms':>8} {'p99 ms':>8} {'batch':>5} {'cpu':>4} "
        for s in columns
    )
    print(header)
    print("-" * len(header))
    for concurrency in args.levels:
        cells = []
        for s in columns:
            r = s.at(concurrency)
            if r is None:
                cells.append(f" {'-':>15} {'-':>8} {'-':>8} {'-':>5} {'-':>4} ")
                continue
            cells.append(
                f" {fmt(r.ok_per_s):>15} {fmt(r.percentile(50), 2):>8}"
                f" {fmt(r.percentile(99), 2):>8} {fmt(r.mean_batch):>5} {fmt(r.server_cpu):>4} "
            )
        print(f"{concurrency:>5} |" + "|".join(cells))
    verdicts: dict[str, Any] = {}
    if series:
        head = series[0]
        at_target = head.at(args.target_concurrency)
        if at_target and limit:
            share = at_target.ok_per_s / limit
            verdicts["share_of_limit_at_target"] = round(share, 3)
            print(
                f"{head.name} at {args.target_concurrency} connections: "
                f"{at_target.ok_per_s:.0f} req/s = {share * 100:.0f}% of the limit "
                f"(target >= {TARGET_SHARE * 100:.0f}%): {verdict(share >= TARGET_SHARE)}"
            )
        if at_target:
            print(
                f"load generator: {at_target.client_cpu:.2f} cores at {args.target_concurrency} "
                f"connections ({1e3 * at_target.client_cpu / max(at_target.ok_per_s, 1):.3f} "
                "ms of client CPU per request)"
            )
        at_one = head.at(1)
        if at_one and raw is not None:
            extra = at_one.percentile(50) - raw.single_item_p50_ms
            verdicts["p50_at_1_over_raw_ms"] = round(extra, 3)
            print(
                f"{head.name} at 1 connection: p50 {at_one.percentile(50):.2f} ms = raw single "
                f"item + {extra:.2f} ms (target <= 1 ms): {verdict(extra <= 1)}"
            )
    if overload_result is not None:
        o = overload_result
        others = {k: v for k, v in o.statuses.items() if k not in (200, 503, 504)}
        verdicts["overload_only_200_503_504"] = not others
        print(
            f"overload, {o.connections} connections for {o.seconds:g} s: statuses {o.statuses}; "
            f"admitted p99 {o.ok_p99_ms:.0f} ms, max {o.ok_max_ms:.0f} ms "
            f"(REQUEST_TIMEOUT_S {o.request_timeout_s:g} s); ready {o.ready_after_ms:.0f} ms "
            f"after, next request {o.next_request_ms:.1f} ms: "
            f"{'only 200/503/504' if not others else f'UNEXPECTED {others}'}"
        )
    return {
        "request": request_info,
        "raw": None if raw is None else {**asdict(raw), "best_batch": raw.best_batch},
        "body_only_peak_req_per_s": body_peak,
        "serial_sum_limit_req_per_s": limit,
        "series": {s.name: [r.summary() for r in s.results] for s in columns},
        "overload": None if overload_result is None else asdict(overload_result),
        "verdicts": verdicts,
        "settings": {"duration_s": args.duration, "levels": args.levels},
    }


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    levels = data["settings"]["levels"]
    for name, rows in data["series"].items():
        levels = [r["concurrency"] for r in rows]
        top.plot(levels, [r["req_per_s"] for r in rows], marker="o", label=name)
        bottom.plot(levels, [r["p99_ms"] for r in rows], marker="o", label=name)
    limit = data["serial_sum_limit_req_per_s"]
    if limit:
        top.axhline(limit, color="black", linestyle="--", label=f"limit {limit:.0f} req/s")
        top.axhline(
            TARGET_SHARE * limit,
            color="grey",
            linestyle=":",
            label=f"{TARGET_SHARE * 100:.0f}% of limit",
        )
    if data["raw"]:
        best = max(data["raw"]["items_per_s"].values())
        top.axhline(best, color="tab:red", linestyle="-.", label=f"raw model {best:.0f} items/s")
    top.set_ylim(bottom=0)
    top.set_ylabel("requests / s (200 only)")
    machine = data["machine"]
    load = f"{machine['cpus']} CPUs, load average {machine['load_average_before']:.2f} before"
    top.set_title(f"{data['request']}\n{load}", fontsize=9)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_ylabel("p99 latency (ms)")
    bottom.set_yscale("log")
    bottom.set_xscale("log", base=2)
    bottom.set_xticks(levels, [str(level) for level in levels])
    bottom.set_xlabel("concurrent connections")
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- main --------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="benchmark this running service instead of starting one")
    parser.add_argument("--request", choices=sorted(REQUESTS), default="v2-binary")
    parser.add_argument(
        "--levels",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 2, 4, 8, 16, 32, 64, 128],
        help="concurrent connections to measure, comma-separated",
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each one")
    parser.add_argument("--raw-seconds", type=float, default=0.5, help="per raw batch size")
    parser.add_argument("--target-concurrency", type=int, default=32)
    parser.add_argument("--overload-factor", type=int, default=10)
    parser.add_argument("--no-overload", action="store_true")
    parser.add_argument("--configs", default="dynamic,none", help=f"of {', '.join(CONFIGS)}")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--api-key", default=os.environ.get(f"{ENV_PREFIX}API_KEY"))
    return parser.parse_args()


async def run(args: argparse.Namespace, settings: Settings, raw: RawResult) -> dict[str, Any]:
    path, body, headers = REQUESTS[args.request](settings.model_name)
    request_info = f"{args.request}: POST {path}, {len(body) / 1024:.1f} KiB body"
    series: list[Series] = []
    body_only = overload_result = None
    if args.url:
        url = urlsplit(args.url)
        target = Target(url.hostname or "127.0.0.1", url.port or 80, args.api_key)
        requests = {
            "infer": http_request(target, path, body, headers),
            "body_only": http_request(target, BODY_ONLY_PATH, body, headers),
        }
        served, body_only, overload_result = await bench_server(
            "as-is",
            target,
            requests,
            args,
            None,
            with_body_only=True,
            with_overload=not args.no_overload,
            request_timeout_s=settings.request_timeout_s,
        )
        series.append(served)
    else:
        for index, name in enumerate(args.configs.split(",")):
            print(f"service with batching {name} ({CONFIGS[name]}) ...", flush=True)
            log_path = args.out / f"service-{name}.log"
            with spawned_service(CONFIGS[name], log_path) as (port, pid):
                target = Target("127.0.0.1", port, args.api_key)
                requests = {
                    "infer": http_request(target, path, body, headers),
                    "body_only": http_request(target, BODY_ONLY_PATH, body, headers),
                }
                first = index == 0
                served, measured_body_only, measured_overload = await bench_server(
                    name,
                    target,
                    requests,
                    args,
                    pid,
                    with_body_only=first,
                    with_overload=first and not args.no_overload,
                    request_timeout_s=settings.request_timeout_s,
                )
            series.append(served)
            body_only = body_only or measured_body_only
            overload_result = overload_result or measured_overload
    return report(raw, series, body_only, overload_result, args, request_info)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(
            f"note: load average {load_before:.2f} before the run: other work shares these "
            f"{os.cpu_count()} CPUs, so the figures will be low and noisy"
        )
    settings = Settings()
    batch_sizes = [int(CONFIGS[c]["MAX_BATCH_SIZE"]) for c in args.configs.split(",")]
    print(f"raw model ({Model.platform}, in this process) ...", flush=True)
    raw = measure_raw(settings, max(batch_sizes), args.raw_seconds)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    data = runner(run(args, settings, raw))
    data["machine"] = {
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    (args.out / "bench.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    plot(data, args.out / "bench.png")
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")


if __name__ == "__main__":
    main()
