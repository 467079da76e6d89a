"""Benchmark continuous batching against one-at-a-time serving: same model, same run.

    python scripts/bench.py                              # both modes, 1, 8 and 32 streams
    python scripts/bench.py --levels 1,4,16 --max-tokens 32
    python scripts/bench.py --url http://127.0.0.1:8000  # a running server, as configured
    python scripts/bench.py --options                    # + the cost of sampling options

1. raw: the model alone in this process (``Model.prefill`` then greedy
   ``Model.decode`` steps, no HTTP): generated tokens/s at batch 1 and at the
   largest level, the ceiling the engine works against;
2. served: the service started twice at once, with MAX_RUNNING_SEQUENCES=32
   (continuous batching) and =1 (one sequence at a time), levels interleaved so
   load on the machine drifts alike for both. Closed-loop streaming clients on
   the completions API, greedy, completions of ``--max-tokens``/2 to
   ``--max-tokens`` tokens, streams starting 25 ms apart: aggregate generated
   tokens/s (the usage the service reports), time to first token (TTFT:
   request sent -> first text chunk) and inter-token latency (ITL: gaps
   between text chunks), p50 and p99.

3. with ``--options``: on the continuous-batching service at the top level, the
   same load with plain greedy requests, logprobs (top 5), n=4 (a quarter of
   the streams, so the same number of sequences run), penalties plus
   logit_bias, and a JSON schema (constrained decoding), interleaved over two
   rounds: generated tokens/s and ITL of each beside plain.
4. with ``--prefix``: prompts that share a system prompt of ``--prefix-bytes``
   (1,000) before a short question, 8 tokens each, on two services started at
   once, with prefix caching (the default) and without (PREFIX_CACHE_MB=0), at
   1 and 8 streams: TTFT p50 and p99 of each, after checking that both answer
   the same questions with the same text.

The model runs with INTRA_OP_THREADS=1 (``--threads``): on a small machine the
engine, the event loop and this client share the cores. It prints a table and
writes ``llm.json`` and ``llm.png`` to ``--out``. The load generator:
``scripts/benchlib.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from contextlib import ExitStack
from typing import Any

import numpy as np

import benchlib as lib
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.settings import Settings

JSON = {"Content-Type": "application/json"}
# the two services of the main comparison, and of --prefix: their settings beside the common ones
MODES = {
    "continuous batching": {"MAX_RUNNING_SEQUENCES": "32"},
    "one at a time": {"MAX_RUNNING_SEQUENCES": "1"},
}
PREFIX_MODES: dict[str, dict[str, str]] = {
    "prefix cache": {},  # the default PREFIX_CACHE_MB
    "no prefix cache": {"PREFIX_CACHE_MB": "0"},
}


def prompt(index: int) -> str:
    """Prompts of 10 to 45 bytes, so batches hold ragged sequences."""
    return f"Story {index}: " + "once upon a time " * (index % 3)


# --options: what each variant adds to the plain request, and its streams per sequence
POINT = {
    "type": "object",
    "properties": {
        "x": {"type": "integer", "minimum": -1000, "maximum": 1000},
        "label": {"type": "string", "maxLength": 64},
    },
    "required": ["x", "label"],
    "additionalProperties": False,
}
OPTIONS: dict[str, tuple[dict[str, Any], int]] = {
    "plain": ({}, 1),
    "logprobs=5": ({"logprobs": 5}, 1),
    "n=4": ({"n": 4}, 4),
    "penalties + logit_bias": (
        {"presence_penalty": 0.5, "frequency_penalty": 0.5, "logit_bias": {"32": 2.0}},
        1,
    ),
    "json_schema": (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": POINT}}},
        1,
    ),
}


def system_prompt(size: int) -> str:
    """A fixed text of ``size`` bytes, the shared start of every --prefix prompt."""
    sentence = "You are the assistant of a shop that sells tea; answer briefly and politely. "
    return (sentence * (size // len(sentence) + 1))[:size]


def prefix_request(target: lib.Target, model: str, system: str, index: int) -> bytes:
    body = {
        "model": model,
        "prompt": f"{system}\nQuestion {index}:",
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return target.request("/v1/completions", json.dumps(body).encode(), JSON)


def completion_request(
    target: lib.Target, model: str, index: int, max_tokens: int, extra: dict[str, Any] | None = None
) -> bytes:
    """Lengths spread over [max_tokens / 2, max_tokens]: sequences finish at different steps."""
    body = {
        "model": model,
        "prompt": prompt(index),
        "max_tokens": max_tokens // 2 + (index * 37) % (max_tokens // 2 + 1),
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra or {}),
    }
    return target.request("/v1/completions", json.dumps(body).encode(), JSON)


def stream_figures(reply: lib.Reply) -> tuple[int, list[float]]:
    """Completion tokens (from usage) and the arrival time of each chunk carrying text."""
    tokens, times = 0, []
    for (arrived, _), piece in zip(reply.chunks, reply.pieces, strict=True):
        for line in piece.decode().splitlines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            tokens += (event.get("usage") or {}).get("completion_tokens", 0)
            if any(choice.get("text") for choice in event.get("choices", [])):
                times.append(arrived)
    return tokens, times


def summarise(mode: str, load: lib.Load) -> dict[str, Any]:
    tokens, ttft, itl = 0, [], []
    for reply in load.ok:
        count, times = stream_figures(reply)
        tokens += count
        if times:
            ttft.append((times[0] - reply.sent) * 1000)
            itl += [(b - a) * 1000 for a, b in itertools.pairwise(times)]
    return {
        **lib.summary(mode, load),
        "requests": len(load.ok),
        "errors": len(load.replies) - len(load.ok),
        "tokens_per_s": tokens / load.seconds,
        "ttft_p50_ms": lib.percentile(ttft, 50),
        "ttft_p99_ms": lib.percentile(ttft, 99),
        "itl_p50_ms": lib.percentile(itl, 50),
        "itl_p99_ms": lib.percentile(itl, 99),
    }


def cells(row: dict[str, Any]) -> list[object]:
    return [
        row["mode"],
        row["concurrency"],
        row["requests"],
        row["errors"],
        lib.fmt(row["tokens_per_s"], 0),
        lib.fmt(row["ttft_p50_ms"], 0),
        lib.fmt(row["ttft_p99_ms"], 0),
        lib.fmt(row["itl_p50_ms"]),
        lib.fmt(row["itl_p99_ms"]),
    ]


COLUMNS = ["mode", "streams", "requests", "errors", "tokens/s", "TTFT p50 ms", "TTFT p99 ms"]
COLUMNS += ["ITL p50 ms", "ITL p99 ms"]


def measure_raw(settings: Settings, batches: list[int], steps: int) -> dict[int, float]:
    """Greedy tokens/s of ``Model.decode`` alone at each batch size, after one prefill."""
    model = Model(settings)
    model.load()
    rates = {}
    for size in batches:
        prompts = [model.tokenizer.encode(prompt(i)) for i in range(size)]
        logits, caches = model.prefill(prompts)
        started = time.perf_counter()
        for _ in range(steps):
            logits, caches = model.decode([int(t) for t in np.argmax(logits, -1)], caches)
        rates[size] = size * steps / (time.perf_counter() - started)
    return rates


async def served_model(target: lib.Target) -> str:
    reply = await lib.one_reply(target, target.request("/v1/models", method="GET"), "models")
    return json.loads(reply.body)["data"][0]["id"]


def start_services(
    stack: ExitStack, modes: dict[str, dict[str, str]], args: argparse.Namespace
) -> dict[str, lib.Target]:
    """One service per mode, all at once, each with its settings beside the common ones."""
    targets = {}
    for mode, settings in modes.items():
        config = {
            "MAX_WAITING_SEQUENCES": "1024",
            "REQUEST_TIMEOUT_S": "3600",
            "LOG_LEVEL": "WARNING",
            "INTRA_OP_THREADS": str(args.threads),
            **settings,
        }
        log = args.out / f"service-{mode.replace(' ', '-')}.log"
        port, _ = stack.enter_context(lib.service(config, log))
        targets[mode] = lib.Target("127.0.0.1", port, args.api_key)
    return targets


async def measure(targets: dict[str, lib.Target], args: argparse.Namespace) -> list[dict]:
    rows, requests = [], {}
    for mode, target in targets.items():
        model = await served_model(target)
        requests[mode] = [completion_request(target, model, i, args.max_tokens) for i in range(64)]
    for streams in args.levels:
        for mode, target in targets.items():
            load = await lib.closed_loop(
                target,
                requests[mode],
                streams,
                args.duration,
                warmup_s=0,
                keep_body=True,
                stagger_s=0.025,
            )
            rows.append(summarise(mode, load))
            print(lib.table(COLUMNS, [cells(rows[-1])]).splitlines()[-1], flush=True)
    return rows


async def measure_options(target: lib.Target, args: argparse.Namespace) -> list[dict]:
    """Each sampling option at the top level beside plain requests, two interleaved rounds."""
    model = await served_model(target)
    top = max(args.levels)
    loads: dict[str, list[lib.Load]] = {name: [] for name in OPTIONS}
    for _ in range(2):
        for name, (extra, per_stream) in OPTIONS.items():
            requests = [
                completion_request(target, model, i, args.max_tokens, extra) for i in range(64)
            ]
            streams = max(1, top // per_stream)
            loads[name].append(
                await lib.closed_loop(
                    target,
                    requests,
                    streams,
                    args.duration,
                    warmup_s=0,
                    keep_body=True,
                    stagger_s=0.025,
                )
            )
    rows = []
    for name, runs in loads.items():
        figures = [summarise(name, load) for load in runs]
        rows.append(
            {
                "option": name,
                "streams": max(1, top // OPTIONS[name][1]),
                "tokens_per_s": [f["tokens_per_s"] for f in figures],
                "itl_p50_ms": [f["itl_p50_ms"] for f in figures],
                "errors": sum(f["errors"] for f in figures),
            }
        )
    return rows


async def measure_prefix(targets: dict[str, lib.Target], args: argparse.Namespace) -> list[dict]:
    """TTFT with and without prefix caching on prompts sharing a system prompt."""
    system, requests, answers = system_prompt(args.prefix_bytes), {}, {}
    for mode, target in targets.items():
        model = await served_model(target)
        requests[mode] = [prefix_request(target, model, system, i) for i in range(64)]
        answers[mode] = []
        for request in requests[mode][:4]:  # the first fills the cache, the others hit it
            reply = await lib.one_reply(target, request, "a --prefix question")
            answers[mode].append(reply.body)
    texts = {mode: [stream_text(a) for a in got] for mode, got in answers.items()}
    if len({tuple(t) for t in texts.values()}) != 1:
        raise SystemExit(f"the services answer the shared-prefix questions differently: {texts}")
    rows = []
    for streams in (1, 8):
        for mode, target in targets.items():
            load = await lib.closed_loop(
                target, requests[mode], streams, args.duration, keep_body=True, stagger_s=0.025
            )
            rows.append(summarise(mode, load))
            print(lib.table(COLUMNS, [cells(rows[-1])]).splitlines()[-1], flush=True)
    return rows


def stream_text(body: bytes) -> str:
    """The text of a streamed completion (its events' choices, in order)."""
    text = []
    for line in body.decode().splitlines():
        if line.startswith("data: {"):
            text += [choice.get("text", "") for choice in json.loads(line[6:])["choices"]]
    return "".join(text)


def main() -> None:
    parser = lib.arguments(__doc__, [1, 8, 32], duration_s=5.0)
    parser.add_argument("--max-tokens", type=int, default=128, help="longest completion")
    parser.add_argument("--threads", type=int, default=1, help="INTRA_OP_THREADS of the servers")
    parser.add_argument(
        "--options", action="store_true", help="also measure the cost of sampling options"
    )
    parser.add_argument(
        "--prefix", action="store_true", help="also measure TTFT with and without prefix caching"
    )
    parser.add_argument("--prefix-bytes", type=int, default=1000, help="the shared system prompt")
    args = parser.parse_args()
    machine = lib.note_machine()
    settings = Settings(intra_op_threads=args.threads)
    if not settings.model_path.exists():
        raise SystemExit(f"{settings.model_path} does not exist: run `make model` first")
    raw = measure_raw(settings, sorted({1, max(args.levels)}), steps=32)
    print(
        "raw model, greedy decode tokens/s by batch size:",
        {size: round(rate) for size, rate in raw.items()},
    )
    with ExitStack() as stack:
        if args.url:
            targets = {"as-is": lib.url_target(args.url, args.api_key)}
        else:
            targets = start_services(stack, MODES, args)
        rows = lib.run(measure(targets, args))
        options = []
        if args.options:
            options = lib.run(measure_options(next(iter(targets.values())), args))
    prefix = []
    if args.prefix and not args.url:
        with ExitStack() as stack:
            prefix = lib.run(measure_prefix(start_services(stack, PREFIX_MODES, args), args))
    rows.sort(key=lambda row: (list(targets).index(row["mode"]), row["concurrency"]))
    print()
    print(lib.table(COLUMNS, [cells(row) for row in rows]))
    by = {(row["mode"], row["concurrency"]): row for row in rows}
    top, low = max(args.levels), min(args.levels)
    batched, single = by.get(("continuous batching", top)), by.get(("one at a time", top))
    if batched and single and single["tokens_per_s"]:
        speedup = batched["tokens_per_s"] / single["tokens_per_s"]
        ttft_ratio = batched["ttft_p50_ms"] / by[(batched["mode"], low)]["ttft_p50_ms"]
        print(
            f"at {top} streams: continuous batching gives {speedup:.1f}x the tokens/s of one "
            f"at a time; TTFT p50 {ttft_ratio:.1f}x its value at {low} stream(s)"
        )
    if prefix:
        print()
        print(f"a shared system prompt of {args.prefix_bytes} bytes before each question:")
        print(lib.table(COLUMNS, [cells(row) for row in prefix]))
        for streams in (1, 8):
            ttft = {r["mode"]: r["ttft_p50_ms"] for r in prefix if r["concurrency"] == streams}
            ratio = ttft["no prefix cache"] / ttft["prefix cache"]
            print(f"at {streams} stream(s): TTFT p50 {ratio:.1f}x lower with prefix caching")
    if options:
        plain = np.mean(options[0]["tokens_per_s"])
        print()
        print(
            lib.table(
                ["option", "streams", "errors", "tokens/s (2 rounds)", "vs plain", "ITL p50 ms"],
                [
                    [
                        row["option"],
                        row["streams"],
                        row["errors"],
                        " / ".join(lib.fmt(v, 0) for v in row["tokens_per_s"]),
                        f"{np.mean(row['tokens_per_s']) / plain:.2f}x",
                        " / ".join(lib.fmt(v) for v in row["itl_p50_ms"]),
                    ]
                    for row in options
                ],
            )
        )
    lib.write_json(
        args.out / "llm.json",
        {
            "raw_tokens_per_s": raw,
            "served": rows,
            "options": options,
            "prefix": prefix,
            "machine": machine,
        },
    )
    lib.plot(
        args.out / "llm.png",
        f"POST /v1/completions (streamed); {machine['cpus']} CPUs",
        rows,
        {"generated tokens/s": "tokens_per_s", "TTFT p50 (ms)": "ttft_p50_ms"}
        | {"ITL p50 (ms)": "itl_p50_ms"},
        {f"raw decode, batch {size}": rate for size, rate in raw.items()},
    )


if __name__ == "__main__":
    main()
