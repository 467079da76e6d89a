"""OpenAI-compatible text generation: ``/v1/completions`` and ``/v1/chat/completions``.

Streaming answers are server-sent events: one ``data: {json}`` chunk per
batch of new text, ending with ``data: [DONE]``. A stream's status line is
sent only once its first token exists, so a full queue (503), a timeout in
the queue (504) or a model failure still answer with a real HTTP status; an
error after that arrives as a ``data: {"error": ...}`` event, which the
``openai`` client raises. A client that goes away cancels its sequences: the
scheduler frees their slots at its next step.

A request may ask for ``n`` choices (and completions for several prompts):
they run as sequences of one ``Generation``, and their chunks carry each
choice's ``index``; logprobs ride on the chunk of the tokens they describe.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..serving import tracing
from ..serving.deps import disconnect_waiter, get_settings
from ..serving.errors import ClientClosedRequest, InvalidInput, ServiceError, error_body
from ..serving.openai_models import check_model
from ..serving.responses import ERROR_RESPONSES, ErrorBody
from ..settings import Settings
from .generation import GenerationService, GenerationServiceDep
from .logprobs import chat_content, completion_logprobs
from .sampling import SamplingParams, TokenLogprob
from .scheduler import Generation, GenerationEvent
from .schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprobs,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    GenerationParameters,
    Tool,
    Usage,
)
from .tokenizer import Tokenizer
from .tools import CallStream, call_grammar, parse, render, template_messages

router = APIRouter(prefix="/v1", tags=["openai"])
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
T = TypeVar("T")
RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorBody, "description": "No model of that name is served here"},
}


@router.post(
    "/completions",
    response_model=CompletionResponse,
    summary="Complete one or several prompts (stream=true: server-sent events)",
    responses=RESPONSES,
)
async def create_completion(
    body: CompletionRequest, request: Request, service: GenerationServiceDep
) -> Any:
    settings = get_settings(request)
    check_model(body.model, settings)
    prompts = await _prompt_ids(body.prompt, service)
    n = _choices(body.n, len(prompts), settings)
    params = await sampling_params(
        body, body.max_tokens, prompts, service, settings, "prompt", body.logprobs
    )
    echoes = [_echo(body.prompt, i, p, service) for i, p in enumerate(prompts)] if body.echo else []
    generation = service.submit(prompts, params, n)
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    tokenizer = service.model.tokenizer
    offsets = [len(echoes[i // n]) if echoes else 0 for i in range(len(prompts) * n)]

    def chunk(
        index: int, text: str, finish: str | None, tokens: tuple[TokenLogprob, ...] = ()
    ) -> list[dict[str, Any]]:
        logprobs = None
        if params.logprobs is not None and (tokens or text):
            logprobs = completion_logprobs(tokenizer, tokens, offsets[index])
            offsets[index] += sum(len(token) for token in logprobs["tokens"])
        choice = {"index": index, "text": text, "finish_reason": finish, "logprobs": logprobs}
        return [
            {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": settings.model_name,
                "choices": [choice],
            }
        ]

    if body.stream:
        opening = (
            [c for i in range(len(offsets)) for c in chunk(i, echoes[i // n], None)]
            if echoes
            else []
        )
        return await _stream(request, generation, opening, chunk, body.include_usage)
    choices = []
    for index, (text, finish, tokens) in enumerate(
        await until_disconnected(request, generation, collect(generation))
    ):
        prefix = echoes[index // n] if echoes else ""
        logprobs = None
        if params.logprobs is not None:
            logprobs = completion_logprobs(tokenizer, tokens, len(prefix))
        choices.append(
            CompletionChoice(
                index=index, text=prefix + text, finish_reason=finish, logprobs=logprobs
            )
        )
    return CompletionResponse(
        id=completion_id,
        created=created,
        model=settings.model_name,
        choices=choices,
        usage=usage(generation),
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    summary="Answer a conversation (stream=true: server-sent events)",
    responses=RESPONSES,
)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, service: GenerationServiceDep
) -> Any:
    settings = get_settings(request)
    check_model(body.model, settings)
    if (
        body.max_tokens
        and body.max_completion_tokens
        and body.max_tokens != body.max_completion_tokens
    ):
        raise InvalidInput(
            "max_tokens and max_completion_tokens disagree; send one", param="max_completion_tokens"
        )
    n = _choices(body.n, 1, settings)
    tokenizer = service.model.tokenizer
    generation, params, tools = await start_chat(body, service, settings, n)
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(
        index: int,
        delta: dict[str, Any],
        finish: str | None,
        tokens: tuple[TokenLogprob, ...] = (),
    ) -> dict[str, Any]:
        logprobs = {"content": chat_content(tokenizer, tokens), "refusal": None} if tokens else None
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": settings.model_name,
            "choices": [
                {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
            ],
        }

    if body.stream:
        opening = [[chunk(i, {"role": "assistant", "content": ""}, None)] for i in range(n)]
        calls = [CallStream(tools) for _ in range(n)] if tools else None

        def chunks(
            index: int, text: str, finish: str | None, tokens: tuple[TokenLogprob, ...] = ()
        ) -> list[dict[str, Any]]:
            if calls is None:
                return [chunk(index, {"content": text} if text else {}, finish, tokens)]
            content, found = calls[index].push(text, final=finish is not None)
            out = []
            if content or tokens:
                out.append(chunk(index, {"content": content} if content else {}, None, tokens))
            if found:
                out.append(chunk(index, {"tool_calls": found}, None))
            if finish is not None:
                out.append(chunk(index, {}, "tool_calls" if calls[index].calls else finish))
            return out

        return await _stream(
            request, generation, [c for group in opening for c in group], chunks, body.include_usage
        )
    choices = []
    for index, (text, finish, tokens) in enumerate(
        await until_disconnected(request, generation, collect(generation))
    ):
        content, found = parse(text, tools) if tools else (text, [])
        choices.append(
            ChatChoice(
                index=index,
                message=AssistantMessage(content=content, tool_calls=found),  # type: ignore[arg-type]
                finish_reason="tool_calls" if found else finish,
                logprobs=None
                if params.logprobs is None
                else ChatLogprobs.model_validate({"content": chat_content(tokenizer, tokens)}),
            )
        )
    return ChatCompletionResponse(
        id=completion_id,
        created=created,
        model=settings.model_name,
        choices=choices,
        usage=usage(generation),
    )


async def start_chat(
    body: ChatCompletionRequest, service: GenerationService, settings: Settings, n: int
) -> tuple[Generation, SamplingParams, list[Tool] | None]:
    """Tokenise the conversation (tools listed), check the options, and queue ``n`` choices.

    Returns the generation, its parameters and the tools in play (None: no tool calling).
    The Responses API (``llm/responses.py``) starts its answers here too."""
    mode = body.tool_mode
    tools = body.tools if mode is not None else None
    with tracing.span("tokenize"):
        prompt_ids = await run_in_threadpool(_chat_prompt, body, tools, service.model.tokenizer)
    forced = None
    if mode is not None and mode != "auto":  # "required" or one named function
        parallel = mode == "required" and body.parallel_tool_calls is not False
        forced = call_grammar(body.tools or (), None if mode == "required" else mode, parallel)
    max_tokens = body.max_completion_tokens or body.max_tokens
    params = await sampling_params(
        body,
        max_tokens,
        [prompt_ids],
        service,
        settings,
        "messages",
        body.top_logprobs_count,
        forced,
    )
    return service.submit([prompt_ids], params, n), params, tools


def _chat_prompt(
    body: ChatCompletionRequest, tools: list[Tool] | None, tokenizer: Tokenizer
) -> list[int]:
    """The conversation as token ids: through the model's own template when it renders tools
    (Hugging Face), otherwise in the default format of ``llm/tools.py``."""
    if getattr(tokenizer, "supports_tools", False):
        listed = [tool.model_dump(exclude_none=True) for tool in tools] if tools else None
        return tokenizer.apply_chat_template(  # type: ignore[call-arg]
            template_messages(body.messages), tools=listed
        )
    return tokenizer.apply_chat_template(render(body.messages, tools))


def _choices(n: int | None, prompts: int, settings: Settings) -> int:
    """``n``, checked: the request's sequences (prompts x n) within MAX_SEQUENCES_PER_REQUEST."""
    n = n or 1
    limit = settings.max_sequences_per_request
    if n * prompts > limit:
        raise InvalidInput(
            f"{prompts} prompt(s) x n={n} asks for {n * prompts} sequences; at most {limit} per "
            "request (MAX_SEQUENCES_PER_REQUEST)",
            param="n" if n > 1 else "prompt",
        )
    return n


