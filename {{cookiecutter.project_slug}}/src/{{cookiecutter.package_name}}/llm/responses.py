"""OpenAI's Responses API: ``POST /v1/responses``, served by the chat machinery.

A request becomes a chat request (``instructions`` a system turn, ``input``
the turns, ``function_call``/``function_call_output`` items the assistant's
calls and the tool results, ``text.format`` the response format) and runs
through ``routes.start_chat``; the answer is shaped as output items: one
``message`` with its ``output_text`` and one ``function_call`` per call. With
``stream=true`` the documented event sequence follows (``response.created``,
``response.in_progress``, ``output_item.added``, ``content_part.added``,
``output_text.delta``... ``.done``, ``function_call_arguments.delta``/``.done``,
``response.completed``), each with its ``sequence_number``, so
``client.responses.stream`` assembles it.

Nothing is stored. ``store`` is accepted (as OpenAI's SDKs send it), and
``previous_response_id`` is refused with a 400: a store in one process would
answer differently from one replica to the next behind a load balancer, so
clients send the whole conversation in ``input``, as they do for chat.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..serving.deps import get_settings
from ..serving.errors import InvalidInput, ServiceError, error_body
from ..serving.openai_models import check_model
from .generation import GenerationServiceDep
from .routes import RESPONSES, SSE_HEADERS, collect, sse, start_chat, until_disconnected
from .scheduler import Generation
from .schemas import MAX_TOOLS, TOOL_NAME, ChatCompletionRequest
from .tools import CallStream, parse

router = APIRouter(prefix="/v1", tags=["openai"])


# --- request ------------------------------------------------------------------------
class InputText(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["input_text", "output_text"]
    text: str


class MessageItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[InputText]

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionCallItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function_call_output"]
    call_id: str
    output: str


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    name: str


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: TextFormat | None = None


class ResponseRequest(BaseModel):
    """The fields of ``client.responses.create`` this server honours or knowingly ignores."""

    model_config = ConfigDict(extra="forbid")
    model: str
    input: str | list[InputItem] = Field(description="Text, or the conversation's items.")
    instructions: str | None = Field(None, description="A system turn before the input.")
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    tools: list[FunctionTool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    stream: bool | None = None
    previous_response_id: str | None = None
    # accepted and ignored: nothing is stored, and none of these changes the answer
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    truncation: Literal["disabled"] | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        """Name a non-text part (an image, a file) rather than fail every branch of the union."""
        for i, item in enumerate(value if isinstance(value, list) else ()):
            parts = item.get("content") if isinstance(item, dict) else None
            for j, part in enumerate(parts if isinstance(parts, list) else ()):
                kind = part.get("type") if isinstance(part, dict) else None
                if isinstance(kind, str) and kind not in ("input_text", "output_text"):
                    raise PydanticCustomError(
                        "unsupported_content",
                        "input item {i} content part {j} has type {kind!r}: this model reads "
                        "text only (input_text)",
                        {"i": i, "j": j, "kind": kind[:40]},
                    )
        return value

    @field_validator("previous_response_id")
    @classmethod
    def _nothing_stored(cls, value: str | None) -> str | None:
        if value is not None:
            raise PydanticCustomError(
                "unsupported_parameter",
                "previous_response_id is not supported: this server stores no responses; send "
                "the whole conversation in input",
            )
        return value

    @model_validator(mode="after")
    def _one_format(self) -> ResponseRequest:
        form = self.text.format if self.text else None
        if form is not None and form.type == "json_schema" and not form.name:
            raise PydanticCustomError("invalid_parameter", "text.format json_schema needs a name")
        return self

    def as_chat(self) -> ChatCompletionRequest:
        """The same request in chat-completions terms."""
        messages: list[dict[str, Any]] = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        items = (
            [MessageItem(role="user", content=self.input)]
            if isinstance(self.input, str)
            else self.input
        )
        for item in items:
            if isinstance(item, MessageItem):
                messages.append({"role": item.role, "content": item.text})
            elif isinstance(item, FunctionCallItem):
                call = {"id": item.call_id, "type": "function"}
                call["function"] = {"name": item.name, "arguments": item.arguments}
                last = messages[-1] if messages else None
                if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
                    last["tool_calls"].append(call)
                else:
                    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            else:
                messages.append(
                    {"role": "tool", "tool_call_id": item.call_id, "content": item.output}
                )
        form = self.text.format if self.text else None
        response_format = None
        if form is not None and form.type != "text":
            response_format = {"type": form.type}
            if form.type == "json_schema":
                response_format["json_schema"] = {"name": form.name, "schema": form.schema_}
        tool_choice: Any = self.tool_choice
        if isinstance(tool_choice, FunctionChoice):
            tool_choice = {"type": "function", "function": {"name": tool_choice.name}}
        tools = [
            {"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)}
            for tool in self.tools or ()
        ]
        return ChatCompletionRequest.model_validate(
            {
                "model": self.model,
                "messages": messages,
                "max_completion_tokens": self.max_output_tokens,
                "temperature": self.temperature,
                "top_p": self.top_p,
                "tools": tools or None,
                "tool_choice": tool_choice,
                "parallel_tool_calls": self.parallel_tool_calls,
                "response_format": response_format,
            }
        )


# --- route --------------------------------------------------------------------------
@router.post(
    "/responses",
    summary="Create a model response (OpenAI's Responses API; stream=true: events)",
    responses=RESPONSES,
)
async def create_response(
    body: ResponseRequest, request: Request, service: GenerationServiceDep
) -> Any:
    settings = get_settings(request)
    check_model(body.model, settings)
    try:
        generation, _, tools = await start_chat(body.as_chat(), service, settings, 1)
    except ValidationError as exc:  # the translated request broke a chat rule
        first = exc.errors()[0]
        field = _RENAMED.get(str(first["loc"][0]), str(first["loc"][0])) if first["loc"] else None
        raise InvalidInput(
            f"{field}: {first['msg']}" if field else first["msg"], param=field
        ) from None
    except InvalidInput as exc:
        exc.param = _RENAMED.get(exc.param or "", exc.param)
        raise
    shell = _Shell(body, settings.model_name)
    if body.stream:
        first = await until_disconnected(request, generation, generation.next_event())
        return StreamingResponse(
            _stream(shell, generation, first, tools),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    [(text, finish, _)] = await until_disconnected(request, generation, collect(generation))
    content, calls = parse(text, tools) if tools else (text, [])
    output = []
    if content or not calls:
        output.append(shell.message(content or "", "completed"))
    output += [shell.function_call(call, "completed") for call in calls]
    return shell.response("completed", output, generation, finish)


# chat-completions names -> the Responses API's, for errors about the translated request
_RENAMED = {
    "messages": "input",
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format",
}


class _Shell:
    """The ids and echoed settings one response's objects share."""

    def __init__(self, body: ResponseRequest, model: str) -> None:
        self.body = body
        self.model = model
        self.id = f"resp_{uuid.uuid4().hex}"
        self.message_id = f"msg_{uuid.uuid4().hex}"
        self.created = int(time.time())

    def message(self, text: str, status: str) -> dict[str, Any]:
        parts = [self.text_part(text)] if status == "completed" else []
        return {
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": parts,
        }

    @staticmethod
    def text_part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    @staticmethod
    def function_call(call: dict[str, Any], status: str) -> dict[str, Any]:
        return {
            "type": "function_call",
            "id": f"fc_{call['id'][5:]}",
            "call_id": call["id"],
            "name": call["function"]["name"],
            "arguments": call["function"]["arguments"] if status == "completed" else "",
            "status": status,
        }

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        generation: Generation | None = None,
        finish: str | None = None,
    ) -> dict[str, Any]:
        body = self.body
        incomplete = status == "completed" and finish == "length"
        form = body.text.format if body.text and body.text.format else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": "incomplete" if incomplete else status,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "error": None,
            "model": self.model,
            "output": output,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "temperature": 1.0 if body.temperature is None else body.temperature,
            "top_p": 1.0 if body.top_p is None else body.top_p,
            "tools": [tool.model_dump(exclude_none=True) for tool in body.tools or ()],
            "tool_choice": _dump(body.tool_choice) or "auto",
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "text": {
                "format": form.model_dump(by_alias=True, exclude_none=True)
                if form
                else {"type": "text"}
            },
            "previous_response_id": None,
            "store": False,
            "truncation": "disabled",
            "metadata": body.metadata or {},
            "usage": None if generation is None else _usage(generation),
        }


