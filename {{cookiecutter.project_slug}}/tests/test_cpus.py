"""Compute threads follow the CPUs the process may use, not the host's core count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.serving.cpus import (
    AUTO_WORKERS_CAP,
    cgroup_cpu_quota,
    compute_threads,
    server_workers,
    usable_cpus,
)

AFFINITY = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cgroup_v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def cgroup_v1(root: Path, quota_us: int, period_us: int = 100_000) -> Path:
    folder = root / "cpu,cpuacct"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period_us}\n")
    return root


@pytest.mark.parametrize(
    ("cpu_max", "quota"),
    [("max 100000", None), ("200000 100000", 2.0), ("150000 100000", 1.5), ("50000 100000", 0.5)],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, quota: float | None) -> None:
    assert cgroup_cpu_quota(cgroup_v2(tmp_path, cpu_max)) == quota


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(cgroup_v1(tmp_path / "a", 300_000)) == 3.0
    assert cgroup_cpu_quota(cgroup_v1(tmp_path / "b", -1)) is None  # v1's "unlimited"


@pytest.mark.parametrize("content", ["", "lots 100000", "100000 0"])
def test_an_unreadable_quota_is_no_limit(tmp_path: Path, content: str) -> None:
    assert cgroup_cpu_quota(cgroup_v2(tmp_path, content)) is None
    assert cgroup_cpu_quota(tmp_path / "no-cgroup-here") is None


def test_the_quota_caps_the_affinity_rounded_down_and_at_least_one(tmp_path: Path) -> None:
    assert usable_cpus(cgroup_v2(tmp_path / "a", "max 100000")) == AFFINITY
    assert usable_cpus(cgroup_v2(tmp_path / "b", "50000 100000")) == 1
    assert usable_cpus(cgroup_v2(tmp_path / "c", "1000000000 100000")) == AFFINITY
    if AFFINITY >= 2:
        assert usable_cpus(cgroup_v2(tmp_path / "d", "150000 100000")) == 1


def test_compute_threads_share_the_cpus_among_parallel_calls(tmp_path: Path) -> None:
    four = cgroup_v2(tmp_path, "400000 100000")
    usable = usable_cpus(four)
    assert compute_threads(0, 1, four) == usable
    assert compute_threads(0, 2, four) == max(1, usable // 2)
    assert compute_threads(0, 64, four) == 1
    assert compute_threads(3, 2, four) == 3  # INTRA_OP_THREADS wins


def test_workers_follow_the_cpus_on_a_cpu_device_and_are_one_on_a_gpu(tmp_path: Path) -> None:
    three = cgroup_v2(tmp_path / "a", "300000 100000")
    assert server_workers(0, True, three) == min(usable_cpus(three), 3)
    assert server_workers(0, False, three) == 1  # a GPU: one process, MODEL_INSTANCES copies
    assert server_workers(5, False, three) == 5  # WORKERS wins
    many = cgroup_v2(tmp_path / "b", "max 100000")
    assert server_workers(0, True, many) == min(AFFINITY, AUTO_WORKERS_CAP)


def test_the_settings_count_every_model_call_that_runs_at_once() -> None:
    from {{ cookiecutter.package_name }}.settings import Settings

    assert Settings(_env_file=None, workers=3).parallel_model_calls % 3 == 0
{%- if cookiecutter.workload == 'llm' %}
    assert Settings(_env_file=None, workers=0).worker_processes == 1  # one scheduler
{%- else %}
    assert Settings(_env_file=None, workers=2, model_instances=3).parallel_model_calls == 6
    derived = Settings(_env_file=None, workers=0, device="cpu")
    assert derived.worker_processes == server_workers(0, True)
    assert Settings(_env_file=None, workers=0, device="cuda").worker_processes == 1
{%- endif %}


def test_compute_threads_are_shared_among_the_calls_that_compete_for_the_cpus() -> None:
    from {{ cookiecutter.package_name }}.settings import Settings

    settings = Settings(_env_file=None, workers=2)  # 2 calls at once, 1 in each process
{%- if cookiecutter.backend == 'onnxruntime' and cookiecutter.workload != 'embeddings' %}
    # onnxruntime's idle threads sleep: each process shares the CPUs among its own calls
    assert settings.calls_sharing_cpus == settings.model_calls_per_process
{%- else %}
    # torch's threads spin, and embeddings batches keep every thread busy: all calls share
    assert settings.calls_sharing_cpus == settings.parallel_model_calls
{%- endif %}
