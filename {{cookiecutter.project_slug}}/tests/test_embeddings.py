"""``/v1/embeddings`` driven by the official ``openai`` client: texts, token arrays,
``dimensions``; bad input.

Contract tests: they pass for any model that fits ``Model``'s declared contract
(its ``dimensions``, ``max_input_tokens``, ``tokenizer_file``, ``matryoshka_dimensions``)
and read it from there. The served names are tested in ``test_served_names.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient
from tokenizers import Tokenizer

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.errors import StartupFailed

from .conftest import live_server, make_settings

TEXTS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog",
    "Vector search finds the nearest documents to a query.",
    "café, naïve, résumé: accents are normalised",
    "12345 !?",
]
JSON_HEADERS = {"content-type": "application/json"}
# at least three times the model's limit: every word is one token or more
LONG_TEXT = " ".join(["people often read a long book"] * (Model.max_input_tokens // 2 + 1))
OVER_THE_LIMIT = f"limit of {Model.max_input_tokens} tokens"
# a `dimensions` the model refuses: any shorter size when it cannot be shortened, else
# a size it was not trained for, or a longer one
SHORTER_SIZES = sorted(set(Model.matryoshka_dimensions) - {Model.dimensions})
REFUSED_DIMENSIONS = (
    (next(d for d in range(1, Model.dimensions) if d not in SHORTER_SIZES), "must be one of")
    if SHORTER_SIZES
    else (max(1, Model.dimensions // 2), "does not support")
)
TOO_LONG = (Model.dimensions + 1, "must be one of" if SHORTER_SIZES else "does not")
# not a token id of any model: far past every vocabulary, or negative
HUGE_ID = 10**12


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[tuple[str, str]]:
    """One running service (uvicorn on a local port) for the module: (base_url, model name)."""
    settings = make_settings(model_path)
    with live_server(create_app(settings)) as address:
        yield f"http://{address}/v1", settings.model_name


@pytest.fixture(scope="module")
def client(server: tuple[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server[0], api_key="unused", max_retries=0) as openai_client:
        yield openai_client


@pytest.fixture(scope="module")
def model_name(server: tuple[str, str]) -> str:
    return server[1]


def vectors(response: Any) -> np.ndarray:
    assert [item.index for item in response.data] == list(range(len(response.data)))
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def embed(client: openai.OpenAI, model: str, texts: str | list[str], **kwargs: Any) -> np.ndarray:
    return vectors(client.embeddings.create(model=model, input=texts, **kwargs))


@pytest.fixture(scope="module")
def tokenizer(model_path: Path) -> Tokenizer:
    """The model's own tokenizer, as a client that tokenises for this model loads it."""
    folder = model_path if model_path.is_dir() else model_path.parent
    tokenizer = Tokenizer.from_file(str(folder / Model.tokenizer_file))
    tokenizer.no_padding()  # one array per input, unpadded: pad ids would be embedded too
    return tokenizer


def token_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """What the tokenizer gives a client, with its default special tokens ([CLS] ... [SEP])."""
    return [encoding.ids for encoding in tokenizer.encode_batch(texts)]


def test_float_and_base64_agree(client: openai.OpenAI, model_name: str) -> None:
    as_float = embed(client, model_name, TEXTS, encoding_format="float")
    as_base64 = embed(client, model_name, TEXTS)  # the client asks for base64 and decodes it
    assert as_float.shape == (len(TEXTS), Model.dimensions)
    np.testing.assert_array_equal(as_float, as_base64)


def test_response_shape_usage_and_unit_vectors(
    client: openai.OpenAI, model_name: str, tokenizer: Tokenizer
) -> None:
    response = client.embeddings.create(model=model_name, input=TEXTS, encoding_format="float")
    assert response.object == "list"
    assert response.model == model_name
    assert all(item.object == "embedding" for item in response.data)
    expected_tokens = sum(map(len, token_ids(tokenizer, TEXTS)))
    assert response.usage.prompt_tokens == response.usage.total_tokens == expected_tokens
    np.testing.assert_allclose(np.linalg.norm(vectors(response), axis=1), 1.0, atol=1e-5)


def test_batched_and_single_requests_agree(client: openai.OpenAI, model_name: str) -> None:
    batched = embed(client, model_name, TEXTS)
    singles = np.stack([embed(client, model_name, text)[0] for text in TEXTS])
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    # distinct texts give distinct vectors
    similarity = singles @ singles.T
    assert (similarity[~np.eye(len(TEXTS), dtype=bool)] < 0.999).all()


