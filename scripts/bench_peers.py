"""The default vision service against LitServe: same model and machine, one run (make bench-peers).

    python scripts/bench_peers.py [--duration 10] [--rounds 2] [--levels 1,32] [--scenarios ...]

Bakes the default service, builds its demo model, and serves it twice: as the
service (``python -m ai_service``, the fresh bake's settings plus the scenario's)
and as LitServe 0.2.19 (``scripts/litserve_peer.py``: the service's own ``Model``,
so the same ONNX file, pre-processing and onnxruntime threads). Each is fed its
natural request: a JPEG upload as the raw body of ``/v1/classify`` vs a base64 JSON
field, and a float32 tensor as a v2 binary request vs base64 JSON. The load
generator is the service's own (``scripts/benchlib.py``: one asyncio process, closed
loop, 0.04 ms of client CPU per request). Rounds interleave the two servers (their
order alternates) so a noisy machine hurts both alike; the table gives each
figure's range over the rounds. Before measuring, both must give the same top-5
labels for the JPEG and the same logits for the tensor: they do the same work.

Scenarios: ``defaults`` (the service as baked; LitServe max_batch_size 16, batch
timeout 2 ms), ``workers1`` (the service in one process, as before WORKERS was
derived from the CPUs), ``workers2`` (2 worker processes on both sides), ``nobatch``
(one request per model call on both sides).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from baked_default import TEMPLATE, bake_default
from peerlib import in_workdir, span

PEER = TEMPLATE / "scripts" / "litserve_peer.py"

# scenario: (the service's extra settings, litserve_peer.py's options)
SCENARIOS: dict[str, tuple[dict[str, str], list[str]]] = {
    "defaults": ({}, ["--max-batch-size", "16", "--batch-timeout", "0.002"]),
    "workers1": ({"WORKERS": "1"}, ["--max-batch-size", "16", "--batch-timeout", "0.002"]),
    "workers2": (
        {"WORKERS": "2"},
        ["--max-batch-size", "16", "--batch-timeout", "0.002", "--workers", "2"],
    ),
    "nobatch": ({"MAX_BATCH_SIZE": "1"}, ["--max-batch-size", "1"]),
}


def requests(bench: Any, model_name: str) -> dict[str, dict[str, tuple]]:
    """Per request kind, per server: (path, body, headers); the bodies carry the same data."""
    jpeg_path, jpeg, jpeg_headers = bench.classify_jpeg(model_name)
    v2_path, v2_body, v2_headers = bench.v2_binary(model_name)
    head_length = int(v2_headers["Inference-Header-Content-Length"])
    tensor = v2_body[head_length:]  # the raw float32 row after the v2 JSON header

    def litserve(field: str, data: bytes) -> tuple[str, bytes, dict[str, str]]:
        body = json.dumps({field: base64.b64encode(data).decode()}).encode()
        return "/predict", body, {"Content-Type": "application/json"}

    return {
        "jpeg": {"service": (jpeg_path, jpeg, jpeg_headers), "litserve": litserve("image", jpeg)},
        "tensor": {
            "service": (v2_path, v2_body, v2_headers),
            "litserve": litserve("tensor", tensor),
        },
    }


def answer(kind: str, server: str, body: bytes) -> Any:
    """What both must agree on: the top-5 labels, or the logits."""
    reply = json.loads(body)
    if kind == "jpeg":
        return [p["label"] for p in reply["predictions"]]
    if server == "litserve":
        return np.asarray(reply["logits"], dtype=np.float32)
    return np.asarray(reply["outputs"][0]["data"], dtype=np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--levels", default="1,32", help="connections, comma-separated")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"of {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--out", type=Path, default=TEMPLATE / "bench-results")
    parser.add_argument("--keep", action="store_true", help="keep the baked project")
    args = parser.parse_args()
    return in_workdir("bench-peers-", args.keep, lambda workdir: run(args, workdir))


def run(args: argparse.Namespace, workdir: Path) -> int:
    project = bake_default(workdir)
    import bench  # the baked project's scripts/bench.py: its request builders
    import benchlib as lib
    from ai_service.settings import Settings

    os.chdir(project)
    kinds = requests(bench, Settings().model_name)
    levels = [int(part) for part in args.levels.split(",")]
    machine = lib.note_machine()
    logs = args.out / "peers"
    results: dict[tuple[str, str, int, str], list[tuple[float, float]]] = {}
    answers: dict[tuple[str, str], Any] = {}

    async def measure(server: str, scenario: str, port: int, pid: int) -> None:
        target = lib.Target("127.0.0.1", port)
        for kind, per_server in kinds.items():
            request = target.request(*per_server[server])
            first = await lib.one_reply(target, request, f"{server} {scenario} {kind}")
            answers[(server, kind)] = answer(kind, server, first.body)
            for level in levels:
                load = await lib.closed_loop(
                    target, [request], level, args.duration, server_pid=pid
                )
                if set(load.statuses) != {200}:
                    print(f"warning: {server} {scenario} {kind} at {level}: {load.statuses}")
                row = (load.ok_per_s, load.latency_ms(99))
                results.setdefault((scenario, kind, level, server), []).append(row)
                figures = f"{row[0]:7.0f} req/s, p99 {row[1]:6.1f} ms"
                print(f"{scenario:9} {server:8} {kind:6} {level:3}: {figures}", flush=True)

    for round_index in range(args.rounds):
        for scenario in args.scenarios.split(","):
            extra, peer_options = SCENARIOS[scenario]
            servers = ["service", "litserve"][:: 1 if round_index % 2 == 0 else -1]
            for server in servers:
                log = logs / f"{scenario}-{server}-{round_index}.log"
                if server == "service":
                    spawned = lib.service(extra, log)
                else:
                    command = [sys.executable, str(PEER), *peer_options]
                    spawned = lib.spawned(command, {}, log, "/health")
                with spawned as (port, pid):
                    lib.run(measure(server, scenario, port, pid))
            for kind in kinds:
                ours, theirs = answers[("service", kind)], answers[("litserve", kind)]
                same = ours == theirs if kind == "jpeg" else np.allclose(ours, theirs, atol=1e-4)
                if not same:
                    raise SystemExit(
                        f"{scenario} {kind}: the two servers disagree: {ours} vs {theirs}"
                    )
    report(results, machine, args.out)
    return 0


def report(
    results: dict[tuple[str, str, int, str], list[tuple[float, float]]],
    machine: dict[str, Any],
    out: Path,
) -> None:
    columns = [
        "scenario",
        "request",
        "conc",
        "service req/s",
        "LitServe req/s",
        "ratio",
        "service p99 ms",
        "LitServe p99 ms",
    ]
    rows, data = [], []
    for (scenario, kind, level, server), figures in results.items():
        if server != "service":
            continue
        peer = results[(scenario, kind, level, "litserve")]
        ratios = [ours / theirs for (ours, _), (theirs, _) in zip(figures, peer, strict=True)]
        rows.append(
            [
                scenario,
                kind,
                level,
                span([f[0] for f in figures]),
                span([f[0] for f in peer]),
                span(ratios, 2) + "x",
                span([f[1] for f in figures], 1),
                span([f[1] for f in peer], 1),
            ]
        )
        data.append(
            {
                "scenario": scenario,
                "request": kind,
                "concurrency": level,
                "service": figures,
                "litserve": peer,
            }
        )
    print(f"\n{machine['cpus']} CPUs; each figure's range over the rounds")
    align = ["---", "---", *["---:"] * (len(columns) - 2)]
    for line in [columns, align, *rows]:
        print("| " + " | ".join(str(cell) for cell in line) + " |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps({"machine": machine, "rows": data}, indent=2) + "\n")
    print(f"wrote {out / 'peers.json'}")


if __name__ == "__main__":
    sys.exit(main())
