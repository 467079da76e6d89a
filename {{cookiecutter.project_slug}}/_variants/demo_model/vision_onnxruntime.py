"""Build the demo image classifier as an ONNX file, offline and deterministically.

Uses the ``onnx`` package alone (no torch): a small CNN with fixed-seed
weights (four strided convolutions, about 58 M multiply-adds per 64x64 RGB
image, 0.5-1 ms on one CPU core). Its tensor names, input shape and classes
are the contract declared in the service's ``model.py``.
The weights are random, so its predictions are meaningless but repeatable;
the point is a real model with real cost that the whole service can serve.

    python scripts/make_demo_model.py [--out models/model.onnx]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from {{ cookiecutter.package_name }}.model import Model

SEED = 20240601
WIDTHS = [64, 128, 256, 512]  # output channels of the four convolutions


def demo_weights() -> dict[str, np.ndarray]:
    """He-initialised weights from a fixed seed; names match the torch variant."""
    rng = np.random.default_rng(SEED)
    channels = [Model.input_shape[0], *WIDTHS]
    weights: dict[str, np.ndarray] = {}
    for index, (c_in, c_out) in enumerate(itertools.pairwise(channels), start=1):
        scale = np.sqrt(2.0 / (c_in * 9))
        weights[f"conv{index}.weight"] = (rng.standard_normal((c_out, c_in, 3, 3)) * scale).astype(
            np.float32
        )
        weights[f"conv{index}.bias"] = (rng.standard_normal(c_out) * 0.01).astype(np.float32)
    weights["fc.weight"] = (
        rng.standard_normal((len(Model.labels), WIDTHS[-1])) * np.sqrt(1.0 / WIDTHS[-1])
    ).astype(np.float32)
    weights["fc.bias"] = np.zeros(len(Model.labels), dtype=np.float32)
    return weights


def build_graph(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    nodes = []
    current = Model.input_name
    for index in range(1, len(WIDTHS) + 1):
        conv_out, relu_out = f"conv{index}", f"relu{index}"
        nodes.append(
            helper.make_node(
                "Conv",
                [current, f"conv{index}.weight", f"conv{index}.bias"],
                [conv_out],
                kernel_shape=[3, 3],
                strides=[2, 2],
                pads=[1, 1, 1, 1],
            )
        )
        nodes.append(helper.make_node("Relu", [conv_out], [relu_out]))
        current = relu_out
    nodes.append(helper.make_node("GlobalAveragePool", [current], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
    nodes.append(
        helper.make_node(
            "Gemm", ["features", "fc.weight", "fc.bias"], [Model.output_name], transB=1
        )
    )
    element = helper.np_dtype_to_tensor_dtype(np.dtype(Model.input_dtype))
    graph = helper.make_graph(
        nodes,
        "demo_classifier",
        [helper.make_tensor_value_info(Model.input_name, element, ["batch", *Model.input_shape])],
        [
            helper.make_tensor_value_info(
                Model.output_name, TensorProto.FLOAT, ["batch", len(Model.labels)]
            )
        ],
        initializer=[numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_demo_model"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/model.onnx"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(demo_weights()), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
