"""Measure a baked service under hostile clients (the figures of issue 14).

Usage: python scripts/hostile_figures.py <baked project dir> <workload> [figure ...]
figures: stalled (1,000 stalled uploads, then inference), slowloris (1,000 slowloris
connections, open after the header timeout), rss (peak RSS at the admission bounds),
drain (shutdown time with stalled and slow uploads in flight). Starts
``python -m <package>`` itself with the defaults, except where a figure says.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(project: Path, port: int, **env: str) -> subprocess.Popen[str]:
    model = next(p for p in (project / "models").iterdir() if p.name.startswith("model."))
    environment = {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "AI_SERVICE_MODEL_PATH": str(model),
        "AI_SERVICE_HOST": "127.0.0.1",
        "AI_SERVICE_PORT": str(port),
        "AI_SERVICE_CPU_FALLBACK": "true",
        "AI_SERVICE_LOG_LEVEL": os.environ.get("FIGURES_LOG_LEVEL", "WARNING"),
        "AI_SERVICE_LOG_JSON": "false",
        **{f"AI_SERVICE_{k.upper()}": v for k, v in env.items()},
    }
    process = subprocess.Popen(
        [PY, "-m", "ai_service"],
        env=environment,
        text=True,
        stdout=open(os.environ.get("FIGURES_LOG", os.devnull), "w"),  # noqa: SIM115 (the server's)
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("never ready")


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def server_connections(port: int) -> int:
    """Established connections on the server's side of the port (from /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "01" and int(local.split(":")[1], 16) == port:
            count += 1
    return count


ROUTES = {
    "vision": ("/v1/classify", "application/octet-stream"),
    "llm": ("/v1/completions", "application/json"),
    "embeddings": ("/v1/embeddings", "application/json"),
    "tts": ("/v1/audio/speech", "application/json"),
}


def good_request(workload: str, project: Path) -> dict[str, Any]:
    if workload == "vision":
        sys.path.insert(0, str(project))
        from tests.images import image_bytes  # type: ignore[import-not-found]

        return {"content": image_bytes(0), "headers": {"content-type": "image/png"}}
    body = {
        "llm": {"model": "ai-service", "prompt": "hello", "max_tokens": 4},
        "embeddings": {"model": "ai-service", "input": "hello world"},
        "tts": {"model": "ai-service", "input": "hello", "voice": "alloy"},
    }[workload]
    return {"json": body}


async def stalled(port: int, route: str, ctype: str, declared: int = 100_000) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {route} HTTP/1.1\r\nHost: t\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {declared}\r\n\r\n0123456789".encode()
    )
    await writer.drain()
    return reader, writer


async def figure_stalled(project: Path, workload: str) -> dict[str, Any]:
    port = free_port()
    process = start(project, port)
    route, ctype = ROUTES[workload]
    try:
        conns = [await stalled(port, route, ctype) for _ in range(1000)]
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            started = time.monotonic()
            statuses = [
                (await client.post(route, **good_request(workload, project))).status_code
                for _ in range(10)
            ]
            elapsed = time.monotonic() - started
            ready = (await client.get("/health/ready")).status_code
        for _, writer in conns:
            writer.close()
        return {
            "stalled_open": 1000,
            "inference": statuses,
            "ready": ready,
            "seconds_for_10": round(elapsed, 2),
        }
    finally:
        process.kill()
        process.wait()


async def figure_slowloris(project: Path, workload: str) -> dict[str, Any]:
    port = free_port()
    process = start(project, port)
    try:
        conns = []
        for _ in range(1000):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-A: ")
            conns.append((reader, writer))

        async def drip(writer: asyncio.StreamWriter) -> None:
            with_error = False
            while not with_error:
                await asyncio.sleep(1)
                try:
                    writer.write(b"a")
                    await writer.drain()
                except ConnectionError:
                    with_error = True

        tasks = [asyncio.create_task(drip(w)) for _, w in conns]
        started = time.monotonic()
        await asyncio.sleep(2)
        open_before = server_connections(port)
        await asyncio.sleep(10)  # past HEADER_TIMEOUT_S (10 s)
        open_ = server_connections(port)
        async with httpx.AsyncClient(timeout=5) as client:
            probe = (await client.get(f"http://127.0.0.1:{port}/health/ready")).status_code
        for task in tasks:
            task.cancel()
        return {
            "slowloris": 1000,
            "still_open_after_s": round(time.monotonic() - started, 1),
            "open_at_2s": open_before,
            "open": open_,
            "probe": probe,
        }
    finally:
        process.kill()
        process.wait()


