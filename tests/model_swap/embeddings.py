"""Embeddings: a team's encoder with another dimension, token limit and tokenizer.

The team's tokenizer is a WordPiece trained here, with ``tokenizers``, on a few
sentences (about 250 tokens instead of the demo's 400); its encoder is 48 wide
(the demo: 128) and takes at most 64 tokens (the demo: 128).

- onnxruntime: the team's own network, exported with ``torch.onnx`` under its
  own tensor names (``ids``, ``mask`` -> ``token_embeddings``);
- torch: a Hugging Face ``BertModel`` saved with ``save_pretrained``
  (``model.safetensors`` + ``config.json``), as a sentence-transformers
  folder holds it.

``model.py`` is edited only in its contract lines (no ``matryoshka_dimensions``:
the team's model was not trained to be shortened); the served vectors, asked for
with the official ``openai`` client (float and base64, from texts and from the
team tokenizer's ids), must be the team's model's own, computed here without the
service.
"""

from __future__ import annotations

import base64
import math
import re
import string
from pathlib import Path

import numpy as np

from . import Swap

DIMENSIONS = 48
MAX_TOKENS = 64
CORPUS = [
    "Search engines rank documents by how close their vectors are to the query.",
    "A sentence encoder turns text into one vector per input.",
    "Our support team answers tickets about invoices, refunds and shipping.",
    "Customers ask where their parcel is and when it will arrive.",
    "The warehouse ships orders every morning except on public holidays.",
    "Please reset my password; the link in the email has expired.",
]
TEXTS = ["Where is my parcel?", "Refunds take five days.", "reset the password link"]


def tokenizer():  # type: ignore[no-untyped-def]
    """A BERT-style WordPiece tokenizer trained on the corpus above."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece

    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=250,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
        initial_alphabet=list(string.ascii_lowercase + string.digits + string.punctuation),
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return tok


def team_encoder(vocab_size: int):  # type: ignore[no-untyped-def]
    """The team's own network: embeddings, one masked self-attention layer, a feed-forward."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens = nn.Embedding(vocab_size, DIMENSIONS)
            self.positions = nn.Embedding(MAX_TOKENS, DIMENSIONS)
            self.qkv = nn.Linear(DIMENSIONS, 3 * DIMENSIONS)
            self.norm1 = nn.LayerNorm(DIMENSIONS)
            wide = 2 * DIMENSIONS
            self.ff = nn.Sequential(
                nn.Linear(DIMENSIONS, wide), nn.GELU(), nn.Linear(wide, DIMENSIONS)
            )
            self.norm2 = nn.LayerNorm(DIMENSIONS)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(ids.shape[1], device=ids.device)
            x = self.tokens(ids) + self.positions(positions)
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            scores = q @ k.transpose(1, 2) / math.sqrt(DIMENSIONS)
            scores = scores + (mask[:, None, :].float() - 1.0) * 1e4  # padded keys: ignored
            x = self.norm1(x + torch.softmax(scores, dim=-1) @ v)
            return self.norm2(x + self.ff(x))

    torch.manual_seed(7)
    return Encoder().eval()


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float64)
    mean = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def team_tokenizer(model_path: Path):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model_path.parent / "tokenizer.json"))


def encode(folder: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) of the texts with the team's tokenizer, right-padded."""
    from tokenizers import Tokenizer

    encodings = Tokenizer.from_file(str(folder / "tokenizer.json")).encode_batch(texts)
    length = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), length), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, e in enumerate(encodings):
        ids[row, : len(e.ids)], mask[row, : len(e.ids)] = e.ids, 1
    return ids, mask


def build_onnx(project: Path, out_dir: Path) -> Path:
    import torch

    out_dir.mkdir(parents=True)
    tok = tokenizer()
    tok.save(str(out_dir / "tokenizer.json"))
    net = team_encoder(tok.get_vocab_size())
    ids, mask = (torch.from_numpy(a) for a in encode(out_dir, TEXTS))
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            net,
            (ids, mask),
            str(out_dir / "encoder.onnx"),
            input_names=["ids", "mask"],
            output_names=["token_embeddings"],
            dynamic_axes={"ids": axes, "mask": axes, "token_embeddings": axes},
            opset_version=17,
            dynamo=False,
        )
        # what the service must answer: the team's network itself, mean-pooled, unit length
        reference = mean_pool(net(ids, mask).numpy(), mask.numpy())
    np.save(out_dir / "reference.npy", reference)
    return out_dir / "encoder.onnx"


