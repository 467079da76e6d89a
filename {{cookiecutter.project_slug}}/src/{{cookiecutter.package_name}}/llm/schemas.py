"""Request and response bodies of the OpenAI-compatible text generation API.

Field names and shapes follow OpenAI's API reference, so the official clients
work unchanged. A parameter this server does not implement is refused with a
400 that names it, never silently ignored: a client asking for ``n=3`` or
tool calls must not get something else back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

MAX_STOP_SEQUENCES = 4


def _unsupported(name: str, hint: str = "") -> PydanticCustomError:
    return PydanticCustomError(
        "unsupported_parameter", f"{name} is not supported by this server{hint}"
    )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class GenerationParameters(BaseModel):
    """Sampling parameters shared by completions and chat (``null`` means the default)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The served model's name (`GET /v1/models`).")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 is greedy; default 1.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass; default 1.")
    n: int | None = Field(None, description="Only 1 is supported.")
    stream: bool | None = Field(None, description="Send tokens as server-sent events.")
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(
        None, description="Up to 4 strings that end the completion."
    )
    seed: int | None = Field(None, description="Makes sampling repeatable.")
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = Field(None, description="End-user id; accepted and ignored.")

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise PydanticCustomError(
                "unsupported_parameter", "only n=1 is supported; send several requests"
            )
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float | None, info: Any) -> float | None:
        if value not in (None, 0):
            raise _unsupported(info.field_name)
        return value

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value:
            raise _unsupported("logit_bias")
        return value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise PydanticCustomError(
                "too_many_stops", f"at most {MAX_STOP_SEQUENCES} stop sequences"
            )
        if any(not s for s in stops):
            raise PydanticCustomError("empty_stop", "stop sequences must not be empty")
        return value

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class CompletionRequest(GenerationParameters):
    prompt: str | list[int] | list[str] | list[list[int]] = Field(
        description="Text, or token ids; one prompt per request."
    )
    echo: bool | None = None
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("echo", "logprobs", "suffix")
    @classmethod
    def _not_supported(cls, value: Any, info: Any) -> Any:
        if value not in (None, False):
            raise _unsupported(info.field_name)
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_one(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise PydanticCustomError("unsupported_parameter", "only best_of=1 is supported")
        return value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"] = Field(description="Only text parts are supported.")
    text: str


class ChatMessage(BaseModel):
    # extra fields are ignored: clients often send back a whole previous reply
    # (refusal, annotations, audio: null), which must not fail the next turn
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    function_call: Any = None

    @field_validator("tool_calls", "function_call")
    @classmethod
    def _no_tools(cls, value: Any, info: Any) -> Any:
        if value:
            raise _unsupported(info.field_name, " (no tool calling)")
        return value

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(GenerationParameters):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Alias of max_tokens.")
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: Any, info: Any) -> Any:
        if value not in (None, False):
            raise _unsupported(info.field_name)
        return value

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value: list[Any] | None, info: Any) -> list[Any] | None:
        if value:
            raise _unsupported(info.field_name, " (no tool calling)")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _no_tool_choice(cls, value: Any) -> Any:
        if value not in (None, "none"):
            raise _unsupported("tool_choice", " (no tool calling)")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") != "text":
            raise PydanticCustomError(
                "unsupported_parameter", "only response_format type 'text' is supported"
            )
        return value


# --- responses -----------------------------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
