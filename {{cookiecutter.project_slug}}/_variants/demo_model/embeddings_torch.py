"""Build the demo text encoder as safetensors weights, offline and deterministically.

The network is ``BertEncoder`` from the service's ``model.py`` (a 2-layer BERT
as wide as ``Model.dimensions``) with fixed-seed weights, saved with safetensors (never pickle)
in the Hugging Face layout the service reads: ``model.safetensors``,
``tokenizer.json`` (a WordPiece tokenizer whose vocabulary is written out below)
and ``config.json``. Its vectors are meaningless but repeatable; the point is a
real encoder with real cost that the whole service can serve.

    python scripts/make_demo_model.py [--out models/model.safetensors]
"""

from __future__ import annotations

import argparse
import json
import math
import string
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from {{ cookiecutter.package_name }}.model import BertEncoder, Model

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
    """Fixed-seed weights named as in Hugging Face's BertModel (the same as onnxruntime's demo)."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/model.safetensors"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    config = {**CONFIG, "vocab_size": len(vocab)}
    weights = {name: torch.from_numpy(array) for name, array in demo_weights(config).items()}
    BertEncoder(config).load_state_dict(weights, strict=True)  # names and shapes match the network
    save_file(weights, str(args.out))
    build_tokenizer(vocab).save(str(args.out.with_name(Model.tokenizer_file)))
    args.out.with_name("config.json").write_text(
        json.dumps(config, indent=2) + "\n", encoding="utf-8"
    )
    print(f"wrote {args.out}, {Model.tokenizer_file} and config.json beside it")


if __name__ == "__main__":
    main()
