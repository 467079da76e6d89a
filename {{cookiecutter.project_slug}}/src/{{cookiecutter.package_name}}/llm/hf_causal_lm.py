"""Serve a local Hugging Face causal language model (``pip install ".[hf]"``).

MODEL_PATH names a folder as ``save_pretrained`` writes it: ``config.json``,
safetensors weights and the tokenizer files. Loading never touches the
network (``local_files_only``), never runs code shipped with the model
(``trust_remote_code=False``) and refuses pickled weights
(``use_safetensors=True``).

The model is wrapped to the demo network's calling convention, so
``model.py`` drives either the same way: left-padded ``input_ids``,
``attention_mask`` and ``position_ids`` plus each layer's past
``(keys, values)`` in; the last position's logits and the grown keys and
values out. Models whose cache is not one plain key/value pair per layer
(sliding-window or hybrid attention) are refused at load time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import llguidance
import torch
from torch import nn

from ..serving.device import Device
from ..serving.errors import InvalidInput

logger = logging.getLogger(__name__)

LayerKV = tuple[torch.Tensor, torch.Tensor]


class HuggingFaceTokenizer:
    """A ``transformers`` tokenizer behind the service's tokenizer contract."""

    def __init__(self, tokenizer, eos_token_ids: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self.eos_token_ids = frozenset(eos_token_ids)

    def encode(self, text: str) -> list[int]:
        # with the tokenizer's own special tokens (a BOS for Llama-style models)
        return list(self._tokenizer(text)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)

    def grammar_tokenizer(self, vocab_size: int) -> llguidance.LLTokenizer:
        """The vocabulary for structured outputs, read by llguidance from the fast tokenizer."""
        import llguidance.hf  # imports transformers, as this module's loader does

        return llguidance.hf.from_tokenizer(
            self._tokenizer, n_vocab=vocab_size, eos_token=sorted(self.eos_token_ids)
        )

    @property
    def supports_tools(self) -> bool:
        """The chat template renders tools itself (it reads the ``tools`` variable)."""
        return "tools" in (self._tokenizer.chat_template or "")

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        if not self._tokenizer.chat_template:
            raise InvalidInput(
                "this model has no chat template; use /v1/completions", param="messages"
            )
        text = self._tokenizer.apply_chat_template(
            [dict(m) for m in messages], tools=tools, add_generation_prompt=True, tokenize=False
        )
        # the template already holds the special tokens it needs
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])


class HuggingFaceCausalLM(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: list[LayerKV] | None = None,
    ) -> tuple[torch.Tensor, list[LayerKV]]:
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=past) if past is not None else DynamicCache()
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        present = [(layer.keys, layer.values) for layer in output.past_key_values.layers]
        return output.logits[:, -1], present


# What save_pretrained writes for a tokenizer, by kind: fast (tokenizer.json),
# SentencePiece (tokenizer.model), BPE (vocab.json + merges.txt), WordPiece (vocab.txt).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


def load_causal_lm(
    path: Path, device: Device, dtype: torch.dtype
) -> tuple[HuggingFaceCausalLM, HuggingFaceTokenizer, int, int]:
    """The wrapped model, its tokenizer, its vocabulary (logits) and its most positions."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
        from transformers.cache_utils import DynamicLayer
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise RuntimeError(
            f"MODEL_PATH={path} is a folder, which needs transformers: pip install '.[hf]'"
        ) from exc
    transformers_logging.disable_progress_bar()  # service logs, not a terminal
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: not a Hugging Face model folder")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES)}): save the model's "
            f"tokenizer there too: tokenizer.save_pretrained({str(path)!r})"
        )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, trust_remote_code=False, use_safetensors=True, dtype=dtype
    )
    model = model.to(str(device)).eval()
    model.requires_grad_(False)
    config = model.config
    context_length = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    if not context_length:
        raise ValueError(f"{path}/config.json names no maximum sequence length")
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    layer_types = {type(layer) for layer in DynamicCache(config=config).layers}
    if layer_types - {DynamicLayer}:
        names = ", ".join(sorted(t.__name__ for t in layer_types))
        raise ValueError(
            f"unsupported cache layout ({names}): only full-attention key/value caches are served"
        )
    vocab_size = model.get_output_embeddings().weight.shape[0]
    logger.info("Hugging Face model %s (%s) on %s in %s", path, config.model_type, device, dtype)
    return (
        HuggingFaceCausalLM(model),
        HuggingFaceTokenizer(tokenizer, eos_ids),
        int(vocab_size),
        int(context_length),
    )
