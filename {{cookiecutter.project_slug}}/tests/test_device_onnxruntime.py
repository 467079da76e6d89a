"""onnxruntime device paths, exercised on a CPU with a faked CUDA provider."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from {{ cookiecutter.package_name }}.serving import onnxruntime_backend as backend
from {{ cookiecutter.package_name }}.serving.device import Device, DeviceUnavailable

from .conftest import make_settings


def test_cuda_providers_carry_the_gpu_settings(model_path: Path) -> None:
    settings = make_settings(
        model_path, gpu_memory_limit_mb=2048, cudnn_conv_algo_search="HEURISTIC"
    )
    providers = backend.providers_for(settings, Device("cuda", 1))
    name, options = providers[0]
    assert name == "CUDAExecutionProvider"
    assert options["device_id"] == 1
    assert options["gpu_mem_limit"] == 2048 * 1024 * 1024
    assert options["cudnn_conv_algo_search"] == "HEURISTIC"
    assert providers[-1] == "CPUExecutionProvider"


def test_cpu_uses_only_the_cpu_provider(model_path: Path) -> None:
    assert backend.providers_for(make_settings(model_path), Device("cpu")) == [
        "CPUExecutionProvider"
    ]


def test_missing_cuda_provider_fails_fast(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    settings = make_settings(model_path, device="cuda", cpu_fallback=False)
    with pytest.raises(DeviceUnavailable, match="no CUDA device"):
        backend.create_session(model_path, settings)


def test_cuda_provider_that_fails_to_load_falls_back(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider is listed but its libraries are missing: onnxruntime drops it silently."""
    monkeypatch.setattr(backend, "gpu_count", lambda: 1)
    settings = make_settings(model_path, device="cuda", cpu_fallback=True)
    session, device = backend.create_session(model_path, settings)
    assert device == Device("cpu")
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "absent.onnx")
    with pytest.raises(FileNotFoundError, match="make model"):
        backend.create_session(settings.model_path, settings)
