"""Which batch sizes to warm before a service reports ready (batcher and scheduler alike).

The first call of a shape pays for kernel selection, memory arena growth and
(on a GPU) cuDNN autotuning; without warmup the first real requests would.
"""

from __future__ import annotations


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