async def sampling_params(
    body: GenerationParameters,
    max_tokens: int | None,
    prompts: list[list[int]],
    service: GenerationService,
    settings: Settings,
    prompt_param: str,
    logprobs: int | None,
    forced_calls: str | None = None,
) -> SamplingParams:
    """Check the request against the context length, vocabulary and limits; fill in defaults.

    ``forced_calls`` is the grammar of the tool calls a ``tool_choice`` demands."""
    context_length = service.context_length
    longest = max(len(p) for p in prompts)
    if min(len(p) for p in prompts) == 0:
        raise InvalidInput("the prompt is empty", param=prompt_param)
    if longest >= context_length:
        raise InvalidInput(
            f"this model's maximum context length is {context_length} tokens, but the prompt has "
            f"{longest} tokens; shorten the prompt",
            param=prompt_param,
            code="context_length_exceeded",
        )
    if max_tokens is None:
        max_tokens = min(settings.default_max_tokens, context_length - longest)
    elif max_tokens > settings.max_tokens_limit:
        raise InvalidInput(
            f"max_tokens must be at most {settings.max_tokens_limit}", param="max_tokens"
        )
    elif longest + max_tokens > context_length:
        raise InvalidInput(
            f"this model's maximum context length is {context_length} tokens; the prompt has "
            f"{longest} tokens and max_tokens asks for {max_tokens} more; lower max_tokens "
            "or shorten the prompt",
            param="max_tokens",
            code="context_length_exceeded",
        )
    if body.min_tokens and body.min_tokens > max_tokens:
        raise InvalidInput(
            f"min_tokens ({body.min_tokens}) exceeds max_tokens ({max_tokens})", param="min_tokens"
        )
    vocab = service.model.vocab_size
    bias = tuple((int(token), value) for token, value in (body.logit_bias or {}).items())
    for name, ids in (
        ("logit_bias", [t for t, _ in bias]),
        ("stop_token_ids", body.stop_token_ids),
    ):
        outside = [t for t in ids or () if not 0 <= t < vocab]
        if outside:
            raise InvalidInput(
                f"{name}: token id {outside[0]} is outside the vocabulary [0, {vocab})", param=name
            )
    grammar = None
    if body.response_format is not None and body.response_format.constrained:
        if forced_calls is not None:
            raise InvalidInput(
                "a forced tool_choice and a response_format cannot both shape the answer",
                param="tool_choice",
            )
        with tracing.span("grammar.compile"):
            grammar = await run_in_threadpool(
                service.grammar.json_schema, body.response_format.schema_or_none, "response_format"
            )
    elif forced_calls is not None:
        with tracing.span("grammar.compile"):
            grammar = await run_in_threadpool(service.grammar.lark, forced_calls, "tools")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=body.stop_sequences,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        repetition_penalty=body.repetition_penalty or 1.0,
        logit_bias=bias,
        min_tokens=body.min_tokens or 0,
        stop_token_ids=frozenset(body.stop_token_ids or ()),
        ignore_eos=bool(body.ignore_eos),
        logprobs=logprobs,
        grammar=grammar,
    )