def _dump(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value


def _usage(generation: Generation) -> dict[str, Any]:
    inputs, outputs = generation.prompt_tokens, generation.completion_tokens
    return {
        "input_tokens": inputs,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": outputs,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": inputs + outputs,
    }


async def _stream(
    shell: _Shell, generation: Generation, first: Any, tools: list[Any] | None
) -> AsyncIterator[str]:
    """The Responses API's event sequence for one answer."""
    sequence = 0

    def event(kind: str, **fields: Any) -> str:
        nonlocal sequence
        data = {"type": kind, "sequence_number": sequence, **fields}
        sequence += 1
        return f"event: {kind}\n{sse(data)}"

    def open_message(index: int) -> list[str]:
        """The events that open the message item at ``index`` and its one text part."""
        return [
            event(
                "response.output_item.added",
                output_index=index,
                item=shell.message("", "in_progress"),
            ),
            event(
                "response.content_part.added",
                item_id=shell.message_id,
                output_index=index,
                content_index=0,
                part=shell.text_part(""),
            ),
        ]

    calls = CallStream(tools) if tools else None
    items: list[dict[str, Any]] = []  # finished output items, in output order
    text, message_index = "", None  # the message item's text and output index, once opened
    opened = shell.response("in_progress", [])
    yield event("response.created", response=opened)
    yield event("response.in_progress", response=opened)
    try:
        item = first
        while True:
            content, found = (
                calls.push(item.text, final=item.finish_reason is not None)
                if calls is not None
                else (item.text, [])
            )
            if content:
                if message_index is None:
                    message_index = len(items)
                    items.append({})  # its place; filled in when it closes
                    for opening in open_message(message_index):
                        yield opening
                text += content
                yield event(
                    "response.output_text.delta",
                    item_id=shell.message_id,
                    output_index=message_index,
                    content_index=0,
                    delta=content,
                    logprobs=[],
                )
            for call in found:
                index = len(items)
                done = shell.function_call(call, "completed")
                items.append(done)
                yield event(
                    "response.output_item.added",
                    output_index=index,
                    item=shell.function_call(call, "in_progress"),
                )
                common = {"item_id": done["id"], "output_index": index}
                yield event(
                    "response.function_call_arguments.delta", **common, delta=done["arguments"]
                )
                yield event(
                    "response.function_call_arguments.done",
                    **common,
                    name=done["name"],
                    arguments=done["arguments"],
                )
                yield event("response.output_item.done", output_index=index, item=done)
            if item.finish_reason is not None:
                finish = item.finish_reason
                break
            item = await generation.next_event()
        if message_index is None and not items:  # an empty answer is still a message
            message_index = 0
            items.append({})
            for opening in open_message(0):
                yield opening
        if message_index is not None:
            where = {"item_id": shell.message_id, "output_index": message_index, "content_index": 0}
            yield event("response.output_text.done", **where, text=text, logprobs=[])
            yield event("response.content_part.done", **where, part=shell.text_part(text))
            items[message_index] = shell.message(text, "completed")
            yield event(
                "response.output_item.done", output_index=message_index, item=items[message_index]
            )
        final = shell.response("completed", items, generation, finish)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        yield event(kind, response=final)
    except ServiceError as exc:  # failed mid-stream: the status line is already sent
        failed = shell.response("failed", items)
        failed["error"] = error_body(exc.message, exc.error_type, exc.code, exc.param)["error"]
        yield event("response.failed", response=failed)
    finally:
        generation.cancel()
