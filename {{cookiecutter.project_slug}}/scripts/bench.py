"""Benchmark the service against the limit of the machine it runs on.

    python scripts/bench.py                          # starts the service itself (make bench)
    python scripts/bench.py --url http://host:8000   # a running service, as it is configured

One run measures, on this machine:

1. raw: the model alone, in this process, no HTTP: items/s at every warmup
   batch size (the best one counts) and the single-item latency;
2. body-only: req/s of the baseline ``scripts/benchlib.py`` serves (the same
   uvicorn with the service's options, an app that only reads the body the
   inference requests carry): what this server can do with no model at all;
3. served: req/s, p50 and p99 of the inference route at each concurrency, with
   batching on (``MAX_BATCH_SIZE=32``) and off (``=1``), the same service
   restarted with other settings;
4. overload: 10x the target concurrency, clients retrying at once: the status
   codes seen (200, 503 and 504 only), p99 of the admitted requests, and how
   soon the service is ready again.

The limit a request path can reach is the serial sum of the two costs,
``1 / (1/raw + 1/body_only)``: per request, read the body and run the model.
It prints the table, and writes ``bench.json`` and ``bench.png`` to ``--out``.
The request is built from the model's contract (``Model.input_name``,
``input_shape``, ``input_dtype``, ``output_name``). With ``--url`` the raw model
and the baseline still run here: run the benchmark on the service's machine.
The load generator and why it is hand-written: ``scripts/benchlib.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np

import benchlib as lib
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.warmup import warmup_batch_sizes
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.vision.v2 import NUMPY_TO_V2

CONFIGS: dict[str, dict[str, str]] = {
    "dynamic": {"MAX_BATCH_SIZE": "32", "MAX_BATCH_WAIT_MS": "2"},
    "none": {"MAX_BATCH_SIZE": "1", "MAX_BATCH_WAIT_MS": "0"},
}
TARGET_SHARE = 0.70  # of the serial-sum limit, at the target concurrency
Request = tuple[str, bytes, dict[str, str]]


def v2_binary(model_name: str) -> Request:
    """One input tensor with the binary tensor extension (what tritonclient sends)."""
    tensor = np.random.default_rng(0).standard_normal((1, *Model.input_shape))
    raw = tensor.astype(Model.input_dtype).tobytes()
    header = {
        "inputs": [
            {
                "name": Model.input_name,
                "datatype": NUMPY_TO_V2[np.dtype(Model.input_dtype)],
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


def classify_jpeg(model_name: str) -> Request:
    """A 224x224 photo-like JPEG sent as the raw body of /v1/classify."""
    from PIL import Image

    y, x = np.mgrid[0:224, 0:224]
    noise = np.random.default_rng(0).integers(0, 24, (224, 224, 3))
    pixels = (np.stack([x, y, (x + y) // 2], axis=-1) + noise).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return "/v1/classify?k=5", buffer.getvalue(), {"Content-Type": "image/jpeg"}


REQUESTS = {"v2-binary": v2_binary, "classify-jpeg": classify_jpeg}


def measure_raw(settings: Settings, max_batch_size: int, seconds: float) -> dict[str, Any]:
    """The model's own speed in this process: predict() on ready batches, no HTTP."""
    model = Model(settings)
    model.load()
    items_per_s: dict[int, float] = {}
    single: list[float] = []
    for size in warmup_batch_sizes(max_batch_size):
        batch = model.example_batch(size)
        runs: list[float] = []
        deadline = time.perf_counter() + seconds
        for _ in range(3):
            model.predict(batch)
        while time.perf_counter() < deadline or len(runs) < 5:
            started = time.perf_counter()
            model.predict(batch)
            runs.append(time.perf_counter() - started)
        items_per_s[size] = size * len(runs) / sum(runs)
        single = single or runs
    best = max(items_per_s, key=items_per_s.__getitem__)
    return {
        "items_per_s": items_per_s,
        "best_batch": best,
        "best_items_per_s": items_per_s[best],
        "single_item_p50_ms": statistics.median(single) * 1000,
    }


def batch_totals(target: lib.Target) -> tuple[float, float] | None:
    """Items and model calls so far, from the service's /metrics (None without metrics)."""
    try:
        with urllib.request.urlopen(f"{target.url}/metrics", timeout=5) as response:
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


COLUMNS = ["mode", "conc", "req/s", "p50 ms", "p99 ms", "batch", "cpu", "statuses"]


async def sweep(
    mode: str, target: lib.Target, request: bytes, args: argparse.Namespace, pid: int | None
) -> list[dict[str, Any]]:
    await lib.one_reply(target, request, f"{mode}: the first request")
    rows = []
    for concurrency in args.levels:
        before = await asyncio.to_thread(batch_totals, target)
        load = await lib.closed_loop(
            target, [request], concurrency, args.duration, warmup_s=args.warmup, server_pid=pid
        )
        after = await asyncio.to_thread(batch_totals, target)
        calls = after[1] - before[1] if before and after else 0
        batch = (after[0] - before[0]) / calls if before and after and calls else None
        rows.append({**lib.summary(mode, load), "mean_batch": batch})
        print(lib.table(COLUMNS, [cells(rows[-1])]).splitlines()[-1], flush=True)
    return rows


def cells(row: dict[str, Any]) -> list[object]:
    figures = [lib.fmt(row[key], 2) for key in ("req_per_s", "p50_ms", "p99_ms")]
    return [
        row["mode"],
        row["concurrency"],
        *figures,
        lib.fmt(row["mean_batch"]),
        lib.fmt(row["server_cpu"], 2),
        row["statuses"],
    ]


