"""Warm every batch size the batcher can produce before the service reports ready.

The first call of a shape pays for kernel selection, memory arena growth and
(on a GPU) cuDNN autotuning; without warmup the first real requests would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .batcher import Batcher

logger = logging.getLogger(__name__)


def warmup_batch_sizes(max_batch_size: int, *, every_size: bool = False) -> list[int]:
    """The batch sizes to warm: 1, 2, 4, ... and the maximum; or every size up to it.

    CPU runtimes grow their memory arena to the largest batch and reuse it, so
    powers of two cover them. cuDNN autotunes each new input shape, so on a GPU
    every size the batcher can form (1..max) is warmed, or the first batch of an
    unwarmed size would stall for the search.
    """
    if every_size:
        return list(range(1, max_batch_size + 1))
    sizes = [1]
    while sizes[-1] * 2 <= max_batch_size:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return sizes


async def warm_up(
    batcher: Batcher[Any], example_payload: Callable[[int], Any], *, every_size: bool = False
) -> float:
    """Run every warmup batch size on every model instance; return the seconds it took."""
    started = time.perf_counter()
    sizes = warmup_batch_sizes(batcher.max_batch_size, every_size=every_size)
    for index in range(batcher.instance_count):
        for size in sizes:
            size_started = time.perf_counter()
            await batcher.run_direct([example_payload(size)], instance_index=index)
            logger.debug(
                "warmup: instance %d, batch of %d in %.1f ms",
                index,
                size,
                (time.perf_counter() - size_started) * 1000,
            )
    elapsed = time.perf_counter() - started
    logger.info(
        "warmup done in %.3f s: batch sizes %s on %d instance(s)",
        elapsed,
        sizes if len(sizes) <= 8 else f"1..{sizes[-1]}",
        batcher.instance_count,
        extra={"warmup_seconds": round(elapsed, 4), "batch_sizes": sizes},
    )
    return elapsed
