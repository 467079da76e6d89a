"""Benchmark text to speech: throughput and latency against concurrency, batching on and off.

    python scripts/bench.py                          # starts the service itself (make bench)
    python scripts/bench.py --url http://host:8000   # a running service, as it is configured

    python scripts/bench.py --format mp3 opus wav    # the response formats to sweep

1. raw: the model alone in this process (``Model.prepare`` and
   ``Model.predict`` on the chunks the service would cut, no HTTP): audio
   seconds made per second at each warmup batch size; and each response
   format's encoder alone (``tts/encoders.py``, chunk by chunk, one thread):
   milliseconds of CPU per second of audio;
2. body-only: req/s of the baseline ``scripts/benchlib.py`` serves (the same
   uvicorn with the service's options, an app that only reads the body);
3. served: ``POST /v1/audio/speech`` (a few sentences, the model's voices in
   turn, in each ``--format``: default mp3, what OpenAI's clients get) at each
   concurrency, with batching on (``MAX_BATCH_SIZE=32``) and off (``=1``):
   requests/s, audio seconds/s, p50 and p99 of the whole response and of the
   time to the first audio byte (what a listener waits for). Audio seconds are
   the PCM length of the same requests, asked for once.

Replies come in waves at high concurrency, so each level's window holds at
least three times the slowest first reply. It prints a table and writes
``bench.json`` and ``bench.png`` to ``--out``. The load generator:
``scripts/benchlib.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import benchlib as lib
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.warmup import warmup_batch_sizes
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tts.encoders import FORMATS, open_encoder
from {{ cookiecutter.package_name }}.tts.text_chunks import split_text

CONFIGS: dict[str, dict[str, str]] = {
    "dynamic": {"MAX_BATCH_SIZE": "32", "MAX_BATCH_WAIT_MS": "2"},
    "none": {"MAX_BATCH_SIZE": "1", "MAX_BATCH_WAIT_MS": "0"},
}
TEXT = (
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins "
    "with a single step. Speech arrives sentence by sentence, as soon as each one is made."
)
COLUMNS = ["mode", "conc", "req/s", "audio s/s", "p50 ms", "p99 ms", "1st p50", "1st p99"]
COLUMNS += ["statuses", "cpu"]


def measure_raw(model: Model, settings: Settings, seconds: float) -> dict[int, float]:
    """Audio seconds per second from ``predict`` on ready batches of the service's chunks."""
    chunks = split_text(TEXT, settings.tts_chunk_chars)
    voices = list(model.voices)
    utterances = [
        model.prepare(chunk, voices[i % len(voices)], 1.0) for i, chunk in enumerate(chunks * 32)
    ]
    rate: dict[int, float] = {}
    for size in warmup_batch_sizes(32):
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


def measure_encoders(model: Model, settings: Settings, seconds: float) -> dict[str, float]:
    """Milliseconds of CPU (this thread) per second of audio, per format, chunk by chunk."""
    chunks = split_text(TEXT, settings.tts_chunk_chars)
    voice = next(iter(model.voices))
    audio = [model.predict([model.prepare(chunk, voice, 1.0)])[0] for chunk in chunks]
    audio_s = sum(len(a) for a in audio) / model.sample_rate
    cost: dict[str, float] = {}
    for name in FORMATS:
        runs = 0
        started, deadline = time.thread_time(), time.perf_counter() + seconds
        while time.perf_counter() < deadline or runs < 3:
            encoder = open_encoder(name, model.sample_rate, sum(len(a) for a in audio))
            for piece in audio:
                encoder.encode(piece)
            encoder.finish()
            runs += 1
        cost[name] = (time.thread_time() - started) * 1000 / (runs * audio_s)
    return cost


def speech_requests(
    target: lib.Target, model_name: str, voices: list[str], response_format: str
) -> list[bytes]:
    headers = {"Content-Type": "application/json"}
    bodies = [
        {"model": model_name, "input": TEXT, "voice": voice, "response_format": response_format}
        for voice in voices[:4]
    ]
    return [target.request("/v1/audio/speech", json.dumps(b).encode(), headers) for b in bodies]


async def audio_seconds(target: lib.Target, model_name: str, voices: list[str]) -> float:
    """The mean audio length of the requests, from their PCM answers (any format's length)."""
    lengths = []
    for request in speech_requests(target, model_name, voices, "pcm"):
        reply = await lib.one_reply(target, request, "a PCM request")
        lengths.append(len(reply.body) / 2 / Model.sample_rate)  # 16-bit mono samples
    return statistics.mean(lengths)


