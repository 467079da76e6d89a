"""The sampling surface through the official ``openai`` client: logprobs, n, several prompts,
echo, penalties, logit_bias, vLLM's min_tokens/stop_token_ids/ignore_eos, ignored fields.

Exact answers are checked against a reference loop over ``model.py`` (prefill, then one
decode per token, the penalty formulas written out plainly), so these hold for any model
that satisfies the contract, not only the demo.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.llm.tokenizer import Tokenizer
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model

from .conftest import live_server, make_settings

TOKENS = 10
PROMPT = "Tell me a story about a lighthouse"


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
def model(app: FastAPI, client: openai.OpenAI) -> Model:
    return app.state.service.model


@pytest.fixture(scope="module")
def tokenizer(model: Model) -> Tokenizer:
    return model.tokenizer


def max_running(app: FastAPI) -> int:
    return app.state.service.scheduler.max_running


VLLM_EXTENSIONS = ("repetition_penalty", "min_tokens", "stop_token_ids", "ignore_eos")


def with_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """Greedy and short unless asked otherwise; vLLM's extensions go in ``extra_body``."""
    options = {"max_tokens": TOKENS, "temperature": 0, **options}
    extra = {key: options.pop(key) for key in VLLM_EXTENSIONS if key in options}
    if extra:
        options["extra_body"] = {**options.get("extra_body", {}), **extra}
    return options


def complete(client: openai.OpenAI, name: str, prompt: Any = PROMPT, **options: Any) -> Any:
    return client.completions.create(model=name, prompt=prompt, **with_defaults(options))


def chat(client: openai.OpenAI, name: str, content: str = PROMPT, **options: Any) -> Any:
    return client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": content}], **with_defaults(options)
    )


Adjust = Callable[[np.ndarray, list[int], list[int]], np.ndarray]  # logits, prompt, generated


def reference_greedy(model: Model, prompt: list[int], steps: int, adjust: Adjust) -> list[int]:
    """Greedy tokens from ``model.py`` directly, one sequence, ``adjust`` applied per step."""
    logits, caches = model.prefill([prompt])
    generated: list[int] = []
    for _ in range(steps):
        token = int(np.argmax(adjust(np.array(logits[0], dtype=np.float64), prompt, generated)))
        generated.append(token)
        logits, caches = model.decode([token], caches)
    return generated


def log_softmax(row: np.ndarray) -> np.ndarray:
    row = np.asarray(row, dtype=np.float64)
    shifted = row - row.max()
    return shifted - math.log(float(np.exp(shifted).sum()))


# --- logprobs -------------------------------------------------------------------------
def test_chat_logprobs_are_the_models_own(
    client: openai.OpenAI, name: str, model: Model, tokenizer: Tokenizer
) -> None:
    answer = chat(client, name, logprobs=True, top_logprobs=3)
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}])
    logits, _ = model.prefill([prompt])
    expected = log_softmax(logits[0])
    first = content[0]
    best = int(np.argmax(expected))
    assert first.token == tokenizer.decode([best])
    assert first.logprob == pytest.approx(expected[best], abs=1e-4)
    assert first.bytes == list(first.token.encode())
    ranked = sorted(range(len(expected)), key=lambda i: -expected[i])[:3]
    assert [t.logprob for t in first.top_logprobs] == pytest.approx(
        [expected[i] for i in ranked], abs=1e-4
    )
    for entry in content:  # greedy: the chosen token is the most likely one
        assert len(entry.top_logprobs) == 3
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)
        assert entry.logprob <= 0


