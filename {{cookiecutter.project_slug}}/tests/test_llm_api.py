"""The OpenAI-compatible API, driven by the official ``openai`` client against a live server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.llm.tokenizer import Tokenizer
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model

from .conftest import live_server, make_settings
from .llm_support import wait_until

TOKENS = 12


@pytest.fixture(scope="module")
def app(model_path: Path) -> FastAPI:
    return create_app(make_settings(model_path, intra_op_threads=1))


@pytest.fixture(scope="module")
def address(app: FastAPI) -> Iterator[str]:
    with live_server(app) as host_port:
        yield host_port


@pytest.fixture(scope="module")
def client(address: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://{address}/v1", api_key="unused", max_retries=0, timeout=60
    )


@pytest.fixture(scope="module")
def model(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


@pytest.fixture(scope="module")
def tokenizer(app: FastAPI, address: str) -> Tokenizer:
    """The served model's tokenizer (the app is started by ``address``)."""
    return app.state.service.model.tokenizer


def check_finish(choice: Any, usage: Any, limit: int) -> None:
    """A choice ends at the token limit, or earlier because the model chose to stop."""
    if choice.finish_reason == "length":
        assert usage.completion_tokens == limit
    else:
        assert choice.finish_reason == "stop" and usage.completion_tokens < limit


def complete(client: openai.OpenAI, model: str, prompt: str, **options: Any) -> Any:
    options = {"max_tokens": TOKENS, "temperature": 0, **options}
    return client.completions.create(model=model, prompt=prompt, **options)


def chat(client: openai.OpenAI, model: str, content: str, **options: Any) -> Any:
    options = {"max_tokens": TOKENS, "temperature": 0, **options}
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **options
    )


def test_lists_and_retrieves_the_served_model(client: openai.OpenAI, app: FastAPI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [app.state.settings.model_name]
    assert client.models.retrieve(models[0].id).id == models[0].id
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_completion_counts_tokens_and_is_repeatable(
    client: openai.OpenAI, model: str, tokenizer: Tokenizer
) -> None:
    prompt = "Once upon a time, in a café,"
    first = complete(client, model, prompt)
    again = complete(client, model, prompt)
    assert first.choices[0].text == again.choices[0].text
    assert first.object == "text_completion" and first.model == model
    usage = first.usage
    assert usage.prompt_tokens == len(tokenizer.encode(prompt))
    check_finish(first.choices[0], usage, TOKENS)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    ids = complete(client, model, tokenizer.encode(prompt))  # a prompt of token ids
    assert ids.choices[0].text == first.choices[0].text


def test_completion_stream_equals_the_whole_answer(client: openai.OpenAI, model: str) -> None:
    whole = complete(client, model, "Streaming works")
    chunks = list(
        complete(
            client, model, "Streaming works", stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason and set(finishes[:-1]) <= {None}
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_equals_the_whole_answer(client: openai.OpenAI, model: str) -> None:
    whole = chat(client, model, "Hello there")
    message = whole.choices[0].message
    assert message.role == "assistant" and message.content is not None
    assert whole.object == "chat.completion"
    check_finish(whole.choices[0], whole.usage, TOKENS)
    chunks = list(chat(client, model, "Hello there", stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_chat_accepts_system_turns_and_text_parts(client: openai.OpenAI, model: str) -> None:
    response = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}],
            },
        ],
        max_completion_tokens=3,
    )
    check_finish(response.choices[0], response.usage, 3)