async def _prompt_ids(
    prompt: str | list[int] | list[str] | list[list[int]], service: GenerationService
) -> list[list[int]]:
    """Every prompt of the request as token ids (text is tokenised off the event loop)."""
    many = isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], str | list)
    items: list[Any] = list(prompt) if many else [prompt]  # type: ignore[arg-type]
    tokenizer = service.model.tokenizer
    if any(isinstance(item, str) for item in items):
        with tracing.span("tokenize"):
            return await run_in_threadpool(
                lambda: [
                    tokenizer.encode(item) if isinstance(item, str) else list(item)
                    for item in items
                ]
            )
    vocab = tokenizer.vocab_size
    for index, ids in enumerate(items):
        if any(not 0 <= token < vocab for token in ids):
            where = f"prompt[{index}]" if many else "prompt"
            raise InvalidInput(f"{where}: token ids must be in [0, {vocab})", param="prompt")
    return [list(ids) for ids in items]


def _echo(
    prompt: str | list[int] | list[str] | list[list[int]],
    index: int,
    ids: list[int],
    service: GenerationService,
) -> str:
    """The text ``echo`` puts before choice text: the prompt as sent, or its ids decoded."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[index], str):
        return str(prompt[index])
    return service.model.tokenizer.decode(ids)


def usage(generation: Generation) -> Usage:
    return Usage(
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
        total_tokens=generation.prompt_tokens + generation.completion_tokens,
    )


async def collect(generation: Generation) -> list[tuple[str, str, list[TokenLogprob]]]:
    """Per choice, in index order: its text, finish reason and logprobs."""
    count = len(generation.sequences)
    parts: list[list[str]] = [[] for _ in range(count)]
    tokens: list[list[TokenLogprob]] = [[] for _ in range(count)]
    finish = ["length"] * count
    async for event in generation.events():
        parts[event.index].append(event.text)
        tokens[event.index] += event.logprobs
        finish[event.index] = event.finish_reason or finish[event.index]
    return [("".join(p), f, t) for p, f, t in zip(parts, finish, tokens, strict=True)]


async def until_disconnected(
    request: Request, generation: Generation, work: Coroutine[Any, Any, T]
) -> T:
    """Await ``work``; if the client disconnects first, cancel the sequence (freed next step)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnect_waiter(request)())
    try:
        done, _ = await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the server is cancelling this request
        task.cancel()
        generation.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    generation.cancel()
    raise ClientClosedRequest("the client closed the connection")


