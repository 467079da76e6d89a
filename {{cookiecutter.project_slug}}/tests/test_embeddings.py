"""``/v1/embeddings`` and ``/v1/models`` driven by the official ``openai`` client; bad input.

Contract tests: they pass for any model that fits ``Model``'s declared contract
(its ``dimensions``, ``max_input_tokens``, ``tokenizer_file``) and read it from there.
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
# a `dimensions` the model refuses: shortening when it cannot, or longer than it is
REFUSED_DIMENSIONS = (
    (Model.dimensions + 1, "at most")
    if Model.supports_dimensions
    else (max(1, Model.dimensions // 2), "does not support")
)


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


def test_float_and_base64_agree(client: openai.OpenAI, model_name: str) -> None:
    as_float = embed(client, model_name, TEXTS, encoding_format="float")
    as_base64 = embed(client, model_name, TEXTS)  # the client asks for base64 and decodes it
    assert as_float.shape == (len(TEXTS), Model.dimensions)
    np.testing.assert_array_equal(as_float, as_base64)


def test_response_shape_usage_and_unit_vectors(
    client: openai.OpenAI, model_name: str, model_path: Path
) -> None:
    response = client.embeddings.create(model=model_name, input=TEXTS, encoding_format="float")
    assert response.object == "list"
    assert response.model == model_name
    assert all(item.object == "embedding" for item in response.data)
    folder = model_path if model_path.is_dir() else model_path.parent
    tokenizer = Tokenizer.from_file(str(folder / Model.tokenizer_file))
    expected_tokens = sum(len(tokenizer.encode(text).ids) for text in TEXTS)
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


def test_models_list_and_retrieve(client: openai.OpenAI, model_name: str) -> None:
    listed = client.models.list()
    assert [model.id for model in listed.data] == [model_name]
    assert client.models.retrieve(model_name).id == model_name
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_client_sees_a_clear_error(client: openai.OpenAI, model_name: str) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=model_name, input="hello", dimensions=REFUSED_DIMENSIONS[0])
    assert error.value.body["param"] == "dimensions"
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
        ({"input": ["ok", 3]}, "input", "item 1"),
        ({"input": ["ok", ""]}, "input", "item 1"),
        ({"input": [[101, 2023, 102]]}, "input", "token arrays"),
        ({"input": [101, 2023]}, "input", "token arrays"),
        ({"input": "lone \ud800 surrogate"}, "input", "not valid Unicode"),
        ({"input": ["ok", "\udfff"]}, "input", "item 1 is not valid Unicode"),
        ({"input": None}, "input", "non-empty"),
        ({"input": "hi", "encoding_format": "int8"}, "encoding_format", "float"),
        ({"input": "hi", "dimensions": 0}, "dimensions", "greater than or equal to 1"),
        ({"input": "hi", "dimensions": REFUSED_DIMENSIONS[0]}, "dimensions", REFUSED_DIMENSIONS[1]),
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
    assert answer["usage"]["prompt_tokens"] == 2 * Model.max_input_tokens
    a, b = (np.array(item["embedding"]) for item in answer["data"])
    np.testing.assert_allclose(a, b, atol=1e-6)  # what differs lies past the limit


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


def test_a_request_over_the_token_budget_is_split_and_kept_in_order(model_path: Path) -> None:
    texts = [f"{TEXTS[i % len(TEXTS)]} item {i}" for i in range(12)]
    settings = make_settings(model_path, max_batch_tokens=40)
    with TestClient(create_app(settings)) as http:
        batches_before = http.app.state.service.batcher.stats.batches
        together = http.post("/v1/embeddings", json={"input": texts}).json()
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
