"""Benchmark text to speech: throughput and latency against concurrency, batching on and off.

    python scripts/bench.py                          # starts the service itself (make bench)
    python scripts/bench.py --url http://host:8000   # a running service, as it is configured

One run measures, on this machine:

1. raw: the model alone, in this process, no HTTP: audio seconds made per
   second at each warmup batch size, for chunks of the size the service sends;
2. served: ``POST /v1/audio/speech`` (WAV, a few sentences, voices in turn) at
   each concurrency, with batching on (``MAX_BATCH_SIZE=32``) and off
   (``MAX_BATCH_SIZE=1``), the same build restarted with other settings:
   requests/s, audio seconds/s, p50 and p99 of the whole response, and p50 and
   p99 of the time to the first audio byte (what a listener waits for).

Clients keep their connections open and send the next request as soon as the
last one is read (a closed loop), so throughput at high concurrency is the
service's capacity, and latency is what that load costs. It prints a table
and writes ``bench.json`` (and ``bench.png`` when matplotlib is installed) to
``--out``. Run it on a quiet machine: other work on the same cores shows up
in every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without `make install`
    sys.path.insert(0, str(ROOT / "src"))

from {{ cookiecutter.package_name }}.model import Model  # noqa: E402
from {{ cookiecutter.package_name }}.serving.warmup import warmup_batch_sizes  # noqa: E402
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings  # noqa: E402
from {{ cookiecutter.package_name }}.tts.text_chunks import split_text  # noqa: E402

PACKAGE = "{{ cookiecutter.package_name }}"
ROUTE = "/v1/audio/speech"
WAV_HEADER_BYTES = 44
CONFIGS: dict[str, dict[str, str]] = {
    "dynamic": {"MAX_BATCH_SIZE": "32", "MAX_BATCH_WAIT_MS": "2"},
    "none": {"MAX_BATCH_SIZE": "1", "MAX_BATCH_WAIT_MS": "0"},
}
TEXT = (
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins "
    "with a single step. Speech arrives sentence by sentence, as soon as each one is made."
)


# --- HTTP ----------------------------------------------------------------------------------
@dataclass
class Target:
    host: str
    port: int
    api_key: str | None


def speech_request(target: Target, model: str, voice: str) -> bytes:
    """One keep-alive POST, encoded once and sent as is every time."""
    body = json.dumps({"model": model, "input": TEXT, "voice": voice}).encode()
    lines = [
        f"POST {ROUTE} HTTP/1.1",
        f"Host: {target.host}:{target.port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if target.api_key:
        lines.append(f"Authorization: Bearer {target.api_key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Reply:
    status: int
    body_bytes: int
    first_byte_s: float  # after the request was sent: when the first body byte arrived
    close: bool


async def read_reply(reader: asyncio.StreamReader, sent: float) -> Reply:
    """A response with a Content-Length or chunked body, timing its first body byte."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    status = int(head[9:12])
    close = b"\r\nconnection: close" in head
    length_at = head.find(b"\r\ncontent-length:")
    if length_at >= 0:
        remaining = int(head[length_at + 17 : head.index(b"\r\n", length_at + 2)])
        first = b""
        if remaining:
            first = await reader.read(remaining)
        first_byte = time.perf_counter() - sent
        remaining -= len(first)
        if remaining:
            await reader.readexactly(remaining)
        return Reply(status, len(first) + remaining, first_byte, close)
    total, first_byte = 0, math.nan
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        await reader.readexactly(size + 2)
        if not total:
            first_byte = time.perf_counter() - sent
        total += size
    await reader.readuntil(b"\r\n")
    return Reply(status, total, first_byte, close)


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    statuses: dict[int, int]
    audio_seconds: float
    latencies_ms: list[float] = field(repr=False)
    first_audio_ms: list[float] = field(repr=False)

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        return {
            "concurrency": self.concurrency,
            "req_per_s": round(self.statuses.get(200, 0) / self.seconds, 2),
            "audio_s_per_s": round(self.audio_seconds / self.seconds, 1),
            "p50_ms": round(percentile(self.latencies_ms, 50), 1),
            "p99_ms": round(percentile(self.latencies_ms, 99), 1),
            "first_audio_p50_ms": round(percentile(self.first_audio_ms, 50), 1),
            "first_audio_p99_ms": round(percentile(self.first_audio_ms, 99), 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


async def generate_load(
    target: Target, requests: list[bytes], sample_rate: int, concurrency: int, seconds: float
) -> LoadResult:
    """Closed loop: ``concurrency`` connections; replies finishing in the window are counted.

    The window opens once every client has had one reply (the queue has reached
    its steady state at this load) and stays open ``seconds``, or three times the
    slowest first reply if that is longer: at high concurrency replies come in
    waves, and the window must hold several of them.
    """
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    first_audio: list[float] = []
    audio_seconds = 0.0
    warm = 0
    slowest_first = 0.0
    window = [math.inf, math.inf]  # start, end

    async def client(index: int) -> None:
        nonlocal audio_seconds, warm, slowest_first
        reader, writer = await asyncio.open_connection(target.host, target.port)
        turn = index
        try:
            while (sent := time.perf_counter()) < window[1]:
                writer.write(requests[turn % len(requests)])
                turn += concurrency
                try:
                    reply = await read_reply(reader, sent)
                except (asyncio.IncompleteReadError, ConnectionError):
                    reply = Reply(0, 0, math.nan, True)  # cut off: count it and reconnect
                done = time.perf_counter()
                if turn == index + concurrency:  # this client's first reply
                    warm += 1
                    slowest_first = max(slowest_first, done - sent)
                    if warm == concurrency:
                        window[:] = [done, done + max(seconds, 3 * slowest_first)]
                elif window[0] <= done < window[1]:
                    statuses[reply.status] += 1
                    if reply.status == 200:
                        latencies.append((done - sent) * 1000)
                        first_audio.append(reply.first_byte_s * 1000)
                        audio_seconds += (reply.body_bytes - WAV_HEADER_BYTES) / 2 / sample_rate
                if reply.close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(target.host, target.port)
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return LoadResult(
        concurrency, window[1] - window[0], dict(statuses), audio_seconds, latencies, first_audio
    )


# --- the model alone -----------------------------------------------------------------------
def measure_raw(settings: Settings, max_batch_size: int, seconds: float) -> dict[int, float]:
    """Audio seconds per second from predict() on ready batches of the service's chunks."""
    model = Model(settings)
    model.load()
    chunks = split_text(TEXT, settings.tts_chunk_chars)
    utterances = [
        model.prepare(chunk, model.voices[i % len(model.voices)], 1.0)
        for i, chunk in enumerate(chunks * max_batch_size)
    ]
    rate: dict[int, float] = {}
    for size in warmup_batch_sizes(max_batch_size):
        batch = utterances[:size]
        audio_s = sum(len(a) for a in model.predict(batch)) / model.sample_rate
        runs: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(runs) < 3:
            started = time.perf_counter()
            model.predict(batch)
            runs.append(time.perf_counter() - started)
        rate[size] = audio_s / statistics.median(runs)
    return rate


# --- the service ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base_url: str, timeout_s: float, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{base_url} was not ready within {timeout_s:g} s")


@contextlib.contextmanager
def spawned_service(config: dict[str, str], log_path: Path) -> Iterator[int]:
    """``python -m {{ cookiecutter.package_name }}`` on a free port with extra settings."""
    port = free_port()
    env = {
        **os.environ,
        **{ENV_PREFIX + name: value for name, value in config.items()},
        f"{ENV_PREFIX}HOST": "127.0.0.1",
        f"{ENV_PREFIX}PORT": str(port),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", PACKAGE], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}", 180, process)
            yield port
        except RuntimeError as exc:
            raise SystemExit(f"{exc}; its log: {log_path}") from None
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def service_info(target: Target) -> tuple[str, list[str], int]:
    """The served model name, a few voices and the sample rate, asked of the service itself."""
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    base = f"http://{target.host}:{target.port}"
    request = urllib.request.Request(f"{base}/v1/models", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        model = json.load(response)["data"][0]["id"]
    probe = json.dumps({"model": model, "input": "Hi.", "voice": "alloy"}).encode()
    request = urllib.request.Request(
        f"{base}{ROUTE}", data=probe, headers={**headers, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        sample_rate = int(response.headers["X-Sample-Rate"])
    return model, ["alloy", "echo", "nova", "onyx"], sample_rate


def sweep(name: str, target: Target, levels: list[int], seconds: float) -> list[LoadResult]:
    model, voices, sample_rate = service_info(target)
    requests = [speech_request(target, model, voice) for voice in voices]
    results = []
    for concurrency in levels:
        result = asyncio.run(generate_load(target, requests, sample_rate, concurrency, seconds))
        results.append(result)
        row = result.summary()
        print(
            f"{name:>8} {concurrency:>5} {row['req_per_s']:>8} {row['audio_s_per_s']:>9} "
            f"{row['p50_ms']:>9} {row['p99_ms']:>9} {row['first_audio_p50_ms']:>9} "
            f"{row['first_audio_p99_ms']:>9}  {row['statuses']}",
            flush=True,
        )
    return results


def plot(series: dict[str, list[LoadResult]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, results in series.items():
        levels = [r.concurrency for r in results]
        left.plot(levels, [r.audio_seconds / r.seconds for r in results], marker="o", label=name)
        right.plot(
            levels, [percentile(r.latencies_ms, 99) for r in results], marker="o", label=name
        )
        right.plot(
            levels,
            [percentile(r.first_audio_ms, 99) for r in results],
            marker="x",
            linestyle="--",
            label=f"{name}: first audio",
        )
    left.set(xscale="log", xlabel="concurrent clients", ylabel="audio seconds per second")
    right.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="p99 latency (ms)")
    for axis in (left, right):
        axis.set_xticks([r.concurrency for r in next(iter(series.values()))])
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle("POST /v1/audio/speech (WAV), batching on and off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running service (default: start one per batching mode)")
    parser.add_argument("--api-key", default=os.environ.get(f"{ENV_PREFIX}API_KEY"))
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated levels")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per level")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"text_chars": len(TEXT), "load_average": os.getloadavg()}

    settings = Settings()
    if not args.url:
        raw = measure_raw(settings, int(CONFIGS["dynamic"]["MAX_BATCH_SIZE"]), seconds=1.0)
        report["raw_audio_s_per_s"] = {str(size): round(rate, 1) for size, rate in raw.items()}
        print("raw model (audio s/s by batch size):", report["raw_audio_s_per_s"])
    print(
        f"{'batching':>8} {'conc':>5} {'req/s':>8} {'audio s/s':>9} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'1st p50':>9} {'1st p99':>9}  statuses"
    )
    series: dict[str, list[LoadResult]] = {}
    if args.url:
        url = urlsplit(args.url)
        target = Target(url.hostname or "127.0.0.1", url.port or 80, args.api_key)
        series["as-is"] = sweep("as-is", target, levels, args.duration)
    else:
        for name, config in CONFIGS.items():
            with spawned_service(config, args.out / f"service-{name}.log") as port:
                target = Target("127.0.0.1", port, args.api_key)
                series[name] = sweep(name, target, levels, args.duration)
    report["served"] = {name: [r.summary() for r in results] for name, results in series.items()}
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(series, args.out / "bench.png")
    print(f"wrote {args.out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
