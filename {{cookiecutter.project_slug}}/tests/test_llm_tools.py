"""Tool calling through the official ``openai`` client: tools, tool_choice, parallel calls,
streamed ``delta.tool_calls``, conversations with calls and results; and the Hermes-format
parser the answers go through. Forced choices are constrained, so whatever the model (the
demo is random weights), its calls name a tool and their arguments follow its schema.

The served tests are ``heavy`` (each prompt lists the tools, about 900 byte tokens on the demo):
the default combination of each backend runs them; the format tests run everywhere."""

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

from {{ cookiecutter.package_name }}.llm.schemas import ChatMessage, Tool
from {{ cookiecutter.package_name }}.llm.tools import CallStream, parse, render
from {{ cookiecutter.package_name }}.main import create_app

from .conftest import live_server, make_settings

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Oslo", "Lima"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
TIME = {
    "type": "object",
    "properties": {"zone": {"type": "string", "pattern": "^[A-Z]{3}$"}},
    "required": ["zone"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "clock", "description": "time", "parameters": TIME}},
]
SCHEMAS = {"weather": WEATHER, "clock": TIME}
ONE_CALL = 64  # tokens: more than any single call these schemas allow, byte tokens
MESSAGES = [{"role": "user", "content": "Weather in Oslo?"}]


# --- the format, without a model -----------------------------------------------------
def tools() -> list[Tool]:
    return [Tool.model_validate(t) for t in TOOLS]