def test_concurrent_distinct_inputs_each_get_their_own_vector(
    client: openai.OpenAI, model_name: str
) -> None:
    texts = [f"request number {i}: {TEXTS[i % len(TEXTS)]}" for i in range(24)]
    reference = np.stack([embed(client, model_name, text)[0] for text in texts])
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda text: embed(client, model_name, text)[0], texts))
    np.testing.assert_allclose(np.stack(results), reference, atol=1e-5)


def test_token_arrays_give_the_vectors_of_their_texts(
    client: openai.OpenAI, model_name: str, tokenizer: Tokenizer
) -> None:
    """The tokenizer's ids, special tokens included, are embedded as given: as the text is."""
    ids = token_ids(tokenizer, TEXTS)
    texts = client.embeddings.create(model=model_name, input=TEXTS, encoding_format="float")
    arrays = client.embeddings.create(model=model_name, input=ids, encoding_format="float")
    np.testing.assert_allclose(vectors(arrays), vectors(texts), atol=1e-6)
    assert arrays.usage.prompt_tokens == texts.usage.prompt_tokens == sum(map(len, ids))
    one = client.embeddings.create(model=model_name, input=ids[1])  # one array: one input
    assert len(one.data) == 1 and one.usage.prompt_tokens == len(ids[1])
    np.testing.assert_allclose(vectors(one)[0], embed(client, model_name, TEXTS[1])[0], atol=1e-6)


def test_token_arrays_are_not_wrapped_in_special_tokens(
    client: openai.OpenAI, model_name: str, tokenizer: Tokenizer
) -> None:
    """Ids without the tokenizer's [CLS]/[SEP] are another input, not the same text."""
    bare = tokenizer.encode(TEXTS[0], add_special_tokens=False).ids
    full = tokenizer.encode(TEXTS[0]).ids
    if bare == full:
        pytest.skip("this model's tokenizer adds no special tokens")
    answer = client.embeddings.create(model=model_name, input=[bare])
    assert answer.usage.prompt_tokens == len(bare)
    assert not np.allclose(vectors(answer)[0], embed(client, model_name, TEXTS[0])[0], atol=1e-4)


def test_dimensions_shorten_and_renormalise(client: openai.OpenAI, model_name: str) -> None:
    if not SHORTER_SIZES:
        pytest.skip("the model declares no matryoshka_dimensions")
    full = embed(client, model_name, TEXTS, encoding_format="float")
    for size in SHORTER_SIZES:
        shortened = embed(client, model_name, TEXTS, dimensions=size, encoding_format="float")
        assert shortened.shape == (len(TEXTS), size)
        expected = full[:, :size] / np.linalg.norm(full[:, :size], axis=1, keepdims=True)
        np.testing.assert_allclose(shortened, expected, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(shortened, axis=1), 1.0, atol=1e-5)
        # base64 (the client's default) carries the same shortened floats
        np.testing.assert_array_equal(embed(client, model_name, TEXTS, dimensions=size), shortened)
    own_size = embed(client, model_name, TEXTS, dimensions=Model.dimensions)
    np.testing.assert_allclose(own_size, full, atol=1e-6)


def test_client_sees_a_clear_error(client: openai.OpenAI, model_name: str) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=model_name, input="hello", dimensions=REFUSED_DIMENSIONS[0])
    assert error.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=model_name, input=[[1, 2], [3, HUGE_ID]])
    assert error.value.body["param"] == "input[1][1]"
    with pytest.raises(openai.NotFoundError) as not_found:
        client.embeddings.create(model="another-model", input="hello")
    assert not_found.value.body["param"] == "model"


