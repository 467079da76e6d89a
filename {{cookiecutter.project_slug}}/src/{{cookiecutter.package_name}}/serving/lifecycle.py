"""What every workload's service is to the app: load -> warm up -> ready -> drain.

The lifespan in ``main.py``, the health probes and SIGTERM handling see a
service only through ``Service``; the batching service (vision, embeddings,
tts) and the generation service (llm) both implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .errors import NotReady


@dataclass
class Readiness:
    ready: bool = False
    draining: bool = False

    @property
    def serving(self) -> bool:
        return self.ready and not self.draining

    def check(self) -> None:
        """Raise ``NotReady`` (503) unless the service takes new work."""
        if not self.serving:
            raise NotReady(
                "the service is shutting down" if self.draining else "the model is not ready"
            )


class Service(Protocol):
    """A loaded model behind its scheduler or batcher: warmed by ``start``, emptied by ``drain``."""

    readiness: Readiness
    load_seconds: float
    warmup_seconds: float

    @property
    def model(self) -> Any: ...

    async def start(self) -> None:
        """Warm up every shape the service will run, start its workers, report ready."""

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new work, finish what was admitted within ``timeout_s``; True if all did."""
