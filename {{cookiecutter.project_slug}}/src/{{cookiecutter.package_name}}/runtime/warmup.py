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


def warmup_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two up to the maximum, and the maximum itself: 1, 2, 4, ..., max."""
    sizes = [1]
    while sizes[-1] * 2 <= max_batch_size:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return sizes


async def warm_up(batcher: Batcher[Any], example_payload: Callable[[int], Any]) -> float:
    """Run every batch size on every model instance; return the seconds it took."""
    started = time.perf_counter()
    sizes = warmup_batch_sizes(batcher.max_batch_size)
    for index in range(batcher.instance_count):
        for size in sizes:
            await batcher.run_direct([example_payload(size)], instance_index=index)
    elapsed = time.perf_counter() - started
    logger.info(
        "warmup done in %.3f s: batch sizes %s on %d instance(s)",
        elapsed,
        sizes,
        batcher.instance_count,
    )
    return elapsed