def test_chat_logprobs_stream_as_they_answer(client: openai.OpenAI, name: str) -> None:
    whole = chat(client, name, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    chunks = list(chat(client, name, logprobs=True, top_logprobs=2, stream=True))
    streamed = [
        e
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content
    ]
    assert [(e.token, round(e.logprob, 5)) for e in streamed] == [
        (e.token, round(e.logprob, 5)) for e in whole
    ]
    assert chat(client, name).choices[0].logprobs is None


def test_completion_logprobs_and_offsets(client: openai.OpenAI, name: str) -> None:
    answer = complete(client, name, logprobs=2)
    choice = answer.choices[0]
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == answer.usage.completion_tokens
    assert logprobs.text_offset[0] == 0
    for token, offset, following in zip(
        logprobs.tokens, logprobs.text_offset, [*logprobs.text_offset[1:], None], strict=True
    ):
        if following is not None:
            assert following == offset + len(token)
    for token, logprob, top in zip(
        logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True
    ):
        assert token in top and top[token] == pytest.approx(logprob)
        assert 1 <= len(top) <= 3
    zero = complete(client, name, logprobs=0).choices[0].logprobs
    assert zero.tokens == logprobs.tokens
    assert all(len(top) == 1 for top in zero.top_logprobs)


def test_echo_puts_the_prompt_first(client: openai.OpenAI, name: str, tokenizer: Tokenizer) -> None:
    plain = complete(client, name).choices[0].text
    assert complete(client, name, echo=True).choices[0].text == PROMPT + plain
    ids = tokenizer.encode(PROMPT)
    assert complete(client, name, ids, echo=True).choices[0].text == tokenizer.decode(ids) + plain
    chunks = list(complete(client, name, echo=True, stream=True))
    assert chunks[0].choices[0].text == PROMPT
    assert "".join(c.choices[0].text for c in chunks) == PROMPT + plain


# --- n and several prompts ---------------------------------------------------------------
def test_n_choices_share_one_prefill(client: openai.OpenAI, name: str, app: FastAPI) -> None:
    if max_running(app) < 3:
        with pytest.raises(openai.BadRequestError) as refused:
            complete(client, name, n=3)
        assert refused.value.response.json()["error"]["param"] == "n"
        return
    stats = app.state.service.scheduler.stats
    prefills = stats.prefill_calls
    options = {"n": 3, "temperature": 1.0, "seed": 11, "ignore_eos": True}
    answer = complete(client, name, **options)
    assert stats.prefill_calls == prefills + 1, "the three choices were prefilled separately"
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert answer.usage.completion_tokens == 3 * TOKENS
    texts = [c.text for c in answer.choices]
    assert len(set(texts)) > 1, "every choice sampled the same tokens"
    assert [c.text for c in complete(client, name, **options).choices] == texts
    single = complete(client, name, temperature=1.0, seed=11, ignore_eos=True)
    assert single.choices[0].text == texts[0]
    streamed: dict[int, str] = {}
    finished = set()
    for chunk in complete(client, name, stream=True, **options):
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finished.add(choice.index)
    assert [streamed[i] for i in range(3)] == texts and finished == {0, 1, 2}
    greedy = chat(client, name, n=2)
    assert greedy.choices[0].message.content == greedy.choices[1].message.content


def test_chat_n_streams_each_choice(client: openai.OpenAI, name: str, app: FastAPI) -> None:
    options = {"n": 2, "temperature": 1.0, "seed": 5}
    if max_running(app) < 2:  # a prompt's choices run together: one slot cannot hold two
        with pytest.raises(openai.BadRequestError) as refused:
            list(chat(client, name, stream=True, **options))
        assert refused.value.response.json()["error"]["param"] == "n"
        return
    whole = chat(client, name, **options)
    parts: dict[int, str] = {0: "", 1: ""}
    roles = set()
    for chunk in chat(client, name, stream=True, **options):
        for choice in chunk.choices:
            parts[choice.index] += choice.delta.content or ""
            if choice.delta.role:
                roles.add(choice.index)
    assert [parts[0], parts[1]] == [c.message.content for c in whole.choices]
    assert roles == {0, 1}


def test_several_prompts_in_one_completion(client: openai.OpenAI, name: str, app: FastAPI) -> None:
    prompts = ["First prompt", "Second, longer prompt here"]
    alone = [complete(client, name, p).choices[0].text for p in prompts]
    n = 2 if max_running(app) >= 2 else 1
    answer = complete(client, name, prompts, n=n)
    assert [c.index for c in answer.choices] == list(range(2 * n))
    assert [c.text for c in answer.choices] == [text for text in alone for _ in range(n)]
    single = [complete(client, name, p) for p in prompts]
    assert answer.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in single)
    assert answer.usage.completion_tokens == n * sum(s.usage.completion_tokens for s in single)


# --- penalties, bias and vLLM's extensions ---------------------------------------------
def test_penalties_and_bias_match_the_reference(
    client: openai.OpenAI, name: str, model: Model, tokenizer: Tokenizer
) -> None:
    prompt = tokenizer.encode("abc abc abc abc")
    boosted = tokenizer.encode("a")[-1]

    def adjust(logits: np.ndarray, seen: list[int], generated: list[int]) -> np.ndarray:
        logits[boosted] += 3.0  # logit_bias first, then the penalties (vLLM's order)
        for token in set(seen) | set(generated):  # repetition_penalty 1.3 (CTRL)
            logits[token] = logits[token] / 1.3 if logits[token] > 0 else logits[token] * 1.3
        for token in set(generated):  # frequency 0.7 per time, presence 0.4 once
            logits[token] -= 0.7 * generated.count(token) + 0.4
        return logits

    expected = reference_greedy(model, prompt, 16, adjust)
    answer = complete(
        client,
        name,
        prompt,
        max_tokens=16,
        ignore_eos=True,
        frequency_penalty=0.7,
        presence_penalty=0.4,
        logit_bias={str(boosted): 3.0},
        repetition_penalty=1.3,
    )
    assert answer.choices[0].text == tokenizer.decode(expected)
    plain = reference_greedy(model, prompt, 16, lambda logits, _p, _g: logits)
    assert plain != expected, "the adjustments changed nothing: the test shows nothing"


