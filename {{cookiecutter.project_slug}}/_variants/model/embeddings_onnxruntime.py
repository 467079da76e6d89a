"""The model: the one file to edit to serve your own.

The service reads only what this module defines:

- ``Model(settings)`` and ``Model.load()``: open the model and its tokenizer once
  at start-up, and set ``dimensions`` and ``max_input_tokens``;
- ``Model.tokenize(texts)``: strings -> token ids (special tokens included), cut
  at ``max_input_tokens`` and flagged when cut; runs before batching;
- ``Model.predict(sequences)``: a batch of token-id lists -> ``(N, dimensions)``
  float32, L2-normalised; it runs in a worker thread, never on the event loop;
- ``supports_dimensions``: whether OpenAI's ``dimensions`` may shorten vectors
  (only for models trained for it, "Matryoshka" embeddings).

The model directory follows the Hugging Face layout: ``model.onnx`` (MODEL_PATH)
with ``tokenizer.json``, ``config.json`` and, optionally, ``sentence_bert_config.json``
beside it. The graph takes ``input_ids`` and ``attention_mask`` (and
``token_type_ids`` when it has that input) and returns the last hidden state
``(N, L, hidden)``; pooling happens here. The demo model and the real
all-MiniLM-L6-v2 (``scripts/export_minilm_onnx.py``) both fit that contract, as
do encoders exported with Hugging Face Optimum. For a model pooled otherwise
(CLS token, no normalisation), change ``pool`` below.
"""

from __future__ import annotations

import numpy as np

from .embeddings.tokens import Tokens, load_tokenizer, pad, token_limit, tokenize
from .serving.device import Device
from .serving.onnxruntime_backend import create_session
from .settings import Settings

OUTPUT = "last_hidden_state"
PAD_ID = 0  # any valid id: padded positions are masked out


def pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean over the real (unpadded) tokens, then unit length: sentence-transformers' recipe."""
    mask = attention_mask[..., np.newaxis].astype(hidden.dtype)
    mean = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    return (mean / np.maximum(norms, 1e-12)).astype(np.float32)


class Model:
    supports_dimensions = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device: Device | None = None
        self.dimensions = 0
        self.max_input_tokens = 0
        self._session = None
        self._tokenizer = None
        self._input_names: set[str] = set()

    def load(self) -> None:
        folder = self.settings.model_path.parent
        self._session, self.device = create_session(self.settings.model_path, self.settings)
        self._input_names = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._input_names
        if missing:
            raise ValueError(
                f"model has no input(s) {sorted(missing)} (it has {sorted(self._input_names)})"
            )
        outputs = [o.name for o in self._session.get_outputs()]
        if outputs[0] != OUTPUT:
            raise ValueError(f"the model's first output must be {OUTPUT!r} (it has {outputs})")
        self.max_input_tokens = token_limit(folder, self.settings.max_input_tokens)
        self._tokenizer = load_tokenizer(folder / "tokenizer.json", self.max_input_tokens)
        size = self._session.get_outputs()[0].shape[-1]
        if not isinstance(size, int):  # a symbolic dimension: ask the model
            size = self.predict([self.tokenize(["dimension probe"])[0].ids]).shape[1]
        self.dimensions = int(size)

    def tokenize(self, texts: list[str]) -> list[Tokens]:
        return tokenize(self._tokenizer, texts)

    def predict(self, sequences: list[list[int]]) -> np.ndarray:
        input_ids, attention_mask = pad(sequences, PAD_ID)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        hidden = self._session.run([OUTPUT], feed)[0]
        return pool(hidden, attention_mask)