def build_torch(project: Path, out_dir: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    out_dir.mkdir(parents=True)
    tok = tokenizer()
    tok.save(str(out_dir / "tokenizer.json"))
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=DIMENSIONS,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=4 * DIMENSIONS,
        max_position_embeddings=MAX_TOKENS,
    )
    torch.manual_seed(7)
    net = BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():  # BERT's default init is tiny: spread the embeddings apart
        net.embeddings.word_embeddings.weight.normal_(0.0, 1.0)
    net.save_pretrained(str(out_dir))  # model.safetensors + config.json
    ids, mask = encode(out_dir, TEXTS)
    with torch.no_grad():
        hidden = net(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    np.save(out_dir / "reference.npy", mean_pool(hidden.last_hidden_state.numpy(), mask))
    return out_dir / "model.safetensors"


def set_contract(project: Path, **values: object) -> None:
    """Rewrite ``name = value`` contract lines of the baked model.py (as a team edits it)."""
    path = next((project / "src").glob("*/model.py"))
    text = path.read_text(encoding="utf-8")
    for name, value in values.items():
        text, count = re.subn(rf"(?m)^(    {name}(?:: [^=]+)? = ).*$", rf"\g<1>{value!r}", text)
        assert count == 1, f"model.py has no contract line for {name}"
    path.write_text(text, encoding="utf-8")


def edit_onnx(project: Path) -> None:
    set_contract(
        project,
        dimensions=DIMENSIONS,
        max_input_tokens=MAX_TOKENS,
        input_names=("ids", "mask"),
        output_name="token_embeddings",
        matryoshka_dimensions=(),  # not trained to be shortened
    )


def edit_torch(project: Path) -> None:
    set_contract(
        project, dimensions=DIMENSIONS, max_input_tokens=MAX_TOKENS, matryoshka_dimensions=()
    )


def check_served(project: Path, model_path: Path, base_url: str) -> None:
    import openai

    reference = np.load(model_path.parent / "reference.npy")
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        model = client.models.list().data[0].id
        floats = client.embeddings.create(model=model, input=TEXTS, encoding_format="float")
        got = np.array([item.embedding for item in floats.data])
        assert got.shape == (len(TEXTS), DIMENSIONS), got.shape
        np.testing.assert_allclose(got, reference, atol=1e-4)
        # the client's default: base64 of little-endian float32, decoded by the client
        decoded = client.embeddings.create(model=model, input=TEXTS)
        np.testing.assert_array_equal(np.array([i.embedding for i in decoded.data]), got)
        ids = [encoding.ids for encoding in team_tokenizer(model_path).encode_batch(TEXTS)]
        arrays = client.embeddings.create(model=model, input=ids, encoding_format="float")
        np.testing.assert_allclose([item.embedding for item in arrays.data], got, atol=1e-6)
        try:
            client.embeddings.create(model=model, input=TEXTS[0], dimensions=DIMENSIONS // 2)
        except openai.BadRequestError as error:
            assert error.body["param"] == "dimensions", error.body
        else:
            raise AssertionError("a model without matryoshka_dimensions shortened its vectors")
        raw = client.embeddings.with_raw_response.create(
            model=model, input=TEXTS[0], encoding_format="base64"
        )
        encoded = raw.http_response.json()["data"][0]["embedding"]
        vector = np.frombuffer(base64.b64decode(encoded), "<f4")
        assert vector.shape == (DIMENSIONS,)
        try:
            client.embeddings.create(model=model, input="word " * (2 * MAX_TOKENS))
        except openai.BadRequestError as error:
            assert f"limit of {MAX_TOKENS} tokens" in error.body["message"], error.body
        else:
            raise AssertionError(f"an input over {MAX_TOKENS} tokens was not refused")


SWAPS = [
    Swap(
        combination={"workload": "embeddings", "backend": "onnxruntime"},
        build_model=build_onnx,
        edit_model=edit_onnx,
        check_served=check_served,
    ),
    Swap(
        combination={"workload": "embeddings", "backend": "torch"},
        build_model=build_torch,
        edit_model=edit_torch,
        check_served=check_served,
    ),
]
