"""GPU gauges through a fake NVML module: values, visibility, and silence without a GPU."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package_name }}.gpu_metrics import GpuCollector
from {{ cookiecutter.package_name }}.metrics import ServiceMetrics

GIB = 1024**3


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    uuid: str
    used: int
    total: int
    utilization: int | None  # percent; None: not supported (a MIG instance)


class FakeNvml:
    """The few pynvml functions the collector calls, over a list of fake GPUs."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], *, driver: bool = True) -> None:
        self.gpus = gpus
        self.driver = driver
        self.init_calls = 0

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if not self.driver:
            raise NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return handle.uuid

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> SimpleNamespace:
        free = handle.total - handle.used
        return SimpleNamespace(used=handle.used, total=handle.total, free=free)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> SimpleNamespace:
        if handle.utilization is None:
            raise NVMLError("Not Supported")
        return SimpleNamespace(gpu=handle.utilization, memory=0)


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu("GPU-aaaa1111", used=3 * GIB, total=80 * GIB, utilization=45),
        FakeGpu("GPU-bbbb2222", used=1 * GIB, total=80 * GIB, utilization=None),
    ]


def scrape(collector: GpuCollector) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, sample.labels["gpu"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_reads_memory_and_utilisation_per_gpu() -> None:
    nvml = FakeNvml(two_gpus())
    collector = GpuCollector(nvml, environ={})
    samples = scrape(collector)
    assert samples == {
        ("inference_gpu_memory_used_bytes", "0"): 3 * GIB,
        ("inference_gpu_memory_total_bytes", "0"): 80 * GIB,
        ("inference_gpu_utilization_ratio", "0"): 0.45,
        ("inference_gpu_memory_used_bytes", "1"): 1 * GIB,
        ("inference_gpu_memory_total_bytes", "1"): 80 * GIB,
        # GPU 1 cannot report utilisation: left out, not an error
    }
    nvml.gpus[0].used = 7 * GIB  # read at scrape time, never cached
    assert scrape(collector)[("inference_gpu_memory_used_bytes", "0")] == 7 * GIB
    assert nvml.init_calls == 1


@pytest.mark.parametrize(
    ("visible", "expected"),
    [("1", {"1"}), ("0,1", {"0", "1"}), ("GPU-bbbb", {"1"}), ("", set()), ("7", set())],
)
def test_reports_only_the_devices_cuda_may_use(visible: str, expected: set[str]) -> None:
    samples = scrape(GpuCollector(FakeNvml(two_gpus()), environ={"CUDA_VISIBLE_DEVICES": visible}))
    assert {gpu for _, gpu in samples} == expected


def test_no_driver_means_no_gpu_metrics_and_no_error() -> None:
    nvml = FakeNvml(two_gpus(), driver=False)
    collector = GpuCollector(nvml, environ={})
    assert scrape(collector) == {}
    assert scrape(collector) == {}
    assert nvml.init_calls == 1  # asked once, not at every scrape


def test_the_real_nvml_on_this_machine_never_fails_a_scrape(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    families = {family.name for family in text_string_to_metric_families(response.text)}
    gpu_families = {name for name in families if name.startswith("inference_gpu_")}
    # with an NVIDIA driver all three appear (utilisation may be missing on MIG); without, none
    assert gpu_families <= {
        "inference_gpu_memory_used_bytes",
        "inference_gpu_memory_total_bytes",
        "inference_gpu_utilization_ratio",
    }


def test_service_metrics_include_the_gpu_collector() -> None:
    metrics = ServiceMetrics("m")
    assert any(isinstance(collector, GpuCollector) for collector in metrics.collectors)
