"""What every workload's ``scripts/bench.py`` shares: load, processes, baseline, report.

- **Load generator**: one asyncio process (uvloop when installed), closed loop
  (each connection sends its next request as soon as its last reply is read),
  requests encoded once, a minimal HTTP/1.1 reader that times every body chunk
  (first byte, tokens). Measured against the body-only baseline at 64 connections
  on 2 cores, it costs 0.04 ms of client CPU per request; wrk 0.02, hey 0.08,
  aiohttp 0.26, httpx 1.7 (one client per connection) to 9.5 (one shared pool).
  It is kept over wrk and hey because they come from system packages rather
  than the project's dev dependencies, cannot time the chunks of a streamed
  reply (time to first token, first audio), and wrk needs Lua for a POST body;
  the clients cost the service's cores. Figures and method: docs chapter 2.
- **The service**, started as production starts it (``python -m``) with extra
  settings, on a free local port, stopped with SIGTERM (it drains).
- **The body-only baseline**: ``python scripts/benchlib.py`` serves a bare ASGI
  app that reads the request body and answers its length, on the same server
  with the same options as the service (uvicorn, its loop and HTTP parser,
  WORKERS): what this machine's HTTP path can do with no model at all. It is
  never part of the service.
- **Report**: percentiles, CPU of both processes, a Markdown table, JSON, a plot.
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
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without `make install`
    sys.path.insert(0, str(ROOT / "src"))

from {{ cookiecutter.package_name }}.settings import ENV_PREFIX  # noqa: E402

PACKAGE = "{{ cookiecutter.package_name }}"


# --- the load generator --------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    host: str
    port: int
    api_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(
        self, path: str, body: bytes = b"", headers: dict[str, str] | None = None, method="POST"
    ) -> bytes:
        """One HTTP/1.1 keep-alive request, encoded once and sent as is every time."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if self.api_key:
            lines.append(f"Authorization: Bearer {self.api_key}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Reply:
    status: int
    sent: float  # perf_counter when the request was written
    done: float  # ... when the last body byte arrived
    chunks: list[tuple[float, int]]  # (arrival, bytes) of each body piece read
    pieces: list[bytes] = field(default_factory=list)  # the pieces, when asked to keep them
    close: bool = False

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)

    @property
    def latency_ms(self) -> float:
        return (self.done - self.sent) * 1000


async def read_reply(reader: asyncio.StreamReader, sent: float, keep_body: bool) -> Reply:
    """A Content-Length or chunked response, timing each body piece as it arrives."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    clock = time.perf_counter
    chunks: list[tuple[float, int]] = []
    kept: list[bytes] = []
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        remaining = int(head[at + 17 : head.index(b"\r\n", at + 2)])
        while remaining:
            piece = await reader.read(remaining)
            if not piece:
                raise asyncio.IncompleteReadError(piece, remaining)
            chunks.append((clock(), len(piece)))
            remaining -= len(piece)
            if keep_body:
                kept.append(piece)
    else:  # chunked
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            piece = await reader.readexactly(size + 2)
            chunks.append((clock(), size))
            if keep_body:
                kept.append(piece[:-2])
        await reader.readuntil(b"\r\n")
    close = b"\r\nconnection: close" in head
    return Reply(int(head[9:12]), sent, clock(), chunks, kept, close)


@dataclass
class Load:
    """The replies that finished inside the measured window, and what it cost."""

    concurrency: int
    seconds: float
    replies: list[Reply] = field(repr=False)
    server_cpu: float | None  # cores the service kept busy on average (None: unknown)
    client_cpu: float  # cores this process kept busy

    @property
    def ok(self) -> list[Reply]:
        return [reply for reply in self.replies if reply.status == 200]

    @property
    def statuses(self) -> dict[int, int]:
        return dict(sorted(Counter(reply.status for reply in self.replies).items()))

    @property
    def ok_per_s(self) -> float:
        return len(self.ok) / self.seconds

    def latency_ms(self, q: float) -> float:
        return percentile([reply.latency_ms for reply in self.ok], q)

    def client_ms_per_request(self) -> float:
        return 1000 * self.client_cpu * self.seconds / max(len(self.replies), 1)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def summary(mode: str, load: Load) -> dict[str, Any]:
    """The figures every workload reports for one level (each adds its own)."""
    return {
        "mode": mode,
        "concurrency": load.concurrency,
        "req_per_s": load.ok_per_s,
        "p50_ms": load.latency_ms(50),
        "p99_ms": load.latency_ms(99),
        "statuses": load.statuses,
        "server_cpu": load.server_cpu,
        "client_ms_per_request": load.client_ms_per_request(),
    }


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process and its children (WORKERS > 1), from /proc."""
    if pid is None:
        return None
    stats: dict[int, list[str]] = {}
    for path in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):  # it ended meanwhile
            stats[int(path.parent.name)] = path.read_text().rsplit(")", 1)[1].split()
    if pid not in stats:
        return None
    tree = {pid} | {child for child, fields in stats.items() if int(fields[1]) == pid}
    return sum(int(stats[p][11]) + int(stats[p][12]) for p in tree) / os.sysconf("SC_CLK_TCK")


