"""Batch glue for array models: stack request payloads, split the outputs back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class ArrayModel(Protocol):
    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def run_stacked(model: ArrayModel, payloads: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Concatenate payloads along axis 0, predict once, return each payload's rows.

    A payload may hold several rows (a v2 request with batch dimension > 1);
    each gets back exactly as many output rows, in order.
    """
    batch = payloads[0] if len(payloads) == 1 else np.concatenate(payloads, axis=0)
    outputs = model.predict(batch)
    if len(outputs) != len(batch):
        raise RuntimeError(f"predict returned {len(outputs)} rows for a batch of {len(batch)}")
    results: list[np.ndarray] = []
    start = 0
    for payload in payloads:
        end = start + len(payload)
        results.append(outputs[start:end])
        start = end
    return results
