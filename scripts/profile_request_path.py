"""Where a vision request's CPU goes, by thread and by stage (`make profile`).

    python scripts/profile_request_path.py [--request tensor|jpeg] [--connections 32] [--seconds 8]

Bakes the default service, builds its demo model and serves it in one process
(``WORKERS=1``, so one event loop holds all the HTTP work) under a closed loop of
``--connections`` clients (the service's own load generator, ``scripts/benchlib.py``).
Inside the window it reads two things:

1. **CPU per thread**, from ``/proc/<pid>/task/*/stat`` (user + system), named by
   ``py-spy dump``: the event loop (``MainThread``), the model thread (``model_0``)
   and onnxruntime's pool threads (unnamed), the pre-processing pool
   (``preprocess_*``). Divided by the requests answered: milliseconds of CPU per
   request.
2. **The event loop's split by stage**, from ``py-spy record`` (sampling at 200 Hz
   with ``--idle``): each sample is charged to the innermost frame that names a
   stage (HTTP parsing, routing and middleware, validation and dependencies, body
   read, decode, batching hand-off, response encoding, access log, metrics). Samples
   with no Python frame (uvloop's own socket work, and waiting) are the rest.

Sampling slows the service by about a tenth; the per-thread CPU is read in a
separate, unsampled window.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from baked_default import bake_default

PY_SPY = Path(sys.executable).with_name("py-spy")
# stage: substrings of py-spy frames ("function (file:line)"); the innermost match wins
STAGES = [
    ("access log line", ["Logger.info", "Logger._log"]),
    ("metrics", ["ServiceMetrics", "MetricWrapperBase", "/metrics.py"]),
    ("tracing", ["ExceptionTelemetryMiddleware.__call__.<locals>", "/tracing.py"]),
    (
        "response encoding",
        ["encode_response", "Response.__call__", "serialize_response", "top_k", "dumps"],
    ),
    (
        "batching hand-off",
        ["Batcher.", "InferenceService.infer", "run_off_loop", "InferenceService.preprocess"],
    ),
    ("decode (v2 tensor, image bytes)", ["decode_request", "read_image"]),
    ("body read", ["Request.body", "Request.stream", "guarded_receive", "UploadGuard"]),
    ("validation and dependencies", ["solve_dependencies", "request_params_to_args"]),
    (
        "routing and middleware",
        ["routing.py", "Middleware", "applications.py", "run_asgi", "_exception_handler.py"],
    ),
    ("HTTP parsing (httptools protocol)", ["httptools_impl.py", "http_protocol.py"]),
]


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        cpu[task.name] = (int(fields[11]) + int(fields[12])) / ticks
    return cpu


def thread_names(pid: int) -> dict[str, str]:
    dump = subprocess.run([str(PY_SPY), "dump", "-p", str(pid)], capture_output=True, text=True)
    return dict(re.findall(r'^Thread (\d+) \(\w+\): "([^"]+)"', dump.stdout, re.MULTILINE))


def stage_split(raw: Path) -> tuple[collections.Counter[str], int]:
    split: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            continue
        total += int(count)
        stage = next(
            (
                name
                for frame in reversed(frames[1:])
                for name, marks in STAGES
                if any(mark in frame for mark in marks)
            ),
            "no Python frame: uvloop's socket work, and waiting",
        )
        split[stage] += int(count)
    return split, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", choices=["tensor", "jpeg"], default="tensor")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="profile-"))
    try:
        project = bake_default(workdir)
        import bench  # the baked project's scripts/bench.py: its request builders
        import benchlib as lib
        from ai_service.settings import Settings

        os.chdir(project)
        build = bench.v2_binary if args.request == "tensor" else bench.classify_jpeg
        path, body, headers = build(Settings().model_name)
        with lib.service({"WORKERS": "1"}, workdir / "service.log") as (port, pid):
            target = lib.Target("127.0.0.1", port)
            request = target.request(path, body, headers)
            lib.run(lib.one_reply(target, request, "the first request"))

            async def window() -> tuple[float, dict[str, float]]:
                async def read_cpu() -> dict[str, float]:
                    await asyncio.sleep(1.0)  # after the connections' first replies
                    before = thread_cpu(pid)
                    await asyncio.sleep(args.seconds)
                    after = thread_cpu(pid)
                    return {tid: after[tid] - before.get(tid, 0.0) for tid in after}

                load, cpu = await asyncio.gather(
                    lib.closed_loop(target, [request], args.connections, args.seconds + 2),
                    read_cpu(),
                )
                return load.ok_per_s, cpu

            rate, cpu = lib.run(window())
            names = thread_names(pid)  # after the load: the pools have started their threads
            raw = workdir / "py-spy.txt"
            record = ["record", "-p", str(pid), "-r", "200", "-d", str(round(args.seconds))]
            spy = subprocess.Popen(
                [str(PY_SPY), *record, "--threads", "--idle", "-f", "raw", "-o", str(raw)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            sampled = lib.run(
                lib.closed_loop(target, [request], args.connections, args.seconds)
            ).ok_per_s
            spy.wait()
        print(f"\n{args.request}, {args.connections} connections, WORKERS=1: {rate:,.0f} req/s")
        print("| thread | cores busy | CPU ms per request |\n|---|---:|---:|")
        for tid, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
            if seconds > 0.01:
                busy = seconds / args.seconds
                name = names.get(tid, f"{tid} (native: onnxruntime's pool)")
                print(f"| {name} | {busy:.2f} | {1000 * busy / rate:.3f} |")
        loop_ms = 1000 * cpu.get(next(t for t, n in names.items() if n == "MainThread"), 0)
        loop_ms /= args.seconds * rate
        split, total = stage_split(raw)
        print(f"\nevent loop, sampled at {sampled:,.0f} req/s ({total} samples)")
        print("| stage | share of samples |\n|---|---:|")
        for stage, count in split.most_common():
            print(f"| {stage} | {100 * count / total:.1f}% |")
        print(f"event loop CPU per request (unsampled window): {loop_ms:.3f} ms")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
