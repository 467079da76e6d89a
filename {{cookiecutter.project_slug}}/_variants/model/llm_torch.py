"""The model: the one file to edit to serve your own.

The contract, what the service reads from this module and nothing else:

- ``VOCAB_SIZE`` and ``CONTEXT_LENGTH`` below: the logits per position and the
  most tokens, prompt plus completion, one sequence may hold. The demo
  builder and the tests read them; ``load()`` checks the model against them
  and fails start-up with one line that names the fix;
- ``Model(settings)`` and ``Model.load()``: build the network and load its
  weights once at start-up (safetensors only: pickled checkpoints are
  refused), setting ``tokenizer`` (text <-> token ids, the end-of-sequence
  ids and the chat template; the protocol is in ``llm/tokenizer.py``);
- ``Model.network()``: the network the demo's weights belong to;
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
splits the result, on the model's device.

MODEL_PATH is either the demo's ``.safetensors`` weights for ``DemoLM`` below
(built by ``scripts/make_demo_model.py``), or a local Hugging Face causal-LM
folder (``config.json``, safetensors weights, tokenizer files), loaded by
``llm/hf_causal_lm.py`` with transformers (``pip install ".[hf]"``): local
files only, never remote code. For a folder, set ``VOCAB_SIZE`` to its
``config.json`` ``vocab_size`` and ``CONTEXT_LENGTH`` to at most its maximum
positions (``max_position_embeddings`` or ``n_positions``); its tokenizer and
chat template come from the folder. To serve another architecture, replace
``DemoLM`` with your network (and ``network()``): ``forward(input_ids,
attention_mask, position_ids, past)`` returning the last position's logits and
each layer's ``(keys, values)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from .llm.contract import check_context_length, check_vocab_size
from .llm.kv_cache import (
    SequenceKV,
    cache_length,
    decode_inputs,
    extend_inputs,
    prefill_inputs,
    split_caches,
    split_extended,
    stack_caches,
)
from .llm.tokenizer import ByteTokenizer, Tokenizer
from .serving.device import Device
from .serving.torch_backend import (
    compute_dtype,
    load_weights,
    require_weights,
    select_device,
    set_compute_threads,
)
from .settings import Settings

# The contract: logits per position, and the most tokens one sequence may hold.
VOCAB_SIZE = ByteTokenizer.vocab_size  # 256 bytes + <|endoftext|>, <|im_start|>, <|im_end|>
CONTEXT_LENGTH = 1024  # room for a conversation with tools listed in it

# The demo network (DemoLM below); a Hugging Face folder brings its own config.
DIM = 512
LAYERS = 4
HEADS = 8
KV_HEADS = 1  # multi-query attention: a small KV cache per token
HEAD_DIM = DIM // HEADS
FFN = 4 * DIM

LayerKV = tuple[torch.Tensor, torch.Tensor]


class Block(nn.Module):
    """Pre-norm transformer block: attention over past + new tokens, then an MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM)
        self.q = nn.Linear(DIM, DIM)
        self.kv = nn.Linear(DIM, 2 * KV_HEADS * HEAD_DIM)
        self.out = nn.Linear(DIM, DIM)
        self.norm2 = nn.LayerNorm(DIM)
        self.fc1 = nn.Linear(DIM, FFN)
        self.fc2 = nn.Linear(FFN, DIM)

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, past: LayerKV | None
    ) -> tuple[torch.Tensor, LayerKV]:
        batch, tokens, _ = x.shape
        h = self.norm1(x)
        q = self.q(h).view(batch, tokens, HEADS, HEAD_DIM).transpose(1, 2)
        k, v = self.kv(h).view(batch, tokens, 2, KV_HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, tokens, DIM))
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return x, (k, v)