def test_logit_bias_forces_and_bans(client: openai.OpenAI, name: str, tokenizer: Tokenizer) -> None:
    x = tokenizer.encode("x")[-1]
    forced = complete(client, name, logit_bias={str(x): 100}, max_tokens=5, ignore_eos=True)
    assert forced.choices[0].text == tokenizer.decode([x] * 5)
    plain = complete(client, name, logprobs=0)
    first = plain.choices[0].logprobs.tokens[0]
    first_id = tokenizer.encode(first)[-1] if first != "\ufffd" else None
    if first_id is not None:
        banned = complete(client, name, logit_bias={str(first_id): -100}, logprobs=0)
        assert banned.choices[0].logprobs.tokens[0] != first


def test_stop_token_ids_min_tokens_and_ignore_eos(
    client: openai.OpenAI, name: str, tokenizer: Tokenizer
) -> None:
    x = tokenizer.encode("x")[-1]
    y = tokenizer.encode("y")[-1]
    bias = {str(x): 100}  # every step would choose x
    stopped = complete(client, name, logit_bias=bias, stop_token_ids=[x])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == "" and stopped.usage.completion_tokens == 1
    held = complete(
        client,
        name,
        logit_bias={str(x): 100, str(y): 50},
        stop_token_ids=[x],
        min_tokens=3,
    )
    # x is banned for the first 3 tokens (y wins), then chosen and stops the sequence
    assert held.choices[0].text == tokenizer.decode([y] * 3)
    assert held.usage.completion_tokens == 4 and held.choices[0].finish_reason == "stop"
    eos = min(tokenizer.eos_token_ids)
    ended = complete(client, name, logit_bias={str(eos): 100})
    assert ended.choices[0].finish_reason == "stop" and ended.usage.completion_tokens == 1
    kept = complete(client, name, logit_bias={str(eos): 100}, ignore_eos=True)
    assert kept.choices[0].finish_reason == "length" and kept.usage.completion_tokens == TOKENS


# --- tolerance ----------------------------------------------------------------------------
def test_fields_that_change_nothing_are_accepted(client: openai.OpenAI, name: str) -> None:
    plain = chat(client, name).choices[0].message.content
    tolerant = chat(
        client,
        name,
        user="u-1",
        store=False,
        metadata={"team": "search"},
        service_tier="auto",
        prompt_cache_key="k",
        safety_identifier="s",
        parallel_tool_calls=True,
        modalities=["text"],
        prediction={"type": "content", "content": "a guess"},
    )
    assert tolerant.choices[0].message.content == plain
    chunks = chat(client, name, stream=True, stream_options={"include_obfuscation": False})
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain
    with pytest.raises(openai.BadRequestError) as refused:
        chat(client, name, extra_body={"temprature": 0.5})
    assert refused.value.response.json()["error"]["param"] == "temprature"


# --- many options in one batch ------------------------------------------------------------
def test_mixed_options_in_one_batch_each_get_their_own(
    client: openai.OpenAI, name: str, app: FastAPI, tokenizer: Tokenizer
) -> None:
    x = tokenizer.encode("x")[-1]
    n = 2 if max_running(app) >= 2 else 1
    requests: list[dict[str, Any]] = [
        {"prompt": f"Request {i}: {'y' * i}", "max_tokens": 12} for i in range(12)
    ]
    extras = [
        {"frequency_penalty": 1.5},
        {"presence_penalty": -1.0},
        {"logit_bias": {str(x): 100}},
        {"logprobs": 3},
        {"temperature": 1.0, "seed": 3},
        {"temperature": 0.8, "top_p": 0.9, "seed": 4, "n": n},
        {"repetition_penalty": 1.5},
        {"stop": ["e", "a"]},
        {"min_tokens": 5, "ignore_eos": True},
        {"echo": True},
        {},
        {"temperature": 1.0, "seed": 9, "logprobs": 1, "frequency_penalty": 0.5},
    ]
    for request, extra in zip(requests, extras, strict=True):
        request.update(extra)

    def run(request: dict[str, Any]) -> list[tuple[str, Any]]:
        answer = complete(client, name, **request)
        return [(c.text, c.logprobs and c.logprobs.token_logprobs) for c in answer.choices]

    alone = [run(r) for r in requests]
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        together = list(pool.map(run, requests))
    for solo, batched in zip(alone, together, strict=True):
        assert [t for t, _ in batched] == [t for t, _ in solo]
        for (_, a), (_, b) in zip(solo, batched, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                assert b == pytest.approx(a, abs=1e-4)
    scheduler = app.state.service.scheduler
    if scheduler.max_running > 1:
        assert scheduler.stats.largest_decode_batch > 1
