"""Build the demo language model as two ONNX graphs, offline and deterministically.

Uses the ``onnx`` package alone (no torch): a small decoder-only transformer
with fixed-seed weights, shaped by the contract in the service's ``model.py``
(vocabulary, context length, layers, key/value heads and head size, tensor
names; the demo: 4 layers, 8 query heads sharing one key/value head of 64,
``CONTEXT_LENGTH`` positions, byte-level vocabulary), exported as

- ``prefill.onnx``: a whole left-padded prompt batch in; next-token logits and
  every layer's keys and values (``present.{i}.key|value``) out;
- ``model.onnx`` (MODEL_PATH): one token per sequence plus the cached keys and
  values (``past_key_values.{i}.key|value``) in; logits and the grown cache out,
  so each decode step costs one token, not a rerun of the sequence;

sharing one weights file (``model.weights``). The weights are random: the text
is gibberish (nudged towards printable ASCII) but repeatable; the point is a
real model with a real KV cache that the whole service can serve.

    python scripts/make_demo_model.py [--out models/model.onnx]
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from {{ cookiecutter.package_name }}.model import (
    CONTEXT_LENGTH,
    CONTEXT_METADATA,
    HEAD_DIM,
    INPUTS,
    KV_HEADS,
    LAYERS,
    LOGITS,
    PAST,
    PREFILL_FILE,
    PRESENT,
    VOCAB_SIZE,
)

SEED = 20240601
HEADS = 8  # query heads; each group of GROUP shares one of the KV_HEADS key/value heads
GROUP = HEADS // KV_HEADS
DIM = HEADS * HEAD_DIM
FFN = 4 * DIM
WEIGHTS_FILE = "model.weights"


def weight_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes; ``(out, in)`` for linear layers, as torch stores them."""
    shapes: dict[str, tuple[int, ...]] = {
        "embed.weight": (VOCAB_SIZE, DIM),
        "pos_embed.weight": (CONTEXT_LENGTH, DIM),
    }
    for i in range(LAYERS):
        linears = {
            "q": (DIM, DIM),
            "kv": (2 * KV_HEADS * HEAD_DIM, DIM),
            "out": (DIM, DIM),
            "fc1": (FFN, DIM),
            "fc2": (DIM, FFN),
        }
        shapes[f"layers.{i}.norm1.weight"] = shapes[f"layers.{i}.norm1.bias"] = (DIM,)
        shapes[f"layers.{i}.norm2.weight"] = shapes[f"layers.{i}.norm2.bias"] = (DIM,)
        for name, shape in linears.items():
            shapes[f"layers.{i}.{name}.weight"] = shape
            shapes[f"layers.{i}.{name}.bias"] = (shape[0],)
    shapes["norm.weight"] = shapes["norm.bias"] = (DIM,)
    shapes["lm_head.weight"] = (VOCAB_SIZE, DIM)
    shapes["lm_head.bias"] = (VOCAB_SIZE,)
    return shapes


def demo_weight(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One parameter from a per-name seed (order-free: the torch variant makes the same values)."""
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
        std = 1.0 / np.sqrt(shape[1] * 2 * LAYERS)
    else:
        std = 1.0 / np.sqrt(shape[1])
    return (rng.standard_normal(shape) * std).astype(np.float32)


def demo_weights() -> dict[str, np.ndarray]:
    return {name: demo_weight(name, shape) for name, shape in weight_shapes().items()}


class GraphBuilder:
    """Collects nodes and small constants; every node gets a fresh output name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, value: object, dtype: type = np.int64) -> str:
        self._count += 1
        name = f"const_{self._count}"
        self.constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(
        self, op_type: str, inputs: list[str], output: str | None = None, **attributes: object
    ) -> str:
        self._count += 1
        output = output or f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attributes))
        return output

    def linear(self, x: str, prefix: str) -> str:
        return self.op("Add", [self.op("MatMul", [x, f"{prefix}.weight"]), f"{prefix}.bias"])

    def layer_norm(self, x: str, prefix: str) -> str:
        return self.op(
            "LayerNormalization", [x, f"{prefix}.weight", f"{prefix}.bias"], axis=-1, epsilon=1e-5
        )