class DemoLM(nn.Module):
    """A small decoder-only transformer with learned positions and a KV cache."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, DIM)
        self.pos_embed = nn.Embedding(CONTEXT_LENGTH, DIM)
        self.layers = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = nn.LayerNorm(DIM)
        self.lm_head = nn.Linear(DIM, VOCAB_SIZE)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: list[LayerKV] | None = None,
    ) -> tuple[torch.Tensor, list[LayerKV]]:
        x = self.embed(input_ids) + self.pos_embed(position_ids)
        # causal over past + new tokens, padding hidden; every position sees itself,
        # so a padded row never attends to nothing
        total, tokens = attention_mask.shape[1], input_ids.shape[1]
        key_pos = torch.arange(total, device=x.device)
        query_pos = torch.arange(total - tokens, total, device=x.device)[:, None]
        visible = attention_mask.bool()[:, None, None, :]
        allowed = ((key_pos <= query_pos) & visible) | (key_pos == query_pos)
        present = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, allowed, past[i] if past is not None else None)
            present.append(kv)
        return self.lm_head(self.norm(x[:, -1])), present


class Model:
    platform = "pytorch_safetensors"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.vocab_size = VOCAB_SIZE
        self.context_length = CONTEXT_LENGTH
        self.tokenizer: Tokenizer = ByteTokenizer()
        self.device: Device | None = None
        self._net: nn.Module | None = None

    @staticmethod
    def network() -> nn.Module:
        """The network the demo's weights belong to (``scripts/make_demo_model.py`` fills it)."""
        return DemoLM()

    def load(self) -> None:
        self.device = select_device(self.settings)
        dtype = compute_dtype(self.settings, self.device)
        set_compute_threads(self.settings)
        path = self.settings.model_path
        if path.is_dir():  # a Hugging Face causal-LM folder
            from .llm.hf_causal_lm import load_causal_lm

            self._net, self.tokenizer, vocab, maximum = load_causal_lm(path, self.device, dtype)
            check_vocab_size(VOCAB_SIZE, vocab, f"{path}/config.json")
            check_context_length(CONTEXT_LENGTH, maximum, f"{path}/config.json")
        else:
            # DemoLM's token and position tables, checked before load_state_dict's long report
            shapes = _weight_shapes(require_weights(path))
            if "embed.weight" in shapes:
                check_vocab_size(VOCAB_SIZE, shapes["embed.weight"][0], str(path))
            positions = shapes.get("pos_embed.weight", (None,))[0]
            check_context_length(CONTEXT_LENGTH, positions, str(path))
            self._net = load_weights(
                self.network(),
                path,
                self.device,
                dtype,
                fix="save the weights of this network (make model builds the demo's)",
            )

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]]) -> tuple[np.ndarray, list[SequenceKV]]:
        batch = prefill_inputs(prompts)
        logits, present = self._net(*self._tensors(batch))
        return _numpy(logits), split_caches(present, [len(p) for p in prompts])

    @torch.inference_mode()
    def decode(
        self, tokens: list[int], caches: list[SequenceKV]
    ) -> tuple[np.ndarray, list[SequenceKV]]:
        lengths = [cache_length(c) for c in caches]
        batch = decode_inputs(tokens, lengths)
        logits, present = self._net(*self._tensors(batch), stack_caches(caches))
        return _numpy(logits), split_caches(present, [n + 1 for n in lengths])

    @torch.inference_mode()
    def extend(
        self, tokens: list[list[int]], caches: list[SequenceKV]
    ) -> tuple[np.ndarray, list[SequenceKV]]:
        lengths = [cache_length(c) for c in caches]
        batch = extend_inputs(tokens, lengths)
        logits, present = self._net(*self._tensors(batch), stack_caches(caches))
        return _numpy(logits), split_extended(present, lengths, [len(t) for t in tokens])

    def _tensors(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device = str(self.device)
        return (
            torch.from_numpy(batch.input_ids).to(device),
            torch.from_numpy(batch.attention_mask).to(device),
            torch.from_numpy(batch.position_ids).to(device),
        )


def _numpy(logits: torch.Tensor) -> np.ndarray:
    return logits.float().cpu().numpy()


def _weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, without reading the weights."""
    with safe_open(str(path), framework="pt") as weights:
        return {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}  # noqa: SIM118
