"""The model: the one file to edit to serve your own.

The service reads only what this module defines:

- ``Model(settings)`` and ``Model.load()``: open the model once at start-up;
- ``tokenizer``: text <-> token ids and the chat template (the contract is in
  ``llm/tokenizer.py``), and ``context_length``: the most tokens, prompt
  plus completion, one sequence may hold;
- ``Model.prefill(prompts)``: whole prompts (lists of token ids) -> next-token
  logits ``(batch, vocab)`` and one KV cache per prompt;
- ``Model.decode(tokens, caches)``: one step: each sequence's last token and
  its cache -> next-token logits and the grown caches.

Both run in the generation engine's thread, never on the event loop. A decode
batch holds whichever sequences are running, so caches of different lengths
arrive together: ``llm/kv_cache.py`` left-pads them into one batch and
splits the result.

The demo is two ONNX graphs built by ``scripts/make_demo_model.py``:
``prefill.onnx`` (prompts in, keys and values out) and ``model.onnx`` at
MODEL_PATH (one token per sequence plus ``past_key_values.{i}.key|value`` in,
``present.{i}.key|value`` out). To serve your own decoder-only model, export
the same pair of graphs (Hugging Face Optimum's decoder / decoder-with-past
exports have this shape), put them at MODEL_PATH and beside it, swap
``ByteTokenizer`` for your tokenizer, and adjust the names below.

On a GPU the caches travel through host memory at every step (numpy in and
out): correct, but for serious GPU serving prefer the torch backend or an
export with an on-device cache (onnxruntime-genai).
"""

from __future__ import annotations

import numpy as np

from .llm.kv_cache import (
    SequenceKV,
    cache_length,
    decode_inputs,
    prefill_inputs,
    split_caches,
    stack_caches,
)
from .llm.tokenizer import ByteTokenizer
from .serving.device import Device
from .serving.onnxruntime_backend import create_session
from .settings import Settings

PREFILL_FILE = "prefill.onnx"  # beside MODEL_PATH


class Model:
    platform = "onnxruntime_onnx"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokenizer = ByteTokenizer()
        self.context_length = 0
        self.device: Device | None = None
        self._layers = 0

    def load(self) -> None:
        self._decode, self.device = create_session(self.settings.model_path, self.settings)
        self._prefill, _ = create_session(
            self.settings.model_path.with_name(PREFILL_FILE), self.settings
        )
        metadata = self._decode.get_modelmeta().custom_metadata_map
        self.context_length = int(metadata["context_length"])
        self._layers = sum(
            1 for i in self._decode.get_inputs() if i.name.startswith("past_key_values.")
        )
        self._layers //= 2
        self._outputs = ["logits"] + [
            f"present.{i}.{kind}" for i in range(self._layers) for kind in ("key", "value")
        ]
        vocab = self._decode.get_outputs()[0].shape[-1]
        if isinstance(vocab, int) and vocab != self.tokenizer.vocab_size:
            raise ValueError(
                f"the model has {vocab} logits but the tokenizer {self.tokenizer.vocab_size} tokens"
            )

    def prefill(self, prompts: list[list[int]]) -> tuple[np.ndarray, list[SequenceKV]]:
        batch = prefill_inputs(prompts)
        outputs = self._prefill.run(
            self._outputs,
            {
                "input_ids": batch.input_ids,
                "attention_mask": batch.attention_mask,
                "position_ids": batch.position_ids,
            },
        )
        return outputs[0], split_caches(self._pairs(outputs), [len(p) for p in prompts])

    def decode(
        self, tokens: list[int], caches: list[SequenceKV]
    ) -> tuple[np.ndarray, list[SequenceKV]]:
        lengths = [cache_length(c) for c in caches]
        batch = decode_inputs(tokens, lengths)
        feed = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "position_ids": batch.position_ids,
        }
        for i, (keys, values) in enumerate(stack_caches(caches)):
            feed[f"past_key_values.{i}.key"] = keys
            feed[f"past_key_values.{i}.value"] = values
        outputs = self._decode.run(self._outputs, feed)
        return outputs[0], split_caches(self._pairs(outputs), [n + 1 for n in lengths])

    def _pairs(self, outputs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(outputs[1 + 2 * i], outputs[2 + 2 * i]) for i in range(self._layers)]