def build_graph(with_past: bool) -> onnx.GraphProto:
    g = GraphBuilder()
    x = g.op(
        "Add",
        [
            g.op("Gather", ["embed.weight", INPUTS[0]]),
            g.op("Gather", ["pos_embed.weight", INPUTS[2]]),
        ],
    )
    # attention rule, shaped (batch, 1, tokens, total): causal over past + new tokens, padding
    # hidden, and every position may see itself (so padded rows never divide by zero)
    total = g.op("Squeeze", [g.op("Shape", [INPUTS[1]], start=1, end=2)])
    tokens = g.op("Squeeze", [g.op("Shape", [INPUTS[0]], start=1, end=2)])
    key_pos = g.op("Unsqueeze", [g.op("Range", [g.const(0), total, g.const(1)]), g.const([0])])
    query_pos = g.op(
        "Add", [g.op("Range", [g.const(0), tokens, g.const(1)]), g.op("Sub", [total, tokens])]
    )
    query_pos = g.op("Unsqueeze", [query_pos, g.const([1])])
    visible = g.op("Unsqueeze", [g.op("Cast", [INPUTS[1]], to=TensorProto.BOOL), g.const([1, 2])])
    allowed = g.op(
        "Or",
        [
            g.op("And", [g.op("LessOrEqual", [key_pos, query_pos]), visible]),
            g.op("Equal", [key_pos, query_pos]),
        ],
    )
    bias = g.op("Where", [allowed, g.const(0.0, np.float32), g.const(-1e9, np.float32)])
    bias = g.op("Unsqueeze", [bias, g.const([1])])  # (batch, 1, 1, tokens, total)
    total_dim = g.op("Unsqueeze", [total, g.const([0])])
    by_head = g.op("Concat", [g.const([0, 0, GROUP, -1]), total_dim], axis=0)
    rows = g.op("Concat", [g.const([0, 0, -1]), total_dim], axis=0)
    scale = g.const(1.0 / np.sqrt(HEAD_DIM), np.float32)
    for i in range(LAYERS):
        p = f"layers.{i}"
        h = g.layer_norm(x, f"{p}.norm1")
        # the query heads sharing a key/value head are rows of one product with it:
        # (batch, kv_heads, group x tokens, head_dim); query head h reads kv head h // GROUP
        q = g.op("Reshape", [g.linear(h, f"{p}.q"), g.const([0, 0, KV_HEADS, GROUP, HEAD_DIM])])
        q = g.op("Transpose", [q], perm=[0, 2, 3, 1, 4])
        q = g.op("Reshape", [q, g.const([0, 0, -1, HEAD_DIM])])
        kv = g.op("Reshape", [g.linear(h, f"{p}.kv"), g.const([0, 0, 2, KV_HEADS, HEAD_DIM])])
        kv = g.op("Transpose", [kv], perm=[2, 0, 3, 1, 4])  # (2, batch, kv_heads, tokens, head_dim)
        key_names = (PRESENT.format(layer=i, kind="key"), PRESENT.format(layer=i, kind="value"))
        if with_past:
            k = g.op("Gather", [kv, g.const(0)], axis=0)
            v = g.op("Gather", [kv, g.const(1)], axis=0)
            k = g.op("Concat", [PAST.format(layer=i, kind="key"), k], key_names[0], axis=2)
            v = g.op("Concat", [PAST.format(layer=i, kind="value"), v], key_names[1], axis=2)
        else:
            k = g.op("Gather", [kv, g.const(0)], key_names[0], axis=0)
            v = g.op("Gather", [kv, g.const(1)], key_names[1], axis=0)
        scores = g.op(
            "Mul", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])]), scale]
        )
        scores = g.op("Reshape", [scores, by_head])  # (batch, kv_heads, group, tokens, total)
        weights = g.op("Reshape", [g.op("Softmax", [g.op("Add", [scores, bias])], axis=-1), rows])
        attended = g.op("MatMul", [weights, v])
        attended = g.op("Reshape", [attended, g.const([0, 0, GROUP, -1, HEAD_DIM])])
        # (batch, tokens, kv_heads, group, head_dim): query heads back in their order
        attended = g.op("Transpose", [attended], perm=[0, 3, 1, 2, 4])
        attended = g.op("Reshape", [attended, g.const([0, 0, DIM])])
        x = g.op("Add", [x, g.linear(attended, f"{p}.out")])
        h = g.linear(g.layer_norm(x, f"{p}.norm2"), f"{p}.fc1")
        gelu = g.op(
            "Mul",
            [
                g.op("Mul", [h, g.const(0.5, np.float32)]),
                g.op(
                    "Add",
                    [
                        g.const(1.0, np.float32),
                        g.op("Erf", [g.op("Mul", [h, g.const(1 / np.sqrt(2), np.float32)])]),
                    ],
                ),
            ],
        )
        x = g.op("Add", [x, g.linear(gelu, f"{p}.fc2")])
    last = g.op("Gather", [g.layer_norm(x, "norm"), g.const(-1)], axis=1)  # (batch, dim)
    g.op("Add", [g.op("MatMul", [last, "lm_head.weight"]), "lm_head.bias"], LOGITS)

    def info(name: str, dtype: int, shape: list[object]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, dtype, shape)

    inputs = [
        info(INPUTS[0], TensorProto.INT64, ["batch", "tokens"]),
        info(INPUTS[1], TensorProto.INT64, ["batch", "total"]),
        info(INPUTS[2], TensorProto.INT64, ["batch", "tokens"]),
    ]
    outputs = [info(LOGITS, TensorProto.FLOAT, ["batch", VOCAB_SIZE])]
    for i in range(LAYERS):
        for kind in ("key", "value"):
            if with_past:
                inputs.append(
                    info(
                        PAST.format(layer=i, kind=kind),
                        TensorProto.FLOAT,
                        ["batch", KV_HEADS, "past", HEAD_DIM],
                    )
                )
            outputs.append(
                info(
                    PRESENT.format(layer=i, kind=kind),
                    TensorProto.FLOAT,
                    ["batch", KV_HEADS, "total", HEAD_DIM],
                )
            )
    return helper.make_graph(
        g.nodes,
        "demo_lm_decode" if with_past else "demo_lm_prefill",
        inputs,
        outputs,
        initializer=g.constants,
    )