async def closed_loop(
    target: Target,
    requests: Sequence[bytes],
    concurrency: int,
    seconds: float,
    *,
    warmup_s: float = 0.5,
    server_pid: int | None = None,
    keep_body: bool = False,
    stagger_s: float = 0.0,
    waves: float = 2.0,
) -> Load:
    """``concurrency`` connections; connection k sends requests k, k + concurrency, ...

    The window opens once ``warmup_s`` has passed and every connection has had one
    reply (the queue has reached its steady state at this load), and stays open
    ``seconds``, or ``waves`` times the slowest first reply if that is longer: when
    replies are slow (a long completion, a deep queue) it still holds several.
    Replies finishing inside it are counted; a broken connection counts as status 0.
    """
    replies: list[Reply] = []
    first_replies: list[float] = []
    window = [math.inf, math.inf]
    opened = asyncio.Event()
    started = time.perf_counter()
    cpu: dict[str, tuple[float, float | None]] = {}

    def open_window(at: float) -> None:
        window[:] = [at, at + max(seconds, waves * max(first_replies))]
        opened.set()

    async def measure_cpu() -> None:
        await opened.wait()
        await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
        cpu["start"] = (time.process_time(), process_cpu_seconds(server_pid))
        await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
        cpu["end"] = (time.process_time(), process_cpu_seconds(server_pid))

    async def connection(index: int) -> None:
        await asyncio.sleep(index * stagger_s)
        reader, writer = await asyncio.open_connection(target.host, target.port)
        turn, first = index, True
        try:
            while (sent := time.perf_counter()) < window[1]:
                writer.write(requests[turn % len(requests)])
                turn += concurrency
                try:
                    reply = await read_reply(reader, sent, keep_body)
                except (asyncio.IncompleteReadError, ConnectionError):
                    reply = Reply(0, sent, time.perf_counter(), [], close=True)
                if first:
                    first = False
                    first_replies.append(reply.done - sent)
                    if len(first_replies) == concurrency:
                        open_window(max(reply.done, started + warmup_s))
                elif window[0] <= reply.done < window[1]:
                    replies.append(reply)
                if reply.close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(target.host, target.port)
        finally:
            writer.close()

    await asyncio.gather(measure_cpu(), *(connection(i) for i in range(concurrency)))
    length = window[1] - window[0]
    (client_0, server_0), (client_1, server_1) = cpu["start"], cpu["end"]
    server = None if server_0 is None or server_1 is None else (server_1 - server_0) / length
    return Load(concurrency, length, replies, server, (client_1 - client_0) / length)


async def one_reply(target: Target, request: bytes, what: str) -> Reply:
    """Send one request on a fresh connection; exit naming ``what`` unless it answers 200."""
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.write(request)
        reply = await read_reply(reader, time.perf_counter(), keep_body=True)
    finally:
        writer.close()
    if reply.status != 200:
        raise SystemExit(f"{what} answered {reply.status}: {reply.body[:500]!r}")
    return reply