async def overload(
    target: lib.Target, request: bytes, args: argparse.Namespace, pid: int | None
) -> dict[str, Any]:
    connections = args.overload_factor * args.target_concurrency
    print(f"overload: {connections} connections ...", flush=True)
    load = await lib.closed_loop(target, [request], connections, args.duration, server_pid=pid)
    ready_s = await asyncio.to_thread(lib.wait_ready, f"{target.url}/health/ready", 30, None)
    started = time.perf_counter()
    await lib.one_reply(target, request, "the first request after the overload")
    return {
        "connections": connections,
        "statuses": load.statuses,
        "ok_p99_ms": load.latency_ms(99),
        "ready_after_ms": ready_s * 1000,
        "next_request_ms": (time.perf_counter() - started) * 1000,
    }


async def measure(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    path, body, headers = REQUESTS[args.request](settings.model_name)
    data: dict[str, Any] = {"request": f"{args.request}: POST {path}, {len(body)} bytes"}
    with lib.service({}, args.out / "body-only.log", body_only=True) as (port, pid):
        target = lib.Target("127.0.0.1", port)
        rows = await sweep("body-only", target, target.request("/", body, headers), args, pid)
    if args.url:
        target = lib.url_target(args.url, args.api_key)
        rows += await sweep("as-is", target, target.request(path, body, headers), args, None)
    for index, mode in enumerate([] if args.url else args.configs.split(",")):
        with lib.service(CONFIGS[mode], args.out / f"service-{mode}.log") as (port, pid):
            target = lib.Target("127.0.0.1", port, args.api_key)
            request = target.request(path, body, headers)
            rows += await sweep(mode, target, request, args, pid)
            if index == 0 and not args.no_overload:
                data["overload"] = await overload(target, request, args, pid)
    return {**data, "served": rows}


def report(data: dict[str, Any], args: argparse.Namespace) -> None:
    raw, rows = data["raw"], data["served"]
    body_peak = max(row["req_per_s"] for row in rows if row["mode"] == "body-only")
    limit = data["serial_sum_limit_req_per_s"] = 1 / (1 / raw["best_items_per_s"] + 1 / body_peak)
    sizes = ", ".join(f"{b}: {v:.0f}" for b, v in raw["items_per_s"].items())
    print(f"\nrequest: {data['request']}")
    print(
        f"raw model: best {raw['best_items_per_s']:.0f} items/s at batch {raw['best_batch']}; "
        f"single item p50 {raw['single_item_p50_ms']:.3f} ms ({sizes})"
    )
    print(f"body-only: best {body_peak:.0f} req/s; serial-sum limit {limit:.0f} req/s")
    print("batch: mean items per model call; cpu: cores the server process kept busy")
    print(lib.table(COLUMNS, [cells(row) for row in rows]))
    served = [row for row in rows if row["mode"] != "body-only"]
    at = {row["concurrency"]: row for row in served if row["mode"] == served[0]["mode"]}
    verdicts = data["verdicts"] = {}
    if row := at.get(args.target_concurrency):
        verdicts["share_of_limit_at_target"] = share = row["req_per_s"] / limit
        print(
            f"{row['mode']} at {args.target_concurrency}: {share * 100:.0f}% of the limit "
            f"(target >= {TARGET_SHARE * 100:.0f}%); load generator "
            f"{row['client_ms_per_request']:.3f} ms of CPU per request"
        )
    if row := at.get(1):
        verdicts["p50_at_1_over_raw_ms"] = extra = row["p50_ms"] - raw["single_item_p50_ms"]
        print(f"{row['mode']} at 1: p50 = raw single item + {extra:.2f} ms (target <= 1 ms)")
    if overload := data.get("overload"):
        others = {k: v for k, v in overload["statuses"].items() if k not in (200, 503, 504)}
        verdicts["overload_only_200_503_504"] = not others
        print(
            f"overload, {overload['connections']} connections: {overload['statuses']}; "
            f"admitted p99 {overload['ok_p99_ms']:.0f} ms; ready "
            f"{overload['ready_after_ms']:.0f} ms after: "
            f"{'only 200/503/504' if not others else f'UNEXPECTED {others}'}"
        )


def main() -> None:
    parser = lib.arguments(__doc__, [1, 2, 4, 8, 16, 32, 64, 128], duration_s=3.0)
    parser.add_argument("--request", choices=sorted(REQUESTS), default="v2-binary")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each level")
    parser.add_argument("--raw-seconds", type=float, default=0.5, help="per raw batch size")
    parser.add_argument("--target-concurrency", type=int, default=32)
    parser.add_argument("--overload-factor", type=int, default=10)
    parser.add_argument("--no-overload", action="store_true")
    parser.add_argument("--configs", default="dynamic,none", help=f"of {', '.join(CONFIGS)}")
    args = parser.parse_args()
    machine = lib.note_machine()
    settings = Settings()
    batch = max(int(CONFIGS[name]["MAX_BATCH_SIZE"]) for name in args.configs.split(","))
    print(f"raw model ({Model.platform}, in this process) ...", flush=True)
    raw = measure_raw(settings, batch, args.raw_seconds)
    data = {**lib.run(measure(args, settings)), "raw": raw, "machine": machine}
    report(data, args)
    lib.write_json(args.out / "bench.json", data)
    limit, best = data["serial_sum_limit_req_per_s"], raw["best_items_per_s"]
    lib.plot(
        args.out / "bench.png",
        f"{data['request']}; {machine['cpus']} CPUs, load {machine['load_average_before']}",
        data["served"],
        {"requests/s (200 only)": "req_per_s", "p99 latency (ms)": "p99_ms"},
        {f"limit {limit:.0f} req/s": limit, f"raw model {best:.0f} items/s": best},
    )


if __name__ == "__main__":
    main()
