"""Batch glue for array models: the model's own ``batch``, one ``predict``, its ``unbatch``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .contract import ImageClassifier


def run_stacked(model: ImageClassifier, payloads: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Stack payloads (``model.batch``), predict once, give each payload its rows back.

    A payload may hold several rows (a v2 request with batch dimension > 1);
    each gets back exactly as many output rows, in order.
    """
    batch = model.batch(payloads)
    outputs = model.predict(batch)  # type: ignore[attr-defined]
    if len(outputs) != len(batch):
        raise RuntimeError(f"predict returned {len(outputs)} rows for a batch of {len(batch)}")
    return model.unbatch(outputs, [len(payload) for payload in payloads])
