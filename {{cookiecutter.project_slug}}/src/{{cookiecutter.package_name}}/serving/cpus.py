"""The CPUs this process may use, and the server processes and compute threads they get.

``os.cpu_count()`` counts the host's cores. In a container limited to 2 CPUs on a 64-core
node, runtimes that size their thread pools from the host (onnxruntime and torch both
do) start dozens of threads that the kernel then throttles to the quota, which makes
every model call slower, not faster. The count here is the process's CPU affinity,
capped by the cgroup CPU quota (v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``) rounded down, at least 1, as Go's automaxprocs does. Twenty
lines of reading two files did not justify a dependency.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup's CPU limit in CPUs (1.5 for ``150000 100000``); None when unlimited."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        for folder in (root / "cpu", root / "cpu,cpuacct"):
            if (folder / "cpu.cfs_quota_us").is_file():
                quota_us = int((folder / "cpu.cfs_quota_us").read_text())
                period_us = int((folder / "cpu.cfs_period_us").read_text())
                return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError, ZeroDivisionError):
        return None  # unreadable or malformed: no limit we can trust
    return None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may run on: its affinity, capped by the cgroup quota."""
    # macOS and Windows have no affinity call
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, math.floor(quota))
    return max(1, cpus)


def compute_threads(intra_op_threads: int, parallel_calls: int, root: Path = CGROUP_ROOT) -> int:
    """``INTRA_OP_THREADS``, or (0) the usable CPUs shared out among ``parallel_calls``
    model calls (``Settings.calls_sharing_cpus``), at least one each."""
    if intra_op_threads:
        return intra_op_threads
    return max(1, usable_cpus(root) // parallel_calls)


# Each server process holds its own copy of the model: past a few processes the memory
# grows while the gain (request parsing and pre/post-processing over more cores) does not.
AUTO_WORKERS_CAP = 8


def server_workers(workers: int, cpu_inference: bool, root: Path = CGROUP_ROOT) -> int:
    """``WORKERS``, or (0) one server process per usable CPU, at most ``AUTO_WORKERS_CAP``,
    when the model computes on the CPU; one when it computes on a GPU (every process
    would hold its own CUDA context and weights: use ``MODEL_INSTANCES`` there)."""
    if workers:
        return workers
    return min(usable_cpus(root), AUTO_WORKERS_CAP) if cpu_inference else 1
