"""The Responses API through the official ``openai`` client: ``client.responses.create`` and
``client.responses.stream``, instructions, message and tool items, text.format, tools."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.main import create_app

from .conftest import live_server, make_settings

POINT = {
    "type": "object",
    "properties": {
        "x": {"type": "integer", "minimum": -99, "maximum": 99},
        "ok": {"type": "boolean"},
    },
    "required": ["x", "ok"],
    "additionalProperties": False,
}
FORMAT = {"format": {"type": "json_schema", "name": "point", "schema": POINT, "strict": True}}
TOOLS = [{"type": "function", "name": "locate", "parameters": POINT}]


@pytest.fixture(scope="module")
def app(model_path: Path) -> FastAPI:
    # the whole context: a conversation with tools listed in it is long (conftest); 8 slots
    # (warmup fills each at the longest context) hold every batch these tests send
    settings = make_settings(model_path, context_length=0)
    if settings.max_running_sequences > 8:
        settings = make_settings(model_path, context_length=0, max_running_sequences=8)
    return create_app(settings)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[openai.OpenAI]:
    with live_server(app) as address:
        yield openai.OpenAI(
            base_url=f"http://{address}/v1", api_key="unused", max_retries=0, timeout=60
        )


@pytest.fixture(scope="module")
def name(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


def test_a_response_is_the_chat_answer(client: openai.OpenAI, name: str) -> None:
    response = client.responses.create(
        model=name,
        instructions="Be brief.",
        input="Say something",
        max_output_tokens=10,
        temperature=0,
        store=True,
        metadata={"team": "x"},
    )
    chat = client.chat.completions.create(
        model=name,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say something"},
        ],
        max_tokens=10,
        temperature=0,
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.output_text == chat.choices[0].message.content
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    assert response.usage.output_tokens == chat.usage.completion_tokens
    if chat.choices[0].finish_reason == "length":
        assert response.status == "incomplete"
        assert response.incomplete_details.reason == "max_output_tokens"
    else:
        assert response.status == "completed"
    items = client.responses.create(
        model=name,
        input=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "Say something"}]},
        ],
        max_output_tokens=10,
        temperature=0,
    )
    assert items.output_text == response.output_text


def test_a_stream_assembles_into_the_same_response(client: openai.OpenAI, name: str) -> None:
    options: dict[str, Any] = {"model": name, "input": "A point", "text": FORMAT}
    options |= {"max_output_tokens": 60, "temperature": 0, "top_p": 0.9}  # no seed here: greedy
    whole = client.responses.create(**options)
    assert whole.status == "completed"
    jsonschema.validate(json.loads(whole.output_text), POINT)
    with client.responses.stream(**options) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == whole.output_text
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for opening, closing in (
        ("response.output_item.added", "response.output_item.done"),
        ("response.content_part.added", "response.content_part.done"),
    ):
        assert kinds.count(opening) == kinds.count(closing) == 1
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    raw = list(client.responses.create(**options, stream=True))
    assert [e.sequence_number for e in raw] == list(range(len(raw)))


@pytest.mark.heavy  # long prompts (the tools listed): the default combinations run it
def test_tools_give_function_call_items(client: openai.OpenAI, name: str) -> None:
    response = client.responses.create(
        model=name,
        input="Where?",
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=80,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "locate"
    jsonschema.validate(json.loads(calls[0].arguments), POINT)
    with client.responses.stream(
        model=name,
        input="Where?",
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "function", "name": "locate"},
        max_output_tokens=80,
    ) as stream:
        final = stream.get_final_response()
    streamed = [item for item in final.output if item.type == "function_call"]
    assert len(streamed) == 1
    jsonschema.validate(json.loads(streamed[0].arguments), POINT)
    follow_up = client.responses.create(
        model=name,
        input=[
            {"role": "user", "content": "Where?"},
            {
                "type": "function_call",
                "call_id": calls[0].call_id,
                "name": "locate",
                "arguments": calls[0].arguments,
            },
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "found"},
        ],
        tools=TOOLS,  # type: ignore[arg-type]
        max_output_tokens=6,
        temperature=0,
    )
    assert follow_up.usage.input_tokens > response.usage.input_tokens


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        ({"max_output_tokens": 10**6}, "max_output_tokens"),
        ({"tool_choice": {"type": "function", "name": "nope"}, "tools": TOOLS}, "tool_choice"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input",
        ),
    ],
)
def test_what_is_not_served_answers_400(
    client: openai.OpenAI, name: str, options: dict[str, Any], param: str
) -> None:
    options = {"input": "hi", **options}
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=name, **options)
    assert refused.value.response.json()["error"]["param"] == param