# (index, text, finish_reason, logprobs=()) -> the SSE chunks (dicts) that carry it
Chunk = Callable[..., list[dict[str, Any]]]


async def _stream(
    request: Request,
    generation: Generation,
    opening: list[dict[str, Any]],
    chunk: Chunk,
    include_usage: bool,
) -> StreamingResponse:
    # wait for the first token before the status line: errors until then get a real status
    first = await until_disconnected(request, generation, generation.next_event())
    return StreamingResponse(
        _events(generation, first, opening, chunk, include_usage),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _events(
    generation: Generation,
    first: GenerationEvent,
    opening: list[dict[str, Any]],
    chunk: Chunk,
    include_usage: bool,
) -> AsyncIterator[str]:
    next_event: Callable[[], Awaitable[GenerationEvent]] = generation.next_event
    stream = tracing.stream_span()
    try:
        for item in opening:
            yield sse(item)
        event = first
        while True:
            if event.text or event.logprobs:
                for item in chunk(event.index, event.text, None, event.logprobs):
                    yield sse(item)
            if event.finish_reason is not None:
                for item in chunk(event.index, "", event.finish_reason):
                    yield sse(item)
                if generation.finished:
                    break
            event = await next_event()
        if include_usage:
            final = {**chunk(0, "", None)[-1], "choices": []}
            final["usage"] = usage(generation).model_dump()
            yield sse(final)
    except ServiceError as exc:  # failed mid-stream: the status line is already sent
        yield sse(error_body(exc.message, exc.error_type, exc.code, exc.param))
    finally:
        generation.cancel()  # no-op once finished; frees the slots when the client went away
        if stream is not None:
            stream.end()
    yield "data: [DONE]\n\n"


def sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"