def test_stop_sequence_cuts_the_text(client: openai.OpenAI, model: str) -> None:
    full = complete(client, model, "Stop me", max_tokens=24).choices[0].text
    assert len(full) >= 9, f"the model wrote too little to cut: {full!r}"
    stop = full[6:9]
    cut = complete(client, model, "Stop me", max_tokens=24, stop=[stop])
    assert cut.choices[0].text == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = list(complete(client, model, "Stop me", max_tokens=24, stop=stop, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == cut.choices[0].text
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_seed_makes_sampling_repeatable(client: openai.OpenAI, model: str) -> None:
    def sampled(seed: int) -> str:
        return (
            complete(client, model, "Roll the dice", temperature=1.0, top_p=0.9, seed=seed)
            .choices[0]
            .text
        )

    assert sampled(7) == sampled(7)
    assert len({sampled(seed) for seed in (1, 2, 3)}) > 1


def test_concurrent_requests_match_solo_runs(
    client: openai.OpenAI, model: str, app: FastAPI
) -> None:
    """16 sequences batched together each get what they get alone (greedy): no cross-talk."""
    prompts = [f"Request number {i}: {'x' * (i % 5)} tell me something" for i in range(16)]
    alone = [complete(client, model, p).choices[0].text for p in prompts]
    assert len(set(alone)) > 1, "the model answers every prompt alike: no cross-talk to see"

    def run(index: int) -> str:
        if index % 2:  # half of them stream
            return "".join(
                c.choices[0].text for c in complete(client, model, prompts[index], stream=True)
            )
        return complete(client, model, prompts[index]).choices[0].text

    with ThreadPoolExecutor(max_workers=16) as pool:
        together = list(pool.map(run, range(16)))
    assert together == alone
    scheduler = app.state.service.scheduler
    if scheduler.max_running > 1:
        assert scheduler.stats.largest_decode_batch > 1


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    error = exc.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"n": 0}, "n"),
        ({"n": 17}, "n"),
        ({"best_of": 3}, "best_of"),
        ({"logprobs": 6}, "logprobs"),
        ({"echo": True, "logprobs": 1}, "logprobs"),
        ({"suffix": "end"}, "suffix"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"logit_bias": {"999999": 1}}, "logit_bias"),
        ({"logit_bias": {"the": 1}}, "logit_bias"),
        ({"logit_bias": {"1": 101}}, "logit_bias"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"extra_body": {"repetition_penalty": 0}}, "repetition_penalty"),
        ({"extra_body": {"stop_token_ids": [999999]}}, "stop_token_ids"),
        ({"max_tokens": 3, "extra_body": {"min_tokens": 4}}, "min_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10**9}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        ({"prompt": ["one"] * 17}, "prompt"),
        ({"prompt": [[1, 2], [999999]]}, "prompt"),
        ({"prompt": [999999]}, "prompt"),
        ({"prompt": []}, "prompt"),  # "" is empty too, unless the tokenizer adds a BOS token
    ],
)
def test_bad_completion_requests_answer_400(
    client: openai.OpenAI, model: str, options: dict[str, Any], param: str
) -> None:
    options = {"prompt": "hi", **options}
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=model, **options)
    error = error_of(refused.value)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param in error["message"] or error["param"] == "prompt"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools.0.function.name",
        ),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"modalities": ["audio"]}, "modalities.0"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "what is this?"},
                            {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                        ],
                    }
                ]
            },
            "messages.0.content",
        ),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"max_tokens": 5, "max_completion_tokens": 6}, "max_completion_tokens"),
    ],
)
def test_bad_chat_requests_answer_400(
    client: openai.OpenAI, model: str, options: dict[str, Any], param: str
) -> None:
    options = {"messages": [{"role": "user", "content": "hi"}], **options}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model, **options)
    assert error_of(refused.value)["param"] == param


def test_prompt_longer_than_the_context_names_the_limit(
    client: openai.OpenAI, model: str, app: FastAPI, tokenizer: Tokenizer
) -> None:
    context = app.state.service.context_length
    token = tokenizer.encode("x")[-1]
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=model, prompt=[token] * context)
    error = error_of(refused.value)
    assert error["code"] == "context_length_exceeded" and error["param"] == "prompt"
    assert f"{context} tokens" in error["message"]
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=model, prompt=[token] * (context - 10), max_tokens=20)
    assert error_of(refused.value)["param"] == "max_tokens"


def test_unknown_model_answers_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        client.completions.create(model="gpt-nope", prompt="hi")
    assert error_of(refused.value)["code"] == "model_not_found"


