"""Structured outputs through the official ``openai`` client: ``response_format`` json_schema
and json_object, by constrained decoding. Whatever the model (the demo is random weights),
the answers parse and validate against their schemas, each request against its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.main import create_app

from .conftest import live_server, make_settings

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z]{1,8}$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "pet": {"enum": ["cat", "dog", "none"]},
        "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2},
    },
    "required": ["name", "age", "pet"],
    "additionalProperties": False,
}
POINT = {
    "type": "object",
    "properties": {
        "x": {"type": "integer", "minimum": -1000, "maximum": 1000},
        "y": {"type": "integer", "minimum": 0, "maximum": 99},
        "on_grid": {"type": "boolean"},
    },
    "required": ["x", "y", "on_grid"],
    "additionalProperties": False,
}
# Every value is bounded (an unbounded number or string lets a model that likes digits write
# forever), so any answer either schema allows fits in WORST_CASE bytes, hence tokens.
WORST_CASE = 72  # {"name": "aaaaaaaa", "age": 130, "pet": "none", "tags": [false, false]}
PROMPT = "Describe a person as JSON."


def schema_format(schema: dict[str, Any], name: str = "answer") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.fixture(scope="module")
def app(model_path: Path) -> FastAPI:
    return create_app(make_settings(model_path, intra_op_threads=1))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[openai.OpenAI]:
    with live_server(app) as address:
        yield openai.OpenAI(
            base_url=f"http://{address}/v1", api_key="unused", max_retries=0, timeout=60
        )


@pytest.fixture(scope="module")
def name(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


@pytest.fixture(scope="module")
def room(app: FastAPI, client: openai.OpenAI) -> int:
    """Tokens an answer may take: what the context leaves after the longest prompt here."""
    service = app.state.service
    messages = [{"role": "user", "content": PROMPT}]
    prompt = len(service.model.tokenizer.apply_chat_template(messages))
    room = min(200, service.context_length - prompt)
    assert room >= WORST_CASE, f"the context leaves {room} tokens; the schemas need {WORST_CASE}"
    return room


def ask(client: openai.OpenAI, name: str, schema: dict[str, Any], room: int, **options: Any) -> Any:
    options = {"max_tokens": room, "temperature": 1.0, "seed": 1, **options}
    return client.chat.completions.create(
        model=name,
        messages=[{"role": "user", "content": PROMPT}],
        response_format=schema_format(schema),  # type: ignore[arg-type]
        **options,
    )


def valid(text: str, schema: dict[str, Any]) -> Any:
    value = json.loads(text)
    jsonschema.validate(value, schema)
    return value


def test_chat_answers_follow_the_schema(client: openai.OpenAI, name: str, room: int) -> None:
    for seed in range(4):
        answer = ask(client, name, PERSON, room, seed=seed)
        choice = answer.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        valid(choice.message.content, PERSON)
    greedy = ask(client, name, POINT, room, temperature=0)
    valid(greedy.choices[0].message.content, POINT)


def test_streamed_and_n_answers_follow_the_schema(
    client: openai.OpenAI, name: str, app: FastAPI, room: int
) -> None:
    whole = ask(client, name, PERSON, room, seed=7).choices[0].message.content
    chunks = list(ask(client, name, PERSON, room, seed=7, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    if app.state.service.scheduler.max_running >= 3:
        answer = ask(client, name, PERSON, room, seed=3, n=3)
        values = [valid(c.message.content, PERSON) for c in answer.choices]
        assert len({json.dumps(v) for v in values}) > 1, "the three choices are one"


def test_completions_take_a_response_format(client: openai.OpenAI, name: str, room: int) -> None:
    answer = client.completions.create(
        model=name,
        prompt="A point:",
        max_tokens=room,
        temperature=0.7,
        seed=2,
        extra_body={"response_format": schema_format(POINT)},
    )
    valid(answer.choices[0].text, POINT)


def test_json_object_is_an_object(client: openai.OpenAI, name: str, room: int) -> None:
    for seed in range(3):
        answer = client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "JSON please"}],
            response_format={"type": "json_object"},
            max_tokens=room,
            seed=seed,
        )
        text = answer.choices[0].message.content
        assert text.startswith("{")
        if answer.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize(
    ("response_format", "words"),
    [
        (schema_format({"type": "strin"}), "strin"),
        (
            schema_format(
                {
                    "type": "object",
                    "properties": {
                        f"p{i}": {"type": "string", "description": "x" * 64} for i in range(600)
                    },
                }
            ),
            "bytes",
        ),
        ({"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}, "name"),
    ],
)
def test_bad_schemas_answer_400(
    client: openai.OpenAI, name: str, response_format: dict[str, Any], words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "hi"}],
            response_format=response_format,  # type: ignore[arg-type]
        )
    error = refused.value.response.json()["error"]
    assert error["param"].startswith("response_format")
    assert words in error["message"]


def test_schemas_in_one_batch_each_follow_their_own(
    client: openai.OpenAI, name: str, app: FastAPI, room: int
) -> None:
    plain = {"max_tokens": 12, "temperature": 0}
    jobs: list[tuple[dict[str, Any] | None, dict[str, Any]]] = [
        (PERSON, {"seed": 1}),
        (POINT, {"seed": 2}),
        (None, plain),
        (PERSON, {"seed": 3, "frequency_penalty": 1.0}),
        (POINT, {"seed": 4, "logprobs": True, "top_logprobs": 2}),
        (None, {**plain, "presence_penalty": 1.5}),
    ]

    def run(job: tuple[dict[str, Any] | None, dict[str, Any]]) -> str:
        schema, options = job
        if schema is None:
            return (
                client.chat.completions.create(
                    model=name, messages=[{"role": "user", "content": "Plain text"}], **options
                )
                .choices[0]
                .message.content
            )
        return ask(client, name, schema, room, **options).choices[0].message.content

    alone = [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        together = list(pool.map(run, jobs))
    assert together == alone
    for (schema, _), text in zip(jobs, together, strict=True):
        if schema is not None:
            valid(text, schema)
    if app.state.service.scheduler.max_running > 1:
        assert app.state.service.scheduler.stats.largest_decode_batch > 1