def write_weights(weights: dict[str, np.ndarray], path: Path) -> list[onnx.TensorProto]:
    """Write every weight once, 4 KiB-aligned; return tensors that point into the file."""
    tensors = []
    with path.open("wb") as handle:
        for name, array in weights.items():
            # linear layers multiply as x @ W: store (in, out)
            if array.ndim == 2 and name != "embed.weight" and name != "pos_embed.weight":
                array = np.ascontiguousarray(array.T)
            offset = -handle.tell() % 4096
            handle.write(b"\0" * offset)
            start = handle.tell()
            handle.write(array.tobytes())
            tensor = numpy_helper.from_array(array, name)
            set_external_data(tensor, location=path.name, offset=start, length=array.nbytes)
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            tensors.append(tensor)
    return tensors


def build(out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = write_weights(demo_weights(), out.with_name(WEIGHTS_FILE))
    for path, with_past in ((out, True), (out.with_name(PREFILL_FILE), False)):
        graph = build_graph(with_past)
        graph.initializer.extend(tensors)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_demo_model"
        )
        model.ir_version = 8
        helper.set_model_props(model, {CONTEXT_METADATA: str(CONTEXT_LENGTH)})
        onnx.save(model, path)
        onnx.checker.check_model(str(path), full_check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/model.onnx"))
    args = parser.parse_args()
    build(args.out)
    written = [args.out, args.out.with_name(PREFILL_FILE), args.out.with_name(WEIGHTS_FILE)]
    print("wrote " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