async def figure_rss(project: Path, workload: str) -> dict[str, Any]:
    """Maximal bodies, as many at once as admission lets in (and more), peak RSS."""
    port = free_port()
    process = start(project, port)
    route, ctype = ROUTES[workload]
    idle, _ = rss_mb(process.pid)
    limit = {"vision": 10 << 20, "llm": 1 << 20, "embeddings": 8 << 20, "tts": 256 << 10}[workload]
    if workload == "vision":
        body = bytes(limit)  # not an image: decoded and refused, after being held
    else:
        good = good_request(workload, project)["json"]
        filler = "x" * (limit - len(json.dumps(good)) - 64)
        body = json.dumps({**good, "user": filler}).encode()
    concurrent = 300
    statuses: dict[int, int] = {}
    peak = 0.0
    try:

        async def one(client: httpx.AsyncClient) -> None:
            try:
                response = await client.post(route, content=body, headers={"content-type": ctype})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            except httpx.HTTPError as exc:
                statuses[-1] = statuses.get(-1, 0) + 1
                del exc

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rss_mb(process.pid)[0])
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        limits = httpx.Limits(max_connections=concurrent)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits
        ) as client:
            await asyncio.gather(*(one(client) for _ in range(concurrent)))
        await asyncio.sleep(1)
        sampler.cancel()
        after, hwm = rss_mb(process.pid)
        return {
            "body_bytes": len(body),
            "concurrent": concurrent,
            "statuses": statuses,
            "rss_idle_mb": round(idle),
            "rss_peak_mb": round(max(peak, hwm)),
            "rss_after_mb": round(after),
            "manifest_memory_mb": 2048,
        }
    finally:
        process.kill()
        process.wait()


async def figure_drain(project: Path, workload: str) -> dict[str, Any]:
    port = free_port()
    budget = 5.0
    process = start(project, port, shutdown_timeout_s=str(budget))
    route, ctype = ROUTES[workload]
    stalled_conns = [await stalled(port, route, ctype) for _ in range(200)]
    slow = [await stalled(port, route, ctype) for _ in range(20)]

    async def trickle(writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(0.2)
            try:
                writer.write(b"0")
                await writer.drain()
            except ConnectionError:
                return

    tasks = [asyncio.create_task(trickle(w)) for _, w in slow]

    async def status_of(reader: asyncio.StreamReader) -> str:
        try:  # read as a real client does: while the shutdown runs
            line = await asyncio.wait_for(reader.readline(), 30)
            return line.split()[1].decode() if line else "closed"
        except (TimeoutError, ConnectionError, IndexError):
            return "reset"

    answers = [asyncio.create_task(status_of(r)) for r, _ in stalled_conns + slow]
    deadline = time.monotonic() + 30  # until the server has accepted every connection
    while server_connections(port) < len(answers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = await asyncio.to_thread(process.wait, 60)
    elapsed = time.monotonic() - started
    statuses: dict[str, int] = {}
    results = await asyncio.gather(*answers)
    for key in results:
        statuses[key] = statuses.get(key, 0) + 1
    if os.environ.get("FIGURES_DEBUG"):
        print([i for i, key in enumerate(results) if key != "503"], file=sys.stderr)
    for task in tasks:
        task.cancel()
    return {
        "shutdown_timeout_s": budget,
        "shutdown_s": round(elapsed, 2),
        "exit": code,
        "uploads": statuses,
    }


def main() -> None:
    project, workload = Path(sys.argv[1]).resolve(), sys.argv[2]
    figures = sys.argv[3:] or ["stalled", "slowloris", "rss", "drain"]
    for name in figures:
        result = asyncio.run(globals()[f"figure_{name}"](project, workload))
        print(json.dumps({"workload": workload, "figure": name, **result}), flush=True)


if __name__ == "__main__":
    main()
