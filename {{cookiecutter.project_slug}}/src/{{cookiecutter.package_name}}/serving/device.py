"""Turn the DEVICE setting into a concrete device, failing or falling back clearly."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class DeviceUnavailable(RuntimeError):
    """A GPU was requested, none is usable, and CPU fallback is off."""


@dataclass(frozen=True, slots=True)
class Device:
    kind: str  # "cpu" or "cuda"
    index: int = 0

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.is_cuda else "cpu"


CPU = Device("cpu")


def resolve_device(requested: str, *, gpu_count: int, cpu_fallback: bool) -> Device:
    """Resolve ``auto|cpu|cuda|cuda:N`` against the number of usable GPUs.

    ``auto`` never fails: first GPU if any, else CPU. An explicit ``cuda``
    request that cannot be met either raises ``DeviceUnavailable`` (the
    production default of gpu builds: a pod scheduled without its GPU should
    crash-loop loudly, not serve slowly) or, with ``cpu_fallback``, logs a
    warning and runs on the CPU.
    """
    requested = requested.strip().lower()
    if requested == "cpu":
        return CPU
    if requested == "auto":
        return Device("cuda", 0) if gpu_count > 0 else CPU
    index = int(requested.partition(":")[2] or 0)
    if index < gpu_count:
        return Device("cuda", index)
    reason = (
        "no CUDA device is visible"
        if gpu_count == 0
        else f"only {gpu_count} CUDA device(s) are visible (indices 0..{gpu_count - 1})"
    )
    if not cpu_fallback:
        raise DeviceUnavailable(
            f"DEVICE={requested} but {reason}; check the GPU driver and the container's "
            "GPU reservation, or set CPU_FALLBACK=true to run on the CPU"
        )
    logger.warning(
        "DEVICE=%s but %s; falling back to the CPU (CPU_FALLBACK=true)", requested, reason
    )
    return CPU
