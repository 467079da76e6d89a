"""Recognise GPU out-of-memory errors without importing a backend that is not installed."""

from __future__ import annotations

import sys

# onnxruntime reports allocation failures as RuntimeException with these texts.
_ORT_OOM_MARKERS = (
    "Failed to allocate memory",
    "BFCArena",
    "CUDA_ERROR_OUT_OF_MEMORY",
    "out of memory",
)


class SimulatedOutOfMemory(RuntimeError):
    """Raised by tests (and fault-injection runs) to exercise the OOM path on a CPU."""


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, SimulatedOutOfMemory)):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    if type(exc).__module__.startswith("onnxruntime"):
        text = str(exc)
        return any(marker in text for marker in _ORT_OOM_MARKERS)
    return False


def release_cached_memory() -> None:
    """Give cached GPU blocks back before a retry (torch keeps freed blocks cached)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
