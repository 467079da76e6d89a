"""Build the demo image classifier as safetensors weights, offline and deterministically.

The network is ``Model.build_network()`` from the service's ``model.py``
(sized by its contract: input channels and labels); its weights come from a
fixed seed (about 58 M multiply-adds per 64x64 RGB image), saved with
safetensors (never pickle). The weights are random, so predictions are
meaningless but repeatable.

    python scripts/make_demo_model.py [--out models/model.safetensors]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from {{ cookiecutter.package_name }}.model import Model

SEED = 20240601


def demo_weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """He-initialised weights from a fixed seed, in the module's parameter order."""
    rng = np.random.default_rng(SEED)
    weights: dict[str, torch.Tensor] = {}
    for name, param in net.state_dict().items():
        if name.endswith("weight") and param.dim() == 4:
            fan_in = param.shape[1] * 9
            array = rng.standard_normal(tuple(param.shape)) * np.sqrt(2.0 / fan_in)
        elif name.startswith("fc.weight"):
            array = rng.standard_normal(tuple(param.shape)) * np.sqrt(1.0 / param.shape[1])
        elif name == "fc.bias":
            array = np.zeros(tuple(param.shape))
        else:
            array = rng.standard_normal(tuple(param.shape)) * 0.01
        weights[name] = torch.from_numpy(array.astype(np.float32)).contiguous()
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/model.safetensors"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(demo_weights(Model.build_network()), str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
