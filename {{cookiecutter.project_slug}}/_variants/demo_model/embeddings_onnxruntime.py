"""Build the demo text encoder as an ONNX file, offline and deterministically.

Uses the ``onnx`` and ``tokenizers`` packages alone (no torch): a 2-layer BERT
(as wide as ``Model.dimensions``) with fixed-seed weights and a WordPiece tokenizer whose
vocabulary is written out below, saved in the Hugging Face layout the service
reads: ``model.onnx``, ``tokenizer.json`` and ``config.json``. Its vectors are
meaningless but repeatable; the point is a real encoder with real cost that the
whole service can serve. ``build_graph`` also turns the real all-MiniLM-L6-v2
into ONNX (``scripts/export_minilm_onnx.py``).

    python scripts/make_demo_model.py [--out models/model.onnx]
"""

from __future__ import annotations

import argparse
import json
import math
import string
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from {{ cookiecutter.package_name }}.model import Model

SEED = 20240601
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = """
the of and to a in is it you that he was for on are with as i his they be at one have this
from or had by word but not what all were we when your can said there use an each which she do
how their if will up other about out many then them these so some her would make like him into
time has look two more write go see number no way could people my than first water been call
who oil its now find long down day did get come made may part over new sound take only little
work know place year live me back give most very after thing our just name good sentence man
think say great where help through much before line right too mean old any same tell boy follow
came want show also around form three small set put end does another well large must big even
such because turn here why ask went men read need land different home us move try kind hand
picture again change off play spell air away animal house point page letter mother answer found
study still learn should world high every near add food between own below country plant last
school father keep tree never start city earth eye light thought head under story saw left few
while along might close something seem next hard open example begin life always those both paper
together got group often run important until children side feet car mile night walk white sea
began grow took river four carry state once book hear stop without second later miss idea enough
eat face watch far real almost let above girl sometimes mountain cut young talk soon list song
being leave family model service vector search query document text embedding data cat dog
""".split()  # noqa: SIM905 (a word list reads best as text)
SUFFIXES = ["s", "es", "ed", "ing", "er", "est", "ly", "ion", "al", "ment", "ness"]
CONFIG: dict[str, Any] = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": Model.dimensions,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 512,
    "hidden_act": "gelu",
    "max_position_embeddings": Model.max_input_tokens,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}


def vocabulary() -> list[str]:
    """Special tokens, single characters (word-initial and ``##`` continuation), words, suffixes."""
    pieces = [
        *SPECIAL_TOKENS,
        *string.ascii_lowercase,
        *string.digits,
        *string.punctuation,
        *(f"##{c}" for c in string.ascii_lowercase + string.digits),
        *WORDS,
        *(f"##{s}" for s in SUFFIXES),
    ]
    return list(dict.fromkeys(pieces))