@pytest.fixture(scope="module")
def http(model_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(model_path, max_inputs_per_request=4))) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"input": "hi", "temperature": 1}, "temperature", "Extra inputs are not permitted"),
        ({"model": "x"}, "input", "Field required"),
        ({"input": ""}, "input", "empty"),
        ({"input": []}, "input", "non-empty"),
        ({"input": {"text": "hi"}}, "input", "non-empty"),
        ({"input": ["ok", 3]}, "input[1]", "not a string"),
        ({"input": ["ok", ""]}, "input[1]", "empty string"),
        ({"input": "lone \ud800 surrogate"}, "input", "not valid Unicode"),
        ({"input": ["ok", "\udfff"]}, "input[1]", "input[1] is not valid Unicode"),
        ({"input": None}, "input", "non-empty"),
        ({"input": [None]}, "input[0]", "a token id or a list of token ids"),
        # token arrays: the item, and the id inside it
        ({"input": [5, HUGE_ID]}, "input[1]", "not a token id of this model"),
        ({"input": [[5, 6], [7, 8, -1]]}, "input[1][2]", "not a token id of this model"),
        ({"input": [[5, 6], [7, True]]}, "input[1][1]", "not a token id (an integer)"),
        ({"input": [5, 6.0]}, "input[1]", "not a token id (an integer)"),
        ({"input": [[5], []]}, "input[1]", "empty token array"),
        ({"input": [[5], 6]}, "input[1]", "not a list of token ids"),
        ({"input": [[5], "text"]}, "input[1]", "not a list of token ids"),
        ({"input": [[5, [6]]]}, "input[0][1]", "not a token id"),
        ({"input": ["text", [5]]}, "input[1]", "not a string"),
        ({"input": [5] * (Model.max_input_tokens + 1)}, "input", OVER_THE_LIMIT),
        ({"input": [[5], [5] * (Model.max_input_tokens + 1)]}, "input[1]", OVER_THE_LIMIT),
        ({"input": [[5]] * 5}, "input", "at most 4"),
        ({"input": "hi", "encoding_format": "int8"}, "encoding_format", "float"),
        ({"input": "hi", "dimensions": 0}, "dimensions", "greater than or equal to 1"),
        ({"input": "hi", "dimensions": REFUSED_DIMENSIONS[0]}, "dimensions", REFUSED_DIMENSIONS[1]),
        ({"input": "hi", "dimensions": TOO_LONG[0]}, "dimensions", TOO_LONG[1]),
        ({"input": ["a", "b", "c", "d", "e"]}, "input", "at most 4"),
        ({"input": LONG_TEXT}, "input", OVER_THE_LIMIT),
        ({"input": ["short", LONG_TEXT]}, "input[1]", OVER_THE_LIMIT),
    ],
)
def test_bad_input_answers_400_naming_the_field(
    http: TestClient, body: dict[str, Any], param: str, fragment: str
) -> None:
    # json.dumps escapes lone surrogates as JSON allows (httpx's json= would refuse them)
    content = json.dumps(body)
    response = http.post("/v1/embeddings", content=content, headers=JSON_HEADERS)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]
    # the service still answers the next, valid request
    assert http.post("/v1/embeddings", json={"input": "still fine"}).status_code == 200


def test_too_long_input_has_openai_code(http: TestClient) -> None:
    error = http.post("/v1/embeddings", json={"input": LONG_TEXT}).json()["error"]
    assert error["code"] == "context_length_exceeded"
    too_long = [[5] * (Model.max_input_tokens + 1)]
    error = http.post("/v1/embeddings", json={"input": too_long}).json()["error"]
    assert error["code"] == "context_length_exceeded"


def test_token_ids_up_to_the_vocabulary_size(http: TestClient) -> None:
    vocab_size = http.app.state.service.model.vocab_size
    last = http.post("/v1/embeddings", json={"input": [[vocab_size - 1, 0]]})
    assert last.status_code == 200, last.text
    past = http.post("/v1/embeddings", json={"input": [[0, 1], [vocab_size - 1, vocab_size]]})
    assert past.status_code == 400
    error = past.json()["error"]
    assert error["param"] == "input[1][1]"
    assert f"ids 0 to {vocab_size - 1}" in error["message"]


def test_malformed_json_answers_400(http: TestClient) -> None:
    response = http.post("/v1/embeddings", content=b'{"input": "x"', headers=JSON_HEADERS)
    assert response.status_code == 400
    assert "error" in response.json()


def test_unknown_model_answers_404(http: TestClient) -> None:
    response = http.post("/v1/embeddings", json={"input": "x", "model": "gpt-4"})
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"


def test_truncate_true_embeds_the_first_tokens(model_path: Path) -> None:
    settings = make_settings(model_path, truncate=True)
    with TestClient(create_app(settings)) as http:
        first = http.post(
            "/v1/embeddings", json={"input": [LONG_TEXT + " cat", LONG_TEXT + " dog"]}
        )
        assert first.status_code == 200, first.text
        answer = first.json()
        ids = [5] * Model.max_input_tokens
        arrays = http.post("/v1/embeddings", json={"input": [[*ids, 6], [*ids, 7], ids]})
        assert arrays.status_code == 200, arrays.text
    assert answer["usage"]["prompt_tokens"] == 2 * Model.max_input_tokens
    a, b = (np.array(item["embedding"]) for item in answer["data"])
    np.testing.assert_allclose(a, b, atol=1e-6)  # what differs lies past the limit
    # token arrays are cut to their first ids, as given (no special token is re-added)
    assert arrays.json()["usage"]["prompt_tokens"] == 3 * Model.max_input_tokens
    cut, other, whole = (np.array(item["embedding"]) for item in arrays.json()["data"])
    np.testing.assert_allclose(cut, whole, atol=1e-6)
    np.testing.assert_allclose(other, whole, atol=1e-6)


