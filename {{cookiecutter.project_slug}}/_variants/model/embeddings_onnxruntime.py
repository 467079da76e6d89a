"""The model: the one file to edit to serve your own.

The class attributes of ``Model`` are the contract: what the model is. The
service, its tests, warmup and the demo-model builder read them from here, and
``Model.load`` checks the model on disk against them, failing start-up with one
line that says what to change:

- ``dimensions``: the length of each vector (the graph's last output axis);
- ``max_input_tokens``: the longest input, [CLS]/[SEP] included (at most the
  model's position embeddings; MAX_INPUT_TOKENS may lower it, never raise it);
- ``tokenizer_file``: the tokenizer, in Hugging Face ``tokenizers`` format,
  beside ``MODEL_PATH``;
- ``input_names`` / ``output_name``: the graph's tensors; it takes token ids and
  an attention mask (and ``token_type_ids`` when it has that input) and returns
  the last hidden state ``(N, L, dimensions)``;
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

The methods the service calls: ``load()`` once at start-up; ``tokenize(texts)``
(strings -> token ids, cut at ``max_input_tokens`` and flagged when cut; runs
before batching); ``predict(sequences)`` (a batch of token-id lists ->
``(N, dimensions)`` float32; it runs in a worker thread, never on the event loop).

The model directory follows the Hugging Face layout: ``model.onnx`` (MODEL_PATH)
with ``tokenizer.json`` and, optionally, ``config.json`` beside it (its
``hidden_size``, ``max_position_embeddings`` and ``vocab_size`` are checked too).
The demo model and the real all-MiniLM-L6-v2 (``scripts/export_minilm_onnx.py``;
set ``dimensions = 384`` and ``max_input_tokens = 256``) both fit, as do encoders
exported with Hugging Face Optimum. See "Serve your own model" in the README.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

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
from .serving.onnxruntime_backend import create_session
from .settings import Settings

PAD_ID = 0  # any valid id: padded positions are masked out


class Model:
    # --- the contract: what the model is ------------------------------------------
    dimensions = 128
    max_input_tokens = 128
    tokenizer_file = "tokenizer.json"
    input_names = ("input_ids", "attention_mask")
    output_name = "last_hidden_state"
    pooling: Literal["mean", "cls"] = "mean"
    normalize = True
    matryoshka_dimensions: tuple[int, ...] = (32, 64)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device: Device | None = None
        # what this instance serves: the declared limit, or MAX_INPUT_TOKENS when lower
        self.max_input_tokens = input_limit(type(self).max_input_tokens, settings.max_input_tokens)
        self.vocab_size = 0  # set by load()
        self._session = None
        self._tokenizer = None
        self._token_types = False

    def load(self) -> None:
        folder = self.settings.model_path.parent
        config = read_config(folder)
        check_config(config, self.dimensions, type(self).max_input_tokens)
        check_matryoshka(self.matryoshka_dimensions, self.dimensions)
        self._session, self.device = create_session(self.settings.model_path, self.settings)
        self._check_graph()
        self._tokenizer = load_tokenizer(
            folder / self.tokenizer_file, self.max_input_tokens, config.get("vocab_size")
        )
        self.vocab_size = vocabulary_size(config, self._tokenizer)
        # the longest input the service sends, in a batch of two: the graph must take both
        longest = probe_ids(self._tokenizer, type(self).max_input_tokens)
        try:
            hidden, mask = self._run([longest, longest[:2]])
        except Exception as exc:  # onnxruntime's own error, cut to its first line
            reason = str(exc).strip().splitlines()[0][:200]
            raise ContractError(
                f"the model fails on a {len(longest)}-token input ({reason}): set "
                "Model.max_input_tokens to what it takes (its position embeddings)"
            ) from None
        if hidden.ndim != 3:
            raise ContractError(
                f"output {self.output_name!r} has shape {hidden.shape}, not (batch, tokens, "
                "dimensions): export the token states (pooling happens in model.py)"
            )
        check_vectors(pool(hidden, mask, self.pooling, self.normalize), self.dimensions)

    def _check_graph(self) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ContractError(
                f"the graph has no input {missing[0]!r} (it has {sorted(inputs)}): set "
                "Model.input_names to its token-id and attention-mask inputs"
            )
        extra = set(inputs) - {*self.input_names, "token_type_ids"}
        if extra:
            raise ContractError(
                f"the graph takes inputs model.py does not feed: {sorted(extra)}; "
                "export it with token ids and an attention mask only"
            )
        if self.output_name not in outputs:
            raise ContractError(
                f"the graph has no output {self.output_name!r} (it has {outputs}): set "
                "Model.output_name to its last-hidden-state output"
            )
        for name in self.input_names:
            shape = inputs[name].shape
            if len(shape) != 2 or any(isinstance(axis, int) for axis in shape):
                raise ContractError(
                    f"input {name!r} has shape {shape}: export with dynamic batch and "
                    "sequence axes (dynamic_axes / dynamic_shapes)"
                )
        self._token_types = "token_type_ids" in inputs

    def tokenize(self, texts: list[str]) -> list[Tokens]:
        return tokenize(self._tokenizer, texts)

    def predict(self, sequences: list[list[int]]) -> np.ndarray:
        hidden, attention_mask = self._run(sequences)
        return pool(hidden, attention_mask, self.pooling, self.normalize)

    def _run(self, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The graph's token states ``(N, L, D)`` and the attention mask it was given."""
        input_ids, attention_mask = pad(sequences, PAD_ID)
        ids_name, mask_name = self.input_names
        feed = {ids_name: input_ids, mask_name: attention_mask}
        if self._token_types:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        return self._session.run([self.output_name], feed)[0], attention_mask


def pool(
    hidden: np.ndarray, attention_mask: np.ndarray, pooling: str, normalize: bool
) -> np.ndarray:
    """Token states ``(N, L, D)`` -> one vector per input ``(N, D)``.

    ``mean``: the mean over the real (unpadded) tokens, sentence-transformers'
    recipe; ``cls``: the first token's state. ``normalize``: unit length.
    """
    if pooling == "cls":
        vectors = hidden[:, 0]
    else:
        mask = attention_mask[..., np.newaxis].astype(hidden.dtype)
        vectors = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    if normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors.astype(np.float32)
