"""Per-workload "bring your own model" cases for ``tests/test_model_swap.py``.

Each module (``vision.py``, ``llm.py``, ``embeddings.py``, ``tts.py``) defines a
``Swap`` describing how a team would serve a differently shaped model: which
combinations to bake, how to build the team's model inside the test (never the
project's demo builder), and how to edit ``model.py`` (the only source file a
team edits) to describe it. The runner then runs the project's contract suite
against that model (``pytest --model-path``) and serves it through the real
client of the workload's protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Swap:
    # option values to bake, e.g. {"workload": "vision", "backend": "onnxruntime"}
    combination: dict[str, str]
    # (project, out_dir) -> the model path to serve (file or folder), built in the test
    build_model: Callable[[Path, Path], Path]
    # (project) -> None: edits src/<package>/model.py only
    edit_model: Callable[[Path], None]
    # (project, model_path, base_url) -> None: drives a served instance with the real client
    check_served: Callable[[Path, Path, str], None]
    # extra environment for the suite and the server (settings of the team's model)
    env: dict[str, str] = field(default_factory=dict)