def test_calls_are_parsed_out_of_the_text() -> None:
    text = (
        'Let me check.\n<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo", "days": 2}}'
        '\n</tool_call>\n<tool_call>{"name": "nope", "arguments": {}}</tool_call>'
        '<tool_call>{"name": "clock", "arguments": {"zone": "CET"}}</tool_call>'
        "<tool_call>{not json}</tool_call>"
    )
    content, calls = parse(text, tools())
    assert [c["function"]["name"] for c in calls] == ["weather", "clock"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo", "days": 2}
    assert content is not None and content.startswith("Let me check.")
    assert '"nope"' in content and "{not json}" in content  # not calls: they stay text
    assert parse("no calls here", tools()) == ("no calls here", [])
    assert parse('<tool_call>{"name": "clock", "arguments": {}}</tool_call>', tools())[0] is None


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_a_stream_finds_the_same_calls_whatever_the_pieces(size: int) -> None:
    text = (
        'Hi <tool <tool_call>{"name": "clock", "arguments": {"zone": "UTC"}}</tool_call> and '
        '<tool_call>{"name": "weather", "arguments": {"city": "Lima", "days": 1}}</tool_call>'
        " bye <tool_ca"
    )
    stream, content, calls = CallStream(tools()), "", []
    for start in range(0, len(text), size):
        piece, found = stream.push(text[start : start + size])
        content, calls = content + piece, calls + found
    piece, found = stream.push("", final=True)
    content, calls = content + piece, calls + found
    expected_content, expected = parse(text, tools())
    assert [(c["index"], c["function"]) for c in calls] == [
        (i, c["function"]) for i, c in enumerate(expected)
    ]
    assert content == "Hi <tool  and  bye <tool_ca" and expected_content == content.strip()


def test_the_default_format_lists_tools_and_writes_turns() -> None:
    messages = [
        ChatMessage.model_validate(m)
        for m in [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Oslo", "days": 1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]
    ]
    turns = render(messages, tools())
    assert turns[0]["role"] == "system" and turns[0]["content"].startswith("Be brief.")
    assert '"name": "weather"' in turns[0]["content"] and "<tools>" in turns[0]["content"]
    assert turns[2] == {
        "role": "assistant",
        "content": '<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo", "days": 1}}'
        "\n</tool_call>",
    }
    assert turns[3] == {"role": "user", "content": "<tool_response>\nsunny\n</tool_response>"}
    assert "<tools>" not in render(messages, None)[0]["content"]


# --- served -----------------------------------------------------------------------------
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


@pytest.fixture(scope="module")
def room(app: FastAPI, client: openai.OpenAI) -> int:
    """Tokens the context leaves for the answer after the prompt with the tools listed."""
    service = app.state.service
    tokenizer = service.model.tokenizer
    if getattr(tokenizer, "supports_tools", False):
        prompt = len(tokenizer.apply_chat_template(MESSAGES, tools=TOOLS))
    else:
        listed = [ChatMessage.model_validate(m) for m in MESSAGES]
        prompt = len(tokenizer.apply_chat_template(render(listed, tools())))
    room = service.context_length - prompt
    if room < ONE_CALL:
        pytest.skip(f"a {prompt}-token prompt with tools leaves {room} tokens of the context")
    return room


def call(client: openai.OpenAI, name: str, room: int, **options: Any) -> Any:
    options = {
        "max_tokens": min(4 * ONE_CALL, room),
        "temperature": 1.0,
        "seed": 0,
        "tools": TOOLS,
        **options,
    }
    return client.chat.completions.create(model=name, messages=MESSAGES, **options)


def check_calls(calls: Any) -> list[tuple[str, Any]]:
    assert calls, "no tool call"
    found = []
    for tool_call in calls:
        assert tool_call.type == "function" and tool_call.id.startswith("call_")
        arguments = json.loads(tool_call.function.arguments)
        jsonschema.validate(arguments, SCHEMAS[tool_call.function.name])
        found.append((tool_call.function.name, arguments))
    return found


@pytest.mark.heavy  # long prompts (the tools listed): the default combinations run it
def test_required_returns_valid_calls(client: openai.OpenAI, name: str, room: int) -> None:
    for seed in range(3):
        answer = call(
            client, name, room, tool_choice="required", parallel_tool_calls=False, seed=seed
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert len(check_calls(choice.message.tool_calls)) == 1
        assert choice.message.content is None
    several = call(client, name, room, tool_choice="required", seed=5)
    # up to MAX_TOOL_CALLS; a call the token limit cuts short is not returned
    assert 1 <= len(check_calls(several.choices[0].message.tool_calls)) <= 4


@pytest.mark.heavy  # long prompts (the tools listed): the default combinations run it
def test_a_named_choice_calls_that_function(client: openai.OpenAI, name: str, room: int) -> None:
    for seed in range(3):
        answer = call(
            client,
            name,
            room,
            tool_choice={"type": "function", "function": {"name": "clock"}},
            seed=seed,
        )
        assert [n for n, _ in check_calls(answer.choices[0].message.tool_calls)] == ["clock"]


@pytest.mark.heavy  # long prompts (the tools listed): the default combinations run it
def test_streamed_calls_match_the_whole_answer(client: openai.OpenAI, name: str, room: int) -> None:
    options = {"tool_choice": "required", "parallel_tool_calls": False, "seed": 2}
    whole = check_calls(call(client, name, room, **options).choices[0].message.tool_calls)
    streamed: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in call(client, name, room, stream=True, **options):
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                entry = streamed.setdefault(delta.index, {"name": "", "arguments": ""})
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    assert [(e["name"], json.loads(e["arguments"])) for e in streamed.values()] == whole
    assert finish == "tool_calls"


@pytest.mark.heavy  # long prompts (the tools listed): the default combinations run it
def test_a_conversation_with_calls_and_results_goes_on(
    client: openai.OpenAI, name: str, room: int
) -> None:
    weather = TOOLS[:1]  # one tool: the history must fit a small context with its listing
    first = call(
        client, name, room, tools=weather, tool_choice="required", parallel_tool_calls=False
    )
    tool_call = first.choices[0].message.tool_calls[0]
    history = [
        *MESSAGES,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tool_call.id, "content": '{"temperature": 21}'},
    ]
    answer = client.chat.completions.create(
        model=name, messages=history, tools=weather, max_tokens=8, temperature=0
    )
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert answer.usage.prompt_tokens > first.usage.prompt_tokens
    plain = client.chat.completions.create(
        model=name, messages=MESSAGES, tools=TOOLS, tool_choice="none", max_tokens=8, temperature=0
    )
    assert plain.choices[0].message.tool_calls in (None, [])


@pytest.mark.heavy  # long prompts (the tools listed): the default combinations run it
def test_calls_and_other_requests_share_a_batch(
    client: openai.OpenAI, name: str, app: FastAPI, room: int
) -> None:
    jobs: list[dict[str, Any]] = [
        {"tool_choice": "required", "parallel_tool_calls": False, "seed": 1},
        {"tool_choice": {"type": "function", "function": {"name": "weather"}}, "seed": 2},
        {"tool_choice": "none", "max_tokens": 12, "temperature": 0},
        {"tool_choice": "required", "parallel_tool_calls": False, "seed": 3, "logprobs": True},
    ]

    def run(options: dict[str, Any]) -> Any:
        message = call(client, name, room, **options).choices[0].message
        calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or ()]
        return message.content, calls

    alone = [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        together = list(pool.map(run, jobs))
    assert together == alone
    for job, (_, calls) in zip(jobs, together, strict=True):
        if job["tool_choice"] != "none":
            for function, arguments in calls:
                jsonschema.validate(json.loads(arguments), SCHEMAS[function])
    if app.state.service.scheduler.max_running > 1:
        assert app.state.service.scheduler.stats.largest_decode_batch > 1
