"""The model: the one file to edit to serve your own.

The contract, what the service reads from this module and nothing else:

- the constants below: the vocabulary (logits per position), the context
  length, the KV-cache layout (layers, key/value heads, head size) and the
  graphs' tensor names. The demo builder and the tests read them; ``load()``
  checks both graphs against them (names, element types, dynamic axes, sizes)
  and fails start-up with one line that names the fix;
- ``Model(settings)`` and ``Model.load()``: open the model once at start-up;
  ``tokenizer``: text <-> token ids, the end-of-sequence ids and the chat
  template (the protocol is in ``llm/tokenizer.py``);
- ``Model.prefill(prompts)``: whole prompts (lists of token ids) -> next-token
  logits ``(batch, VOCAB_SIZE)`` and one KV cache per prompt;
- ``Model.decode(tokens, caches)``: one step: each sequence's last token and
  its cache -> next-token logits and the grown caches. It must not change
  the caches it is given in place: the n choices of one prompt start from
  the same prefill cache (``llm/kv_cache.py`` returns new windows);
- ``Model.extend(tokens, caches)`` (optional: without it, no prefix caching):
  each prompt's tokens after a cached prefix, and that prefix's cache ->
  next-token logits and the caches of the whole prompts; start-up checks that
  it answers as ``prefill`` of the whole prompt does.

They run in the generation engine's thread, never on the event loop. A decode
batch holds whichever sequences are running, so caches of different lengths
arrive together: ``llm/kv_cache.py`` left-pads them into one batch and
splits the result.

The demo is two ONNX graphs built by ``scripts/make_demo_model.py``:
``prefill.onnx`` (prompts in, keys and values out) and ``model.onnx`` at
MODEL_PATH (new tokens plus ``past_key_values.{i}.key|value`` in,
``present.{i}.key|value`` out, the logits of the last position only: one
token per sequence in ``decode``, a prompt's remainder in ``extend``). To
serve your own decoder-only model, export the same pair of graphs, put them
at MODEL_PATH and beside it, set the constants below to your model's, and
swap ``ByteTokenizer`` for your tokenizer if it has another vocabulary.
Hugging Face Optimum's decoder / decoder-with-past exports have these inputs
and caches but logits for every position: take the last one in ``prefill``
and ``decode`` and change the ``LOGITS`` axes in ``graph_outputs``.

On a GPU the caches travel through host memory at every step (numpy in and
out): correct, but for serious GPU serving prefer the torch backend or an
export with an on-device cache (onnxruntime-genai).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from .llm.contract import Axis, ContractError, check_context_length, check_tensors
from .llm.kv_cache import (
    SequenceKV,
    TokenBatch,
    cache_length,
    decode_inputs,
    extend_inputs,
    prefill_inputs,
    split_caches,
    split_extended,
    stack_caches,
)
from .llm.tokenizer import ByteTokenizer
from .serving.device import Device
from .serving.onnxruntime_backend import create_session
from .settings import Settings

# The contract: logits per position, and the most tokens one sequence may hold.
VOCAB_SIZE = ByteTokenizer.vocab_size  # 256 bytes + <|endoftext|>, <|im_start|>, <|im_end|>
CONTEXT_LENGTH = 1024  # room for a conversation with tools listed in it
# The KV cache: per layer, keys and values shaped (batch, KV_HEADS, positions, HEAD_DIM).
LAYERS = 4
KV_HEADS = 1
HEAD_DIM = 64
KV_DTYPE = "tensor(float)"
# The graphs: token inputs, both graphs; the cache goes in as PAST (decode graph) and
# comes out as PRESENT (both); {layer} counts from 0, {kind} is "key" or "value".
INPUTS = ("input_ids", "attention_mask", "position_ids")
LOGITS = "logits"
PAST = "past_key_values.{layer}.{kind}"
PRESENT = "present.{layer}.{kind}"
PREFILL_FILE = "prefill.onnx"  # beside MODEL_PATH, which is the decode graph
# ONNX metadata the export may carry: the most positions the model was built for.
CONTEXT_METADATA = "context_length"


def cache_names(pattern: str) -> list[str]:
    return [pattern.format(layer=i, kind=kind) for i in range(LAYERS) for kind in ("key", "value")]


def graph_inputs(with_past: bool) -> dict[str, tuple[str, list[Axis]]]:
    """The contract's inputs: name -> (element type, axes)."""
    tokens: dict[str, tuple[str, list[Axis]]] = {
        INPUTS[0]: ("tensor(int64)", ["batch", "tokens"]),
        INPUTS[1]: ("tensor(int64)", ["batch", "total"]),
        INPUTS[2]: ("tensor(int64)", ["batch", "tokens"]),
    }
    if with_past:
        tokens |= {name: (KV_DTYPE, _kv_axes("past")) for name in cache_names(PAST)}
    return tokens


