"""torch device paths, exercised on a CPU (GPU paths via fakes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package_name }}.serving import torch_backend as backend
from {{ cookiecutter.package_name }}.serving.device import Device, DeviceUnavailable

from .conftest import make_settings


def test_missing_gpu_fails_fast(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "gpu_count", lambda: 0)
    with pytest.raises(DeviceUnavailable):
        backend.select_device(make_settings(model_path, device="cuda", cpu_fallback=False))


def test_gpu_memory_cap_and_cudnn_settings(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, object] = {}

    class Properties:
        total_memory = 8 * 1024**3

    monkeypatch.setattr(backend, "gpu_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.setdefault("device", index))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Properties())
    monkeypatch.setattr(
        torch.cuda,
        "set_per_process_memory_fraction",
        lambda f, i: calls.setdefault("fraction", (f, i)),
    )
    settings = make_settings(
        model_path, device="cuda", gpu_memory_limit_mb=2048, cudnn_conv_algo_search="EXHAUSTIVE"
    )
    assert backend.select_device(settings) == Device("cuda", 0)
    assert calls["device"] == 0
    assert calls["fraction"] == (0.25, 0)
    assert torch.backends.cudnn.benchmark is True
    torch.backends.cudnn.benchmark = False


@pytest.mark.parametrize(
    ("precision", "on_gpu", "dtype"),
    [
        ("fp32", False, torch.float32),
        ("fp16", False, torch.float32),
        ("bf16", False, torch.bfloat16),
        ("fp16", True, torch.float16),
    ],
)
def test_compute_dtype(model_path: Path, precision: str, on_gpu: bool, dtype: torch.dtype) -> None:
    device = Device("cuda", 0) if on_gpu else Device("cpu")
    assert backend.compute_dtype(make_settings(model_path, precision=precision), device) == dtype


def test_refuses_pickled_checkpoints(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(1)}, checkpoint)
    with pytest.raises(ValueError, match="pickled checkpoints are refused"):
        backend.load_weights(torch.nn.Linear(1, 1), checkpoint, Device("cpu"), torch.float32)