async def sweep(
    mode: str,
    target: lib.Target,
    requests: list[bytes],
    args: argparse.Namespace,
    audio_s: float,
    pid: int | None,
) -> list[dict[str, Any]]:
    await lib.one_reply(target, requests[0], f"{mode}: the first request")
    rows = []
    for concurrency in args.levels:
        load = await lib.closed_loop(
            target, requests, concurrency, args.duration, server_pid=pid, waves=3
        )
        first = [(r.chunks[0][0] - r.sent) * 1000 for r in load.ok if r.chunks]
        rows.append(
            {
                **lib.summary(mode, load),
                "audio_s_per_s": None
                if mode == "body-only"
                else len(load.ok) * audio_s / load.seconds,
                "first_audio_p50_ms": lib.percentile(first, 50),
                "first_audio_p99_ms": lib.percentile(first, 99),
            }
        )
        print(lib.table(COLUMNS, [cells(rows[-1])]).splitlines()[-1], flush=True)
    return rows


def cells(row: dict[str, Any]) -> list[object]:
    figures = ("req_per_s", "audio_s_per_s", "p50_ms", "p99_ms")
    firsts = ("first_audio_p50_ms", "first_audio_p99_ms")
    return [
        row["mode"],
        row["concurrency"],
        *(lib.fmt(row[key]) for key in figures + firsts),
        row["statuses"],
        lib.fmt(row["server_cpu"], 2),
    ]


async def measure(args: argparse.Namespace, settings: Settings, model: Model) -> list[dict]:
    name, voices, rows = settings.model_name, list(model.voices), []
    with lib.service({}, args.out / "body-only.log", body_only=True) as (port, pid):
        target = lib.Target("127.0.0.1", port)
        requests = speech_requests(target, name, voices, args.format[0])
        rows += await sweep("body-only", target, requests, args, 0.0, pid)
    if args.url:
        target = lib.url_target(args.url, args.api_key)
        audio_s = await audio_seconds(target, name, voices)
        for response_format in args.format:
            requests = speech_requests(target, name, voices, response_format)
            rows += await sweep(f"as-is {response_format}", target, requests, args, audio_s, None)
        return rows
    for config_name, config in CONFIGS.items():
        with lib.service(config, args.out / f"service-{config_name}.log") as (port, pid):
            target = lib.Target("127.0.0.1", port, args.api_key)
            audio_s = await audio_seconds(target, name, voices)
            for response_format in args.format:
                requests = speech_requests(target, name, voices, response_format)
                mode = f"{config_name} {response_format}"
                rows += await sweep(mode, target, requests, args, audio_s, pid)
    return rows


def main() -> None:
    parser = lib.arguments(__doc__, [1, 4, 16, 64], duration_s=5.0)
    parser.add_argument("--raw-seconds", type=float, default=1.0, help="per raw batch size")
    parser.add_argument(
        "--format",
        nargs="+",
        choices=list(FORMATS),
        default=["mp3"],
        help="response formats to sweep, each at every level (default mp3)",
    )
    args = parser.parse_args()
    machine = lib.note_machine()
    settings = Settings()
    model = Model(settings)
    model.load()
    raw = measure_raw(model, settings, args.raw_seconds)
    print("raw model, audio s/s by batch size:", {b: round(r) for b, r in raw.items()})
    encoders = measure_encoders(model, settings, args.raw_seconds)
    print("encoders, ms CPU per audio second:", {f: round(ms, 2) for f, ms in encoders.items()})
    rows = lib.run(measure(args, settings, model))
    print()
    print(lib.table(COLUMNS, [cells(row) for row in rows]))
    data = {
        "text_chars": len(TEXT),
        "raw_audio_s_per_s": raw,
        "encoder_cpu_ms_per_audio_s": encoders,
        "served": rows,
        "machine": machine,
    }
    lib.write_json(args.out / "bench.json", data)
    lib.plot(
        args.out / "bench.png",
        f"POST /v1/audio/speech ({', '.join(args.format)}), {len(TEXT)} characters; "
        f"{machine['cpus']} CPUs",
        [row for row in rows if row["mode"] != "body-only"],
        {"audio seconds per second": "audio_s_per_s", "p99 latency (ms)": "p99_ms"}
        | {"first audio p99 (ms)": "first_audio_p99_ms"},
        {f"raw model {max(raw.values()):.0f} audio s/s": max(raw.values())},
    )


if __name__ == "__main__":
    main()
