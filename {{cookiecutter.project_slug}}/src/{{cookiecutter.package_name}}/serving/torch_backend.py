"""torch specifics: device placement, precision, GPU memory cap, safe weight loading."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..settings import Settings
from .cpus import compute_threads
from .device import Device, resolve_device

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def set_compute_threads(settings: Settings) -> None:
    """torch's intra-op pool: INTRA_OP_THREADS, or the usable CPUs per parallel model call."""
    threads = compute_threads(settings.intra_op_threads, settings.calls_sharing_cpus)
    torch.set_num_threads(threads)


def select_device(settings: Settings) -> Device:
    device = resolve_device(
        settings.device, gpu_count=gpu_count(), cpu_fallback=settings.cpu_fallback
    )
    if device.is_cuda:
        configure_cuda(settings, device)
    return device


def configure_cuda(settings: Settings, device: Device) -> None:
    torch.cuda.set_device(device.index)
    # EXHAUSTIVE maps to cuDNN autotuning: it benchmarks per shape, so warmup pays for it
    torch.backends.cudnn.benchmark = settings.cudnn_conv_algo_search == "EXHAUSTIVE"
    if settings.gpu_memory_limit_mb:
        total = torch.cuda.get_device_properties(device.index).total_memory
        fraction = min(1.0, settings.gpu_memory_limit_mb * 1024 * 1024 / total)
        torch.cuda.set_per_process_memory_fraction(fraction, device.index)


def compute_dtype(settings: Settings, device: Device) -> torch.dtype:
    if settings.precision == "fp16" and not device.is_cuda:
        logger.warning("PRECISION=fp16 needs a GPU; computing in fp32 on the CPU")
        return torch.float32
    return DTYPES[settings.precision]


def require_weights(path: Path) -> Path:
    """``path`` if it is a safetensors file, else the one-line reason start-up fails."""
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist (run `make model`)")
    if path.suffix != ".safetensors":
        raise ValueError(f"{path} is not a .safetensors file; pickled checkpoints are refused")
    return path


def weight_mismatches(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """How a state dict and a module disagree: missing, unexpected and misshapen tensors."""
    expected = module.state_dict()
    problems = [f"missing {name}" for name in expected if name not in state]
    problems += [f"unexpected {name}" for name in state if name not in expected]
    problems += [
        f"{name} is {tuple(state[name].shape)} in the weights, {tuple(tensor.shape)} in the network"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    return problems


def load_weights(
    module: torch.nn.Module,
    path: Path,
    device: Device,
    dtype: torch.dtype,
    *,
    unused_prefixes: tuple[str, ...] = (),
    fix: str = "save the weights of the network model.py builds",
) -> torch.nn.Module:
    """Load safetensors weights (never a pickle), strictly, and prepare for inference.

    Tensors whose names start with ``unused_prefixes`` are dropped first (a
    checkpoint may carry heads the service does not run); every other tensor
    must match the module exactly, or start-up fails with one line naming the
    network, the first mismatches and ``fix``.
    """
    state = load_file(str(require_weights(path)), device="cpu")
    state = {name: tensor for name, tensor in state.items() if not name.startswith(unused_prefixes)}
    problems = weight_mismatches(module, state)
    if problems:  # one line, not load_state_dict's multi-line report
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(
            f"the weights in {path} do not fit {type(module).__name__} in model.py: "
            f"{'; '.join(problems[:3])}{more}: {fix}"
        )
    module.load_state_dict(state, strict=True)
    module = module.to(device=str(device), dtype=dtype).eval()
    module.requires_grad_(False)
    logger.info("torch module on %s in %s", device, dtype)
    return module