def test_max_input_tokens_lowers_the_limit(model_path: Path) -> None:
    with TestClient(create_app(make_settings(model_path, max_input_tokens=8))) as http:
        response = http.post(
            "/v1/embeddings", json={"input": "one two three four five six seven eight nine ten"}
        )
    assert response.status_code == 400
    assert "limit of 8 tokens" in response.json()["error"]["message"]


def test_max_input_tokens_over_the_model_limit_fails_startup(model_path: Path) -> None:
    with (
        pytest.raises(StartupFailed, match="exceeds the model's limit"),
        TestClient(
            create_app(make_settings(model_path, max_input_tokens=Model.max_input_tokens + 1))
        ),
    ):
        pass


@pytest.mark.parametrize("as_tokens", [False, True], ids=["texts", "token-arrays"])
def test_a_request_over_the_token_budget_is_split_and_kept_in_order(
    model_path: Path, tokenizer: Tokenizer, as_tokens: bool
) -> None:
    texts = [f"{TEXTS[i % len(TEXTS)]} item {i}" for i in range(12)]
    inputs: list[Any] = token_ids(tokenizer, texts) if as_tokens else texts
    settings = make_settings(model_path, max_batch_tokens=40)
    with TestClient(create_app(settings)) as http:
        batches_before = http.app.state.service.batcher.stats.batches
        together = http.post("/v1/embeddings", json={"input": inputs}).json()
        batches = http.app.state.service.batcher.stats.batches - batches_before
        alone = [http.post("/v1/embeddings", json={"input": text}).json() for text in texts]
    assert batches >= together["usage"]["prompt_tokens"] / 40
    np.testing.assert_allclose(
        [item["embedding"] for item in together["data"]],
        [answer["data"][0]["embedding"] for answer in alone],
        atol=1e-5,
    )


@pytest.mark.parametrize("max_batch_size", [1, 4])
def test_a_request_larger_than_the_queue_is_refused(model_path: Path, max_batch_size: int) -> None:
    settings = make_settings(
        model_path, max_batch_size=max_batch_size, max_batch_wait_ms=0, max_queue_size=4
    )
    with TestClient(create_app(settings)) as http:
        refused = http.post("/v1/embeddings", json={"input": ["a", "b", "c", "d", "e"]})
        accepted = http.post("/v1/embeddings", json={"input": ["a", "b", "c", "d"]})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "input"
    assert "more than the queue holds" in refused.json()["error"]["message"]
    assert accepted.status_code == 200
    assert len(accepted.json()["data"]) == 4


def test_float_json_is_plain_numbers(http: TestClient) -> None:
    raw = http.post("/v1/embeddings", json={"input": "hello", "encoding_format": "float"}).content
    embedding = json.loads(raw)["data"][0]["embedding"]
    assert len(embedding) == Model.dimensions
    assert all(isinstance(value, float) for value in embedding)


@pytest.mark.reference
def test_the_demo_model_gives_its_known_tokens_and_vector(http: TestClient) -> None:
    """The demo model's answer, pinned: its tokenizer, pooling and weights as built."""
    answer = http.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "float"})
    assert answer.json()["usage"]["prompt_tokens"] == 13  # [CLS] the cat sat on the mat . [SEP]
    np.testing.assert_allclose(
        answer.json()["data"][0]["embedding"][:6],
        [-0.08998, -0.00813, 0.01845, 0.02783, 0.16751, 0.02545],
        atol=2e-5,
    )


@pytest.mark.reference
def test_the_demo_model_declares_its_vocabulary_and_matryoshka_sizes(http: TestClient) -> None:
    """The demo model is random: its `dimensions` sizes only show the path (see model.py)."""
    assert Model.matryoshka_dimensions == (32, 64)
    assert http.app.state.service.model.vocab_size == 424
    answer = http.post(
        "/v1/embeddings", json={"input": TEXTS[0], "dimensions": 32, "encoding_format": "float"}
    ).json()
    # the first 32 of the vector pinned above, re-normalised
    np.testing.assert_allclose(
        answer["data"][0]["embedding"][:6],
        [-0.15522, -0.01403, 0.03184, 0.04801, 0.28897, 0.0439],
        atol=2e-5,
    )
