"""onnxruntime specifics: execution providers, GPU options and session creation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnxruntime as ort

from ..settings import Settings
from .cpus import compute_threads
from .device import Device, resolve_device

logger = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def gpu_count() -> int:
    """Usable CUDA devices for onnxruntime (0 when the CUDA provider is missing)."""
    if CUDA_PROVIDER not in ort.get_available_providers():
        return 0
    try:
        import pynvml  # nvidia-ml-py, installed in gpu builds

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML: the provider is there, assume one device
        return 1


def providers_for(settings: Settings, device: Device) -> list[Any]:
    """Execution providers in priority order, with the CUDA options that matter."""
    if not device.is_cuda:
        return [CPU_PROVIDER]
    cuda_options: dict[str, Any] = {
        "device_id": device.index,
        "cudnn_conv_algo_search": settings.cudnn_conv_algo_search,
        # grow the arena by what is requested, not by powers of two: less waste
        "arena_extend_strategy": "kSameAsRequested",
    }
    if settings.gpu_memory_limit_mb:
        cuda_options["gpu_mem_limit"] = settings.gpu_memory_limit_mb * 1024 * 1024
    return [(CUDA_PROVIDER, cuda_options), CPU_PROVIDER]


def session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
{%- if cookiecutter.workload == 'embeddings' %}
    # Shared among every process's calls: under load each process computes a large batch,
    # and two processes with a thread per core each slowed each other down (MiniLM, 2 cores,
    # 2 workers, 16 clients x 16 sentences: 340-344 items/s at 1 thread, 292-300 at 2; one
    # client: 117-123 vs 128-131; docs chapter 04).
{%- else %}
    # Per process: idle threads sleep (below), so the WORKERS processes share the cores
    # through the OS; a lone request then computes on all of them (measured on 2 cores, 2
    # processes: 1 thread each cost 15% of the tensor req/s at concurrency 1).
{%- endif %}
    options.intra_op_num_threads = compute_threads(
        settings.intra_op_threads, settings.calls_sharing_cpus
    )
    options.inter_op_num_threads = 1
    # Idle intra-op threads sleep instead of spinning. Spinning saves microseconds
    # between back-to-back runs but keeps cores busy long after each one, and here
    # those cores also run the event loop that reads and answers the requests.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def create_session(path: Path, settings: Settings) -> tuple[ort.InferenceSession, Device]:
    """Open the model on the device DEVICE resolves to; fail clearly if the file is bad."""
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist (run `make model`)")
    device = resolve_device(
        settings.device, gpu_count=gpu_count(), cpu_fallback=settings.cpu_fallback
    )
    session = ort.InferenceSession(
        str(path), sess_options=session_options(settings), providers=providers_for(settings, device)
    )
    if device.is_cuda and CUDA_PROVIDER not in session.get_providers():
        # onnxruntime silently drops a provider whose libraries fail to load
        message = "the CUDA execution provider failed to initialise (CUDA/cuDNN libraries?)"
        if not settings.cpu_fallback:
            raise RuntimeError(message)
        logger.warning("%s; running on the CPU", message)
        device = Device("cpu")
    logger.info("onnxruntime session on %s with providers %s", device, session.get_providers())
    return session, device