def run(coroutine: Any) -> Any:
    """Run on uvloop when it is installed (uvicorn[standard] brings it), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# --- processes -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"it exited with code {process.returncode}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=2) as response,
        ):
            if response.status == 200:
                return time.perf_counter() - started
        time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:g} s")


@contextlib.contextmanager
def spawned(
    command: list[str],
    settings: dict[str, str],
    log_path: Path,
    ready_path: str,
    clean_exits: tuple[int, ...] = (0,),
    root: Path = ROOT,
) -> Iterator[tuple[int, int]]:
    """Run ``command`` with these settings (names without the prefix) on a free port.

    Yields (port, pid) once ``ready_path`` answers 200; SIGTERM at the end. ``root``: the
    project it runs in (its ``src`` first on the path), this one unless another is named.
    """
    port = free_port()
    env = {
        **os.environ,
        **{ENV_PREFIX + name: value for name, value in settings.items()},
        f"{ENV_PREFIX}HOST": "127.0.0.1",
        f"{ENV_PREFIX}PORT": str(port),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(root / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=log)
        try:
            wait_ready(f"http://127.0.0.1:{port}{ready_path}", 300, process)
            yield port, process.pid
        except RuntimeError as exc:
            raise SystemExit(f"{' '.join(command)}: {exc}; its log: {log_path}") from None
        finally:
            process.send_signal(signal.SIGTERM)  # the service drains, then exits
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            if code not in clean_exits:
                print(f"warning: {command[-1]} exited with code {code} (log: {log_path})")


def service(settings: dict[str, str], log_path: Path, *, body_only: bool = False) -> Any:
    """The service as production starts it, ``python -m``, with these extra settings; or,
    with ``body_only``, the baseline (this file run as a script) with the same settings."""
    if not body_only:
        return spawned([sys.executable, "-m", PACKAGE], settings, log_path, "/health/ready")
    command = [sys.executable, str(Path(__file__).resolve())]
    # uvicorn's server ends by re-raising the SIGTERM it handled: -15 is a clean exit here
    return spawned(command, settings, log_path, "/", clean_exits=(0, -signal.SIGTERM))


async def body_only_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: read the whole body, answer its length; the lifespan protocol for uvicorn."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    answer = b'{"bytes":%d}' % size
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def serve_body_only() -> None:
    """uvicorn configured as ``python -m {{ cookiecutter.package_name }}`` configures it (same
    settings, same HTTP protocol and header limits), serving ``body_only_app``."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from {{ cookiecutter.package_name }}.__main__ import guarded_config
    from {{ cookiecutter.package_name }}.settings import Settings

    settings = Settings()
    # this file runs as a script: its folder is on sys.path (and a spawned worker's)
    app = f"{Path(__file__).stem}:{body_only_app.__name__}"
    config = guarded_config(settings, app, workers=settings.worker_processes)
    if settings.worker_processes > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()


# --- command line and report ----------------------------------------------------------------
def arguments(doc: str, levels: list[int], duration_s: float) -> argparse.ArgumentParser:
    """The options every workload's benchmark takes; each adds its own."""
    parser = argparse.ArgumentParser(
        description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="measure this running service, as it is configured")
    parser.add_argument(
        "--levels",
        type=lambda text: [int(part) for part in text.split(",")],
        default=levels,
        help=f"concurrent connections, comma-separated (default {','.join(map(str, levels))})",
    )
    parser.add_argument("--duration", type=float, default=duration_s, help="seconds per level")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--api-key", default=os.environ.get(f"{ENV_PREFIX}API_KEY"))
    return parser


def url_target(url: str, api_key: str | None) -> Target:
    parts = urlsplit(url)
    return Target(parts.hostname or "127.0.0.1", parts.port or 80, api_key)


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table: the first column left-aligned, the figures right-aligned."""
    align = ["---", *["---:"] * (len(columns) - 1)]
    lines = [columns, align, *[[str(cell) for cell in row] for row in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def note_machine() -> dict[str, Any]:
    """CPUs and load average; warn when other work shares the machine."""
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"note: load average {load:.2f}: other work shares these {os.cpu_count()} CPUs")
    return {"cpus": os.cpu_count(), "load_average_before": round(load, 2)}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data["machine"] = {**data.get("machine", {}), "load_average_after": os.getloadavg()[0]}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def plot(
    path: Path,
    title: str,
    rows: list[dict[str, Any]],
    figures: dict[str, str],
    lines: dict[str, float] | None = None,
) -> None:
    """One panel per figure (its title -> a row key), one line per mode, against concurrency;
    ``lines``: horizontal reference lines (label -> value) on the first panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(figures), figsize=(5 * len(figures), 4), squeeze=False)
    for axis, (name, key) in zip(axes[0], figures.items(), strict=True):
        for mode in dict.fromkeys(row["mode"] for row in rows):
            points = [(row["concurrency"], row[key]) for row in rows if row["mode"] == mode]
            if not all(value is None for _, value in points):
                axis.plot(*zip(*points, strict=True), marker="o", label=mode)
        axis.set(title=name, xlabel="concurrent connections")
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        if key.endswith("_ms"):  # latencies span orders of magnitude
            axis.set_yscale("log")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    for number, (label, value) in enumerate((lines or {}).items()):
        axes[0][0].axhline(
            value, color="black", linestyle=("--", ":", "-.")[number % 3], label=label
        )
    axes[0][0].legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"wrote {path}")


if __name__ == "__main__":
    serve_body_only()