def build_tokenizer(vocab: list[str]) -> Tokenizer:
    """A BERT-style WordPiece tokenizer: lowercases, strips accents, adds [CLS] ... [SEP]."""
    ids = {token: index for index, token in enumerate(vocab)}
    tokenizer = Tokenizer(WordPiece(ids, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def demo_weights(config: dict[str, Any]) -> dict[str, np.ndarray]:
    """Fixed-seed weights named as in Hugging Face's BertModel (the torch variant uses the same)."""
    rng = np.random.default_rng(SEED)
    hidden, inner = config["hidden_size"], config["intermediate_size"]

    def normal(*shape: int, std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def linear(name: str, fan_out: int, fan_in: int) -> None:
        weights[f"{name}.weight"] = normal(fan_out, fan_in, std=1 / math.sqrt(fan_in))
        weights[f"{name}.bias"] = normal(fan_out, std=0.02)

    def layer_norm(name: str) -> None:
        weights[f"{name}.weight"] = np.ones(hidden, dtype=np.float32)
        weights[f"{name}.bias"] = np.zeros(hidden, dtype=np.float32)

    weights: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": normal(config["vocab_size"], hidden, std=1.0),
        "embeddings.position_embeddings.weight": normal(
            config["max_position_embeddings"], hidden, std=0.1
        ),
        "embeddings.token_type_embeddings.weight": normal(
            config["type_vocab_size"], hidden, std=0.1
        ),
    }
    layer_norm("embeddings.LayerNorm")
    for index in range(config["num_hidden_layers"]):
        prefix = f"encoder.layer.{index}"
        for part in ("query", "key", "value"):
            linear(f"{prefix}.attention.self.{part}", hidden, hidden)
        linear(f"{prefix}.attention.output.dense", hidden, hidden)
        layer_norm(f"{prefix}.attention.output.LayerNorm")
        linear(f"{prefix}.intermediate.dense", inner, hidden)
        linear(f"{prefix}.output.dense", hidden, inner)
        layer_norm(f"{prefix}.output.LayerNorm")
    return weights


class _Graph:
    """Collects nodes and initializers; every op returns the name of its output."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        output = f"{op_type.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers[name] = array
        return name

    def linear(self, x: str, name: str) -> str:
        """x @ W.T + b, with W stored transposed once here instead of at every call."""
        weight = self.const(
            f"{name}.weight_t", np.ascontiguousarray(self.weights[f"{name}.weight"].T)
        )
        return self.op(
            "Add",
            self.op("MatMul", x, weight),
            self.const(f"{name}.bias", self.weights[f"{name}.bias"]),
        )

    def layer_norm(self, x: str, name: str, eps: float) -> str:
        scale = self.const(f"{name}.weight", self.weights[f"{name}.weight"])
        bias = self.const(f"{name}.bias", self.weights[f"{name}.bias"])
        return self.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=eps)


def build_graph(weights: dict[str, np.ndarray], config: dict[str, Any]) -> onnx.ModelProto:
    """A BERT encoder: (token ids, attention mask) -> token states (batch, sequence, hidden).

    The tensors are named as ``Model`` declares (``input_names``, ``output_name``).
    """
    input_ids, attention_mask = Model.input_names
    hidden, heads, eps = (
        config["hidden_size"],
        config["num_attention_heads"],
        config["layer_norm_eps"],
    )
    g = _Graph(weights)
    i64 = lambda *values: np.array(values, dtype=np.int64)  # noqa: E731
    # embeddings: word + position + token type 0, then LayerNorm
    words = g.op(
        "Gather",
        g.const("embeddings.word_embeddings.weight", weights["embeddings.word_embeddings.weight"]),
        input_ids,
    )
    length = g.op(
        "Gather", g.op("Shape", input_ids), g.const("one", np.array(1, dtype=np.int64)), axis=0
    )
    positions = g.op("Range", g.const("zero", np.array(0, dtype=np.int64)), length, "one")
    position_table = g.const(
        "embeddings.position_embeddings.weight", weights["embeddings.position_embeddings.weight"]
    )
    token_type = g.const("token_type_0", weights["embeddings.token_type_embeddings.weight"][0])
    x = g.op("Add", g.op("Add", words, g.op("Gather", position_table, positions)), token_type)
    x = g.layer_norm(x, "embeddings.LayerNorm", eps)
    # attention bias, (batch, 1, 1, sequence): 0 for a real token, -10000 for padding
    mask = g.op("Cast", attention_mask, to=TensorProto.FLOAT)
    bias = g.op(
        "Mul",
        g.op("Sub", mask, g.const("one_f", np.array(1.0, dtype=np.float32))),
        g.const("big", np.array(10000.0, dtype=np.float32)),
    )
    bias = g.op("Unsqueeze", bias, g.const("axes_1_2", i64(1, 2)))
    split_heads = g.const("split_heads", i64(0, 0, heads, hidden // heads))
    merge_heads = g.const("merge_heads", i64(0, 0, hidden))
    scale = g.const("scale", np.array(1 / math.sqrt(hidden // heads), dtype=np.float32))
    sqrt_half = g.const("sqrt_half", np.array(1 / math.sqrt(2), dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))
    for index in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{index}"

        def project(part: str, perm: list[int], x: str = x, p: str = p) -> str:
            return g.op(
                "Transpose",
                g.op("Reshape", g.linear(x, f"{p}.attention.self.{part}"), split_heads),
                perm=perm,
            )

        query = project("query", [0, 2, 1, 3])  # (batch, heads, sequence, head_size)
        key = project("key", [0, 2, 3, 1])  # (batch, heads, head_size, sequence)
        value = project("value", [0, 2, 1, 3])
        scores = g.op("Add", g.op("Mul", g.op("MatMul", query, key), scale), bias)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), value)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        x = g.layer_norm(
            g.op("Add", g.linear(context, f"{p}.attention.output.dense"), x),
            f"{p}.attention.output.LayerNorm",
            eps,
        )
        inner = g.linear(x, f"{p}.intermediate.dense")
        # exact GELU: 0.5 * a * (1 + erf(a / sqrt(2)))
        gelu = g.op(
            "Mul",
            g.op("Mul", inner, half),
            g.op("Add", g.op("Erf", g.op("Mul", inner, sqrt_half)), "one_f"),
        )
        x = g.layer_norm(
            g.op("Add", g.linear(gelu, f"{p}.output.dense"), x), f"{p}.output.LayerNorm", eps
        )
    g.nodes.append(helper.make_node("Identity", [x], [Model.output_name]))
    graph = helper.make_graph(
        g.nodes,
        "bert_encoder",
        [
            helper.make_tensor_value_info(input_ids, TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(attention_mask, TensorProto.INT64, ["batch", "sequence"]),
        ],
        [
            helper.make_tensor_value_info(
                Model.output_name, TensorProto.FLOAT, ["batch", "sequence", hidden]
            )
        ],
        initializer=[
            numpy_helper.from_array(array, name) for name, array in g.initializers.items()
        ],
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
    vocab = vocabulary()
    config = {**CONFIG, "vocab_size": len(vocab)}
    onnx.save(build_graph(demo_weights(config), config), args.out)
    build_tokenizer(vocab).save(str(args.out.with_name(Model.tokenizer_file)))
    args.out.with_name("config.json").write_text(
        json.dumps(config, indent=2) + "\n", encoding="utf-8"
    )
    print(f"wrote {args.out}, {Model.tokenizer_file} and config.json beside it")


if __name__ == "__main__":
    main()