def graph_outputs() -> dict[str, tuple[str, list[Axis]]]:
    outputs: dict[str, tuple[str, list[Axis]]] = {
        LOGITS: ("tensor(float)", ["batch", ("VOCAB_SIZE", VOCAB_SIZE)])
    }
    return outputs | {name: (KV_DTYPE, _kv_axes("total")) for name in cache_names(PRESENT)}


def _kv_axes(positions: str) -> list[Axis]:
    return ["batch", ("KV_HEADS", KV_HEADS), positions, ("HEAD_DIM", HEAD_DIM)]


class Model:
    platform = "onnxruntime_onnx"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.vocab_size = VOCAB_SIZE
        self.context_length = CONTEXT_LENGTH
        self.tokenizer = ByteTokenizer()
        self.device: Device | None = None
        self._outputs = [LOGITS, *cache_names(PRESENT)]

    def load(self) -> None:
        decode_path = self.settings.model_path
        prefill_path = decode_path.with_name(PREFILL_FILE)
        if decode_path.is_file() and not prefill_path.is_file():
            raise FileNotFoundError(
                f"{prefill_path} does not exist: export the prefill graph (no past inputs) "
                "beside the decode graph"
            )
        self._decode, self.device = create_session(decode_path, self.settings)
        self._prefill, _ = create_session(prefill_path, self.settings)
        for session, path, with_past in (
            (self._decode, decode_path, True),
            (self._prefill, prefill_path, False),
        ):
            _check_graph(session, path.name, with_past)

    def prefill(self, prompts: list[list[int]]) -> tuple[np.ndarray, list[SequenceKV]]:
        batch = prefill_inputs(prompts)
        feed = _token_feed(batch)
        outputs = self._prefill.run(self._outputs, feed)
        return outputs[0], split_caches(_pairs(outputs), [len(p) for p in prompts])

    def decode(
        self, tokens: list[int], caches: list[SequenceKV]
    ) -> tuple[np.ndarray, list[SequenceKV]]:
        lengths = [cache_length(c) for c in caches]
        outputs = self._run_with_past(decode_inputs(tokens, lengths), caches)
        return outputs[0], split_caches(_pairs(outputs), [n + 1 for n in lengths])

    def extend(
        self, tokens: list[list[int]], caches: list[SequenceKV]
    ) -> tuple[np.ndarray, list[SequenceKV]]:
        lengths = [cache_length(c) for c in caches]
        outputs = self._run_with_past(extend_inputs(tokens, lengths), caches)
        return outputs[0], split_extended(_pairs(outputs), lengths, [len(t) for t in tokens])

    def _run_with_past(self, batch: TokenBatch, caches: list[SequenceKV]) -> list[np.ndarray]:
        feed = _token_feed(batch)
        names = cache_names(PAST)
        for i, (keys, values) in enumerate(stack_caches(caches)):
            feed[names[2 * i]] = keys
            feed[names[2 * i + 1]] = values
        return self._decode.run(self._outputs, feed)


def _token_feed(batch: TokenBatch) -> dict[str, np.ndarray]:
    arrays = (batch.input_ids, batch.attention_mask, batch.position_ids)
    return dict(zip(INPUTS, arrays, strict=True))


def _pairs(outputs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(outputs[1 + 2 * i], outputs[2 + 2 * i]) for i in range(LAYERS)]


def _check_graph(session: ort.InferenceSession, where: str, with_past: bool) -> None:
    """The graph's tensors and its context metadata against the constants above."""
    past = [i.name for i in session.get_inputs() if i.name.startswith(PAST.split("{")[0])]
    if with_past and past and len(past) != 2 * LAYERS:
        raise ContractError(
            f"{where} has {len(past) // 2} layers of past keys and values but model.py "
            f"declares LAYERS = {LAYERS}: set LAYERS = {len(past) // 2}"
        )
    check_tensors(where, "input", session.get_inputs(), graph_inputs(with_past))
    check_tensors(where, "output", session.get_outputs(), graph_outputs())
    maximum = session.get_modelmeta().custom_metadata_map.get(CONTEXT_METADATA)
    check_context_length(CONTEXT_LENGTH, int(maximum) if maximum else None, where)
