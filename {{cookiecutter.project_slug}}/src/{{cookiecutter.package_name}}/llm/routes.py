"""OpenAI-compatible text generation: ``/v1/completions`` and ``/v1/chat/completions``.

Streaming answers are server-sent events: one ``data: {json}`` chunk per
batch of new text, ending with ``data: [DONE]``. A stream's status line is
sent only once its first token exists, so a full queue (503), a timeout in
the queue (504) or a model failure still answer with a real HTTP status; an
error after that arrives as a ``data: {"error": ...}`` event, which the
``openai`` client raises. A client that goes away cancels its sequence: the
scheduler frees the slot at its next step.
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
from .sampling import SamplingParams
from .scheduler import Generation, GenerationEvent
from .schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    GenerationParameters,
    Usage,
)

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
    summary="Complete a prompt (stream=true: server-sent events)",
    responses=RESPONSES,
)
async def create_completion(
    body: CompletionRequest, request: Request, service: GenerationServiceDep
) -> Any:
    settings = get_settings(request)
    check_model(body.model, settings)
    prompt_ids = await _prompt_ids(body.prompt, service)
    params = sampling_params(
        body, body.max_tokens, len(prompt_ids), service.context_length, settings, "prompt"
    )
    generation = service.submit(prompt_ids, params)
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(text: str, finish: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": settings.model_name,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
        }

    if body.stream:
        return await _stream(request, generation, [], chunk, body.include_usage)
    text, finish = await _until_disconnected(request, generation, _collect(generation))
    return CompletionResponse(
        id=completion_id,
        created=created,
        model=settings.model_name,
        choices=[CompletionChoice(text=text, finish_reason=finish)],
        usage=_usage(generation),
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
    messages = [{"role": m.role, "content": m.text} for m in body.messages]
    with tracing.span("tokenize"):
        prompt_ids = await run_in_threadpool(service.model.tokenizer.apply_chat_template, messages)
    max_tokens = body.max_completion_tokens or body.max_tokens
    params = sampling_params(
        body, max_tokens, len(prompt_ids), service.context_length, settings, "messages"
    )
    generation = service.submit(prompt_ids, params)
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, str], finish: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": settings.model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    if body.stream:
        opening = [chunk({"role": "assistant", "content": ""}, None)]
        return await _stream(
            request,
            generation,
            opening,
            lambda text, finish: chunk({"content": text} if text else {}, finish),
            body.include_usage,
        )
    text, finish = await _until_disconnected(request, generation, _collect(generation))
    return ChatCompletionResponse(
        id=completion_id,
        created=created,
        model=settings.model_name,
        choices=[ChatChoice(message=AssistantMessage(content=text), finish_reason=finish)],
        usage=_usage(generation),
    )


def sampling_params(
    body: GenerationParameters,
    max_tokens: int | None,
    prompt_tokens: int,
    context_length: int,
    settings: Settings,
    prompt_param: str,
) -> SamplingParams:
    """Check the request against the context length and limits; fill in the defaults."""
    if prompt_tokens == 0:
        raise InvalidInput("the prompt is empty", param=prompt_param)
    if prompt_tokens >= context_length:
        raise InvalidInput(
            f"this model's maximum context length is {context_length} tokens, but the prompt has "
            f"{prompt_tokens} tokens; shorten the prompt",
            param=prompt_param,
            code="context_length_exceeded",
        )
    if max_tokens is None:
        max_tokens = min(settings.default_max_tokens, context_length - prompt_tokens)
    elif max_tokens > settings.max_tokens_limit:
        raise InvalidInput(
            f"max_tokens must be at most {settings.max_tokens_limit}", param="max_tokens"
        )
    elif prompt_tokens + max_tokens > context_length:
        raise InvalidInput(
            f"this model's maximum context length is {context_length} tokens; the prompt has "
            f"{prompt_tokens} tokens and max_tokens asks for {max_tokens} more; lower max_tokens "
            "or shorten the prompt",
            param="max_tokens",
            code="context_length_exceeded",
        )
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=body.stop_sequences,
    )


async def _prompt_ids(
    prompt: str | list[int] | list[str] | list[list[int]], service: GenerationService
) -> list[int]:
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
        if len(prompt) != 1:
            raise InvalidInput(
                "one prompt per request is supported; send several requests", param="prompt"
            )
        prompt = prompt[0]
    if isinstance(prompt, str):
        with tracing.span("tokenize"):
            return await run_in_threadpool(service.model.tokenizer.encode, prompt)
    vocab = service.model.tokenizer.vocab_size
    if any(not 0 <= token < vocab for token in prompt):
        raise InvalidInput(f"token ids must be in [0, {vocab})", param="prompt")
    return list(prompt)


def _usage(generation: Generation) -> Usage:
    return Usage(
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
        total_tokens=generation.prompt_tokens + generation.completion_tokens,
    )


async def _collect(generation: Generation) -> tuple[str, str]:
    parts: list[str] = []
    finish = "length"
    async for event in generation.events():
        parts.append(event.text)
        finish = event.finish_reason or finish
    return "".join(parts), finish


async def _until_disconnected(
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


async def _stream(
    request: Request,
    generation: Generation,
    opening: list[dict[str, Any]],
    chunk: Callable[[str, str | None], dict[str, Any]],
    include_usage: bool,
) -> StreamingResponse:
    # wait for the first token before the status line: errors until then get a real status
    first = await _until_disconnected(request, generation, generation.next_event())
    return StreamingResponse(
        _events(generation, first, opening, chunk, include_usage),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _events(
    generation: Generation,
    first: GenerationEvent,
    opening: list[dict[str, Any]],
    chunk: Callable[[str, str | None], dict[str, Any]],
    include_usage: bool,
) -> AsyncIterator[str]:
    next_event: Callable[[], Awaitable[GenerationEvent]] = generation.next_event
    stream = tracing.stream_span()
    try:
        for item in opening:
            yield _sse(item)
        event = first
        while True:
            if event.text:
                yield _sse(chunk(event.text, None))
            if event.finish_reason is not None:
                yield _sse(chunk("", event.finish_reason))
                break
            event = await next_event()
        if include_usage:
            final = chunk("", None)
            final["choices"] = []
            final["usage"] = _usage(generation).model_dump()
            yield _sse(final)
    except ServiceError as exc:  # failed mid-stream: the status line is already sent
        yield _sse(error_body(exc.message, exc.error_type, exc.code, exc.param))
    finally:
        generation.cancel()  # no-op once finished; frees the slot when the client went away
        if stream is not None:
            stream.end()
    yield "data: [DONE]\n\n"


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"
