"""Benchmark ``POST /v1/embeddings``: items/s and latency at rising concurrency.

    python scripts/bench.py                      # starts the service itself, batching on and off
    python scripts/bench.py --url http://127.0.0.1:8000 --levels 1,8,32
    python scripts/bench.py --inputs-per-request 16
    python scripts/bench.py --input tokens      # the same sentences as token arrays

1. raw: the model alone in this process (``Model.tokenize`` and
   ``Model.predict``, no HTTP): items/s at batch sizes 1 to 32 of the same
   sentences, and the mean tokens per input;
2. body-only: req/s of the baseline ``scripts/benchlib.py`` serves (the same
   uvicorn with the service's options, an app that only reads the body);
3. served: closed-loop clients at each level, each request embedding
   ``--inputs-per-request`` distinct sentences of 8 to 40 words (a fixed seed
   makes runs comparable), base64 vectors (what the openai client asks for):
   requests/s, items/s, p50, p90 and p99, errors; the service started twice,
   with dynamic batching (MAX_BATCH_SIZE=32, MAX_BATCH_WAIT_MS=2) and without.
   ``--input tokens`` sends each sentence as the token ids the model's own
   tokenizer gives it (as a client that tokenises does), ``text`` as text.

It prints a table and writes ``bench.json`` and ``bench.png`` to ``--out``.
The load generator: ``scripts/benchlib.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import benchlib as lib
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.warmup import warmup_batch_sizes
from {{ cookiecutter.package_name }}.settings import Settings

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
COLUMNS = ["mode", "conc", "req/s", "items/s", "p50 ms", "p90 ms", "p99 ms", "errors", "cpu"]


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(VOCABULARY, k=rng.randint(8, 40))) for _ in range(count)]


def embedding_requests(
    target: lib.Target, model: str, per_request: int, inputs: list[Any]
) -> list[bytes]:
    """Requests of ``per_request`` distinct inputs each (texts or token arrays), encoded once."""
    bodies = [
        {"model": model, "input": inputs[i : i + per_request], "encoding_format": "base64"}
        for i in range(0, len(inputs), per_request)
    ]
    headers = {"Content-Type": "application/json"}
    return [target.request("/v1/embeddings", json.dumps(body).encode(), headers) for body in bodies]


def request_inputs(settings: Settings, kind: str, per_request: int) -> list[Any]:
    """256 requests' worth of sentences, as text or as the model tokenizer's ids."""
    texts = sentences(256 * per_request)
    if kind == "text":
        return texts
    model = Model(settings)
    model.load()
    return [tokens.ids for tokens in model.tokenize(texts)]


def measure_raw(settings: Settings, seconds: float) -> dict[str, Any]:
    """Items/s of ``Model.predict`` alone on tokenized sentences, per batch size."""
    model = Model(settings)
    model.load()
    ids = [tokens.ids for tokens in model.tokenize(sentences(64))]
    rates = {}
    for size in warmup_batch_sizes(32):
        batch, runs = ids[:size], []
        model.predict(batch)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(runs) < 3:
            started = time.perf_counter()
            model.predict(batch)
            runs.append(time.perf_counter() - started)
        rates[size] = size * len(runs) / sum(runs)
    mean_tokens = sum(map(len, ids)) / len(ids)
    return {"items_per_s": rates, "dimensions": model.dimensions, "mean_tokens": mean_tokens}


async def sweep(
    mode: str, target: lib.Target, requests: list[bytes], args: argparse.Namespace, pid: int | None
) -> list[dict[str, Any]]:
    await lib.one_reply(target, requests[0], f"{mode}: the first request")
    rows = []
    for concurrency in args.levels:
        load = await lib.closed_loop(target, requests, concurrency, args.duration, server_pid=pid)
        items_per_s = load.ok_per_s * args.inputs_per_request
        row = {**lib.summary(mode, load), "items_per_s": items_per_s}
        rows.append({**row, "p90_ms": load.latency_ms(90)})
        print(lib.table(COLUMNS, [cells(rows[-1])]).splitlines()[-1], flush=True)
    return rows


def cells(row: dict[str, Any]) -> list[object]:
    errors = {code: n for code, n in row["statuses"].items() if code != 200}
    figures = ("req_per_s", "items_per_s", "p50_ms", "p90_ms", "p99_ms")
    return [
        row["mode"],
        row["concurrency"],
        *(lib.fmt(row[key]) for key in figures),
        errors or 0,
        lib.fmt(row["server_cpu"], 2),
    ]


async def measure(
    args: argparse.Namespace, settings: Settings, inputs: list[Any]
) -> list[dict[str, Any]]:
    rows = []
    name, per_request = settings.model_name, args.inputs_per_request
    with lib.service({}, args.out / "body-only.log", body_only=True) as (port, pid):
        target = lib.Target("127.0.0.1", port)
        requests = embedding_requests(target, name, per_request, inputs)
        rows += await sweep("body-only", target, requests, args, pid)
    if args.url:
        target = lib.url_target(args.url, args.api_key)
        requests = embedding_requests(target, name, per_request, inputs)
        return rows + await sweep("as-is", target, requests, args, None)
    for mode, config in MODES.items():
        queue = {"MAX_QUEUE_SIZE": str(max(256, 4 * max(args.levels))), "LOG_LEVEL": "WARNING"}
        log = args.out / f"service-{config['MAX_BATCH_SIZE']}.log"
        with lib.service({**config, **queue}, log) as (port, pid):
            target = lib.Target("127.0.0.1", port, args.api_key)
            requests = embedding_requests(target, name, per_request, inputs)
            rows += await sweep(mode, target, requests, args, pid)
    return rows


def main() -> None:
    parser = lib.arguments(__doc__, [1, 4, 16, 64], duration_s=5.0)
    parser.add_argument("--inputs-per-request", type=int, default=1)
    parser.add_argument(
        "--input", choices=["text", "tokens"], default="text", help="what each input is sent as"
    )
    parser.add_argument("--raw-seconds", type=float, default=0.5, help="per raw batch size")
    args = parser.parse_args()
    machine = lib.note_machine()
    settings = Settings()
    raw = measure_raw(settings, args.raw_seconds)
    print(
        f"raw model ({raw['dimensions']} dimensions, {raw['mean_tokens']:.1f} tokens per "
        f"input), items/s by batch size: { ({b: round(r) for b, r in raw['items_per_s'].items()}) }"
    )
    inputs = request_inputs(settings, args.input, args.inputs_per_request)
    rows = lib.run(measure(args, settings, inputs))
    print()
    print(lib.table(COLUMNS, [cells(row) for row in rows]))
    lib.write_json(
        args.out / "bench.json",
        {"raw": raw, "served": rows, "machine": machine, "input": args.input},
    )
    best = max(raw["items_per_s"].values())
    lib.plot(
        args.out / "bench.png",
        f"POST /v1/embeddings, {args.inputs_per_request} {args.input} input(s) per request; "
        f"{machine['cpus']} CPUs",
        [row for row in rows if row["mode"] != "body-only"],
        {"items/s": "items_per_s", "p99 latency (ms)": "p99_ms"},
        {f"raw model {best:.0f} items/s": best},
    )


if __name__ == "__main__":
    main()
