"""GPU memory and utilisation gauges, read through NVML when Prometheus scrapes.

NVML is the library behind ``nvidia-smi``; ``nvidia-ml-py`` binds it. Asking at
scrape time means the numbers are never stale and nothing polls in the
background. Without an NVIDIA driver (a CPU host, or CPU fallback) the
collector exports nothing: a scrape never fails because a GPU is missing.

The ``gpu`` label is the NVML index (as ``nvidia-smi`` numbers the devices).
When ``CUDA_VISIBLE_DEVICES`` is set, only the devices it names are reported:
the process cannot use the others, so their memory is not its concern.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import pynvml
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

MEMORY_USED = "inference_gpu_memory_used_bytes"
MEMORY_TOTAL = "inference_gpu_memory_total_bytes"
UTILIZATION = "inference_gpu_utilization_ratio"


class GpuCollector:
    """A prometheus-client collector over the GPUs NVML sees."""

    def __init__(
        self, nvml: ModuleType | Any = pynvml, environ: Mapping[str, str] = os.environ
    ) -> None:
        self._nvml = nvml  # tests pass a fake module with the same functions
        self._visible = environ.get("CUDA_VISIBLE_DEVICES")
        self._lock = threading.Lock()
        self._devices: list[tuple[str, Any]] | None = None  # (label, handle), opened once

    def describe(self) -> Iterator[Metric]:
        """The names only, so that registering never touches NVML."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        devices = self._open()
        if not devices:
            return
        used, total, utilization = self._families()
        for label, handle in devices:
            try:
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                used.add_metric([label], float(memory.used))
                total.add_metric([label], float(memory.total))
            except self._nvml.NVMLError as exc:
                logger.debug("GPU %s: memory not readable: %s", label, exc)
            try:
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                utilization.add_metric([label], rates.gpu / 100.0)
            except self._nvml.NVMLError as exc:  # e.g. not supported on a MIG instance
                logger.debug("GPU %s: utilisation not readable: %s", label, exc)
        for family in (used, total, utilization):
            if family.samples:
                yield family

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(MEMORY_USED, "GPU memory in use (all processes).", labels=["gpu"]),
            GaugeMetricFamily(MEMORY_TOTAL, "GPU memory installed.", labels=["gpu"]),
            GaugeMetricFamily(
                UTILIZATION,
                "Fraction of the last sample period in which a kernel ran on the GPU.",
                labels=["gpu"],
            ),
        )

    def _open(self) -> list[tuple[str, Any]]:
        with self._lock:
            if self._devices is None:
                self._devices = self._find_devices()
            return self._devices

    def _find_devices(self) -> list[tuple[str, Any]]:
        nvml = self._nvml
        try:
            nvml.nvmlInit()
            devices = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                if self._is_visible(index, handle):
                    devices.append((str(index), handle))
        except Exception as exc:  # no driver, no library, no device: metrics off, never an error
            logger.info("GPU metrics off: NVML is not available (%s)", exc)
            return []
        logger.info("GPU metrics on for GPU(s) %s", ", ".join(label for label, _ in devices))
        return devices

    def _is_visible(self, index: int, handle: Any) -> bool:
        """Whether CUDA_VISIBLE_DEVICES (indices or UUIDs) lets this process use the device."""
        if self._visible is None:
            return True
        entries = [entry.strip() for entry in self._visible.split(",") if entry.strip()]
        uuid: str | None = None
        for entry in entries:
            if entry.isdigit():
                if int(entry) == index:
                    return True
                continue
            if uuid is None:
                uuid = _text(self._nvml.nvmlDeviceGetUUID(handle))
            if uuid.startswith(entry):  # CUDA accepts unique UUID prefixes
                return True
        return False


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
