"""What the peer comparisons (bench_peers.py, bench_peers_embeddings.py) share."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def in_workdir(prefix: str, keep: bool, body: Callable[[Path], int]) -> int:
    """Run ``body`` in a fresh temporary directory; remove it afterwards unless ``keep``."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return body(workdir)
    finally:
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def span(values: list[float], digits: int = 0) -> str:
    """A figure's range over the rounds: ``low-high``, or one value when they round alike."""
    low, high = min(values), max(values)
    return (
        f"{low:,.{digits}f}"
        if round(low, digits) == round(high, digits)
        else f"{low:,.{digits}f}-{high:,.{digits}f}"
    )