class SlowModel(Model):
    """The model, 20 ms per decode step and never ending on its own: a generation outlasts
    the test's other calls."""

    def prefill(self, prompts):  # type: ignore[no-untyped-def]
        logits, caches = super().prefill(prompts)
        return self._endless(logits), caches

    def extend(self, tokens, caches):  # type: ignore[no-untyped-def]
        logits, caches = super().extend(tokens, caches)
        return self._endless(logits), caches

    def decode(self, tokens, caches):  # type: ignore[no-untyped-def]
        time.sleep(0.02)
        logits, caches = super().decode(tokens, caches)
        return self._endless(logits), caches

    def _endless(self, logits: np.ndarray) -> np.ndarray:
        logits = np.array(logits)
        logits[:, sorted(self.tokenizer.eos_token_ids)] = -np.inf
        return logits


def test_one_slot_refuses_when_full_and_frees_the_slot_of_a_client_that_left(
    model_path: Path,
) -> None:
    settings = make_settings(
        model_path,
        max_running_sequences=1,
        max_waiting_sequences=0,
        api_key="k3y",
        intra_op_threads=1,
    )
    app = create_app(settings, model_factory=SlowModel)
    with live_server(app) as address:
        url = f"http://{address}/v1"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        client = openai.OpenAI(base_url=url, api_key="k3y", max_retries=0, timeout=60)
        scheduler = app.state.service.scheduler
        prompt = app.state.service.model.tokenizer.encode("occupy the slot")
        body = {
            "model": settings.model_name,
            "prompt": prompt,
            "max_tokens": min(200, scheduler.context_length - len(prompt)),
            "stream": True,
        }
        headers = {"Authorization": "Bearer k3y"}
        with (
            httpx.Client(timeout=30) as http,
            http.stream("POST", f"{url}/completions", json=body, headers=headers) as held,
        ):
            assert held.status_code == 200
            assert held.headers["content-type"].startswith("text/event-stream")
            # keep the line iterator referenced: a dropped one is closed, and closing it
            # closes the stream, so the client would hang up before the slot is tested
            lines = held.iter_lines()
            assert any(line.startswith("data: ") for line in lines)
            with pytest.raises(openai.APIStatusError) as refused:
                complete(client, settings.model_name, "no room")
            assert refused.value.status_code == 503
            assert refused.value.response.headers["retry-after"]
            assert error_of(refused.value)["code"] == "queue_full"
        # the client hung up mid-stream: its sequence leaves the batch at the next step
        wait_until(lambda: scheduler.stats.dropped_cancelled == 1 and scheduler.running == 0)
        assert scheduler.stats.tokens < 100
        assert complete(client, settings.model_name, "room again", max_tokens=2).choices[0].text


def test_a_stream_whose_model_call_stalls_ends_with_a_timeout_error(model_path: Path) -> None:
    """The first token arrives; then decode hangs past REQUEST_TIMEOUT_S: an error event, not
    a stream that never ends, and the service serves again once the call returns."""
    stall = threading.Event()  # set: decode stalls ...
    release = threading.Event()  # ... until this is set (10 s at most)

    class StallingModel(Model):
        def decode(self, *args: Any, **kwargs: Any) -> Any:
            if stall.is_set():
                release.wait(10)
            return super().decode(*args, **kwargs)

    settings = make_settings(model_path, request_timeout_s=0.5, intra_op_threads=1)
    with live_server(create_app(settings, model_factory=StallingModel)) as address:
        client = openai.OpenAI(base_url=f"http://{address}/v1", api_key="-", max_retries=0)
        stall.set()
        started = time.perf_counter()
        stream = complete(client, settings.model_name, "hang after this", stream=True)
        first = next(iter(stream))
        assert first.choices[0].text
        with pytest.raises(openai.APIError, match=r"no token within 0\.5 s"):
            list(stream)  # while the call is still stalled: it returns only when released
        assert time.perf_counter() - started < 2.2  # the 0.5 s timeout, not the release
        stall.clear()
        release.set()  # the stalled call returns; its sequence is dropped
        assert complete(client, settings.model_name, "again", max_tokens=2).choices[0].text
