"""Each workload's generated benchmark runs end to end (briefly) and reports what it promises.

A smoke test, not a performance test: one bake per workload, its demo model, then
``scripts/bench.py`` for about a second per level at concurrency 1 and 2 (vision
through the template's own ``make bench`` script, ``scripts/bench_default.py``).
It checks the written JSON holds every figure and that every request was
answered 200; never how fast.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from .conftest import TEMPLATE, assert_ok, run

SHORT = ["--duration", "1", "--levels", "1,2"]
ARGS = {
    "vision": [
        *SHORT,
        *("--raw-seconds", "0.05", "--configs", "dynamic"),
        *("--target-concurrency", "2", "--overload-factor", "2"),
    ],
    "llm": [*SHORT, "--max-tokens", "8", "--prefix", "--prefix-bytes", "300"],
    "embeddings": [*SHORT, "--raw-seconds", "0.05"],
    "tts": [*SHORT, "--raw-seconds", "0.05"],
}


def only_200(statuses: dict[str, int]) -> bool:
    return set(statuses) == {"200"} and statuses["200"] > 0


def check_vision(out: Path) -> None:
    data = json.loads((out / "bench.json").read_text())
    assert set(data["raw"]["items_per_s"]) == {"1", "2", "4", "8", "16", "32"}
    levels = [(row["mode"], row["concurrency"]) for row in data["served"]]
    assert levels == [(mode, c) for mode in ("body-only", "dynamic") for c in (1, 2)]
    for row in data["served"]:
        assert only_200(row["statuses"]) and row["p99_ms"] > 0, row
    assert all(row["mean_batch"] >= 1 for row in data["served"] if row["mode"] == "dynamic")
    assert data["serial_sum_limit_req_per_s"] > 0
    assert data["overload"]["connections"] == 4
    assert data["verdicts"]["overload_only_200_503_504"] is True
    assert {"share_of_limit_at_target", "p50_at_1_over_raw_ms"} <= set(data["verdicts"])
    assert (out / "bench.png").stat().st_size > 0


def check_llm(out: Path) -> None:
    data = json.loads((out / "llm.json").read_text())
    assert set(data["raw_tokens_per_s"]) == {"1", "2"}
    modes = [(row["mode"], row["concurrency"]) for row in data["served"]]
    assert modes == [(m, s) for m in ("continuous batching", "one at a time") for s in (1, 2)]
    for row in data["served"]:
        assert row["requests"] > 0 and row["errors"] == 0, row
        assert row["tokens_per_s"] > 0 and not math.isnan(row["ttft_p50_ms"]), row
        assert not math.isnan(row["itl_p50_ms"]), row
    prefix = [(row["mode"], row["concurrency"]) for row in data["prefix"]]
    assert prefix == [(m, s) for s in (1, 8) for m in ("prefix cache", "no prefix cache")]
    for row in data["prefix"]:
        assert row["requests"] > 0 and row["errors"] == 0, row
        assert row["tokens_per_s"] > 0 and not math.isnan(row["ttft_p50_ms"]), row
    assert (out / "llm.png").stat().st_size > 0


def check_served(out: Path, modes: tuple[str, ...], figure: str) -> None:
    data = json.loads((out / "bench.json").read_text())
    assert [(row["mode"], row["concurrency"]) for row in data["served"]] == [
        (mode, level) for mode in ("body-only", *modes) for level in (1, 2)
    ]
    for row in data["served"]:
        assert only_200(row["statuses"]), row
        assert row["mode"] == "body-only" or row[figure] > 0, row
    assert (out / "bench.png").stat().st_size > 0


def check_tts(out: Path) -> None:
    check_served(out, ("dynamic mp3", "none mp3"), "audio_s_per_s")  # mp3: OpenAI's default
    encoders = json.loads((out / "bench.json").read_text())["encoder_cpu_ms_per_audio_s"]
    assert set(encoders) == {"mp3", "opus", "aac", "flac", "wav", "pcm"}
    assert all(encoders[name] > 0 for name in ("mp3", "opus", "aac")), encoders


CHECKS = {
    "vision": check_vision,
    "llm": check_llm,
    "embeddings": lambda out: check_served(out, ("batching on", "batching off"), "items_per_s"),
    "tts": lambda out: check_tts(out),
}


@pytest.mark.slow
@pytest.mark.parametrize("workload", list(ARGS))
def test_benchmark_runs_and_reports(bake, tmp_path: Path, workload: str) -> None:
    out = tmp_path / "out"
    if workload == "vision":  # the template's `make bench`: bakes the default itself
        command = [sys.executable, "scripts/bench_default.py", "--out", str(out), *ARGS[workload]]
        assert_ok(run(command, TEMPLATE, timeout=300), "make bench")
    else:
        project = bake(workload=workload)
        src = {"PYTHONPATH": str(project / "src")}
        model = run([sys.executable, "scripts/make_demo_model.py"], project, **src)
        assert_ok(model, "make_demo_model.py")
        command = [sys.executable, "scripts/bench.py", "--out", str(out), *ARGS[workload]]
        assert_ok(run(command, project, timeout=300, **src), "scripts/bench.py")
    CHECKS[workload](out)
