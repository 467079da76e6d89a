"""Build the demo language model as safetensors weights, offline and deterministically.

The network is ``Model.network()`` from the service's ``model.py`` (the demo's
``DemoLM``: a small decoder-only transformer of ``VOCAB_SIZE`` tokens and
``CONTEXT_LENGTH`` positions, 4 layers, width 512, 8 query heads sharing one
key/value head). Its weights come from a per-name fixed seed (the onnxruntime
variant of this script makes the very same values) and are saved with
safetensors, never pickle. The text it writes is gibberish (nudged towards
printable ASCII) but repeatable.

    python scripts/make_demo_model.py [--out models/model.safetensors]
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from {{ cookiecutter.package_name }}.model import Model

SEED = 20240601


def demo_weight(name: str, shape: tuple[int, ...], layers: int) -> np.ndarray:
    """One parameter from a per-name seed (order-independent)."""
    rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
    if ".norm" in name or name.startswith("norm."):
        return (np.ones(shape) if name.endswith("weight") else np.zeros(shape)).astype(np.float32)
    if name == "lm_head.bias":  # favour printable ASCII, so the gibberish is readable
        bias = np.full(shape, -4.0, dtype=np.float32)
        bias[32:127] = 3.0
        bias[[9, 10]] = 2.0  # tab, newline
        bias[256:] = -3.0  # special tokens: the demo rarely ends on its own
        return bias
    if name.endswith("bias"):
        return np.zeros(shape, dtype=np.float32)
    if name == "embed.weight":
        std = 1.0
    elif name == "pos_embed.weight":
        std = 0.3
    elif name == "lm_head.weight":
        std = 4.0 / np.sqrt(shape[1])
    elif name.endswith(("out.weight", "fc2.weight")):  # residual branches: scaled by depth
        std = 1.0 / np.sqrt(shape[1] * 2 * layers)
    else:
        std = 1.0 / np.sqrt(shape[1])
    return (rng.standard_normal(shape) * std).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/model.safetensors"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = Model.network().state_dict()
    layers = len({name.split(".")[1] for name in state if name.startswith("layers.")})
    weights = {
        name: torch.from_numpy(demo_weight(name, tuple(p.shape), layers))
        for name, p in state.items()
    }
    save_file(weights, str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
