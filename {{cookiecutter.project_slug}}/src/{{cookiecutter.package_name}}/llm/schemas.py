"""Request and response bodies of the OpenAI-compatible text generation API.

Field names and shapes follow OpenAI's API reference, so the official clients
work unchanged; vLLM's sampling extensions (``repetition_penalty``,
``min_tokens``, ``stop_token_ids``, ``ignore_eos``) are accepted as vLLM
accepts them. Three kinds of fields:

- implemented: they change the answer as documented;
- fields described "Accepted and ignored": they cannot change the
  answer of this server (storage, metadata, routing and caching hints that
  SDKs and agent frameworks send by default);
- everything else, a misspelt field included, is refused with a 400 that
  names it: a client asking for something this server does not do must not
  get something else back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_STOP_SEQUENCES = 4
MAX_STOP_TOKEN_IDS = 16
MAX_LOGIT_BIAS = 300  # OpenAI's own bound on logit_bias entries
MAX_TOP_LOGPROBS = 20  # chat; OpenAI's bound
MAX_COMPLETION_LOGPROBS = 5  # completions; OpenAI's bound


def _unsupported(name: str, hint: str = "") -> PydanticCustomError:
    return PydanticCustomError(
        "unsupported_parameter", f"{name} is not supported by this server{hint}"
    )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False
    include_obfuscation: bool | None = Field(None, description="Accepted and ignored.")


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="A JSON schema; absent: any JSON object."
    )
    strict: bool | None = Field(
        None, description="Accepted; the answer always follows the schema here."
    )


class ResponseFormat(BaseModel):
    """``text`` (the default), ``json_object`` (any JSON object) or ``json_schema``."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _with_its_type(self) -> ResponseFormat:
        if (self.json_schema is not None) != (self.type == "json_schema"):
            raise PydanticCustomError(
                "invalid_parameter", "json_schema is required with, and only with, type json_schema"
            )
        return self

    @property
    def constrained(self) -> bool:
        return self.type != "text"

    @property
    def schema_or_none(self) -> dict[str, Any] | None:
        """The schema to follow; None for any JSON object."""
        return self.json_schema.schema_ if self.json_schema is not None else None


class GenerationParameters(BaseModel):
    """Sampling parameters shared by completions and chat (``null`` means the default)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The served model's name (`GET /v1/models`).")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    temperature: float | None = Field(None, ge=0, le=2, description="0 is greedy; default 1.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass; default 1.")
    n: int | None = Field(
        None,
        ge=1,
        description="Choices per prompt, sampled from one shared prefill; at most "
        "MAX_SEQUENCES_PER_REQUEST (and MAX_RUNNING_SEQUENCES).",
    )
    stream: bool | None = Field(None, description="Send tokens as server-sent events.")
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(
        None, description="Up to 4 strings that end the completion."
    )
    seed: int | None = Field(
        None, description="Makes sampling repeatable; choice i of n uses seed + i."
    )
    presence_penalty: float | None = Field(
        None, ge=-2, le=2, description="Subtracted from the logit of every token already generated."
    )
    frequency_penalty: float | None = Field(
        None, ge=-2, le=2, description="Subtracted per time a token was already generated."
    )
    logit_bias: dict[str, float] | None = Field(
        None, description="Token id -> bias in [-100, 100] added to its logit (at most 300)."
    )
    # vLLM's extensions
    repetition_penalty: float | None = Field(
        None,
        gt=0,
        le=2,
        description="CTRL's penalty on prompt and generated tokens (>1 discourages); default 1.",
    )
    min_tokens: int | None = Field(
        None, ge=0, description="Tokens generated before an end-of-sequence or stop token may."
    )
    stop_token_ids: list[int] | None = Field(
        None, max_length=MAX_STOP_TOKEN_IDS, description="Token ids that end the completion."
    )
    ignore_eos: bool | None = Field(None, description="Keep generating past end-of-sequence.")
    response_format: ResponseFormat | None = Field(
        None,
        description="Structured output: json_object or json_schema, by constrained decoding "
        "(completions too, as vLLM accepts it).",
    )
    # accepted and ignored: none changes the answer here (docs/reference/apis.md lists them)
    user: str | None = Field(None, description="End-user id; accepted and ignored.")
    store: bool | None = Field(None, description="Accepted and ignored: nothing is stored.")
    metadata: dict[str, str] | None = Field(None, description="Accepted and ignored.")
    service_tier: str | None = Field(None, description="Accepted and ignored.")
    prompt_cache_key: str | None = Field(None, description="Accepted and ignored.")
    safety_identifier: str | None = Field(None, description="Accepted and ignored.")

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(
        cls, value: StreamOptions | None, info: ValidationInfo
    ) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise PydanticCustomError(
                "invalid_parameter", "stream_options is only allowed when stream is true"
            )
        return value

    @field_validator("logit_bias")
    @classmethod
    def _check_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if not value:
            return value
        if len(value) > MAX_LOGIT_BIAS:
            raise PydanticCustomError(
                "too_many_entries", f"at most {MAX_LOGIT_BIAS} logit_bias entries"
            )
        for key, bias in value.items():
            if not key.isdecimal():
                raise PydanticCustomError(
                    "invalid_token_id", f"logit_bias keys are token ids; got {key[:20]!r}"
                )
            if not -100 <= bias <= 100:
                raise PydanticCustomError(
                    "bias_out_of_range", f"logit_bias values are in [-100, 100]; got {bias}"
                )
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
        description="Text, token ids, or a list of either: each prompt gets n choices."
    )
    echo: bool | None = Field(None, description="Prefix each choice with its prompt.")
    logprobs: int | None = Field(
        None,
        ge=0,
        le=MAX_COMPLETION_LOGPROBS,
        description="Log-probabilities of each chosen token and its `logprobs` most likely.",
    )
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise _unsupported("suffix", " (no fill-in-the-middle)")
        return value

    @field_validator("best_of")
    @classmethod
    def _best_of_n(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value != (info.data.get("n") or 1):
            raise PydanticCustomError(
                "unsupported_parameter", "best_of must equal n (no server-side ranking)"
            )
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_prompt_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("echo"):
            raise PydanticCustomError(
                "unsupported_parameter",
                "logprobs with echo needs the prompt's log-probabilities, which this server "
                "does not compute; send one or the other",
            )
        return value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


MAX_TOOLS = 128  # OpenAI's own bound
TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="A JSON schema of the arguments; absent: no arguments."
    )
    strict: bool | None = Field(None, description="Accepted; calls always follow the schema.")


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: FunctionName


class CalledFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: str = Field(description="The arguments as a JSON text, as the model wrote them.")


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(BaseModel):
    # extra fields are ignored: clients often send back a whole previous reply
    # (refusal, annotations, audio: null), which must not fail the next turn
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="An assistant turn's calls.")
    tool_call_id: str | None = Field(None, description="A tool turn: the call it answers.")
    function_call: Any = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for index, part in enumerate(value):
                kind = part.get("type") if isinstance(part, dict) else None
                if isinstance(kind, str) and kind != "text":
                    raise PydanticCustomError(
                        "unsupported_content",
                        "content part {index} has type {kind!r}: this model reads text only "
                        "(parts of type 'text')",
                        {"index": index, "kind": kind[:40]},
                    )
        return value

    @field_validator("function_call")
    @classmethod
    def _no_legacy_function_call(cls, value: Any) -> Any:
        if value:
            raise _unsupported("function_call", " (send tool_calls)")
        return value

    @model_validator(mode="after")
    def _tool_turns(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise PydanticCustomError("missing_tool_call_id", "a tool message needs tool_call_id")
        if self.tool_calls and self.role != "assistant":
            raise PydanticCustomError("invalid_tool_calls", "only assistant turns carry tool_calls")
        return self

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
    logprobs: bool | None = Field(None, description="Return each chosen token's log-probability.")
    top_logprobs: int | None = Field(
        None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="The most likely alternatives per token (needs logprobs=true).",
    )
    modalities: list[Literal["text"]] | None = Field(None, description="Only text.")
    prediction: dict[str, Any] | None = Field(
        None, description="Predicted output; accepted and ignored (a speed hint)."
    )
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description="Default: auto with tools, none without."
    )
    parallel_tool_calls: bool | None = Field(
        None, description="Several calls in one answer (default true); at most MAX_TOOL_CALLS."
    )
    functions: list[Any] | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise PydanticCustomError(
                "invalid_parameter", "top_logprobs needs logprobs set to true"
            )
        return value

    @field_validator("functions")
    @classmethod
    def _no_functions(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise _unsupported("functions", " (send tools)")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _a_choice_among_the_tools(
        cls, value: str | NamedToolChoice | None, info: ValidationInfo
    ) -> str | NamedToolChoice | None:
        names = {tool.function.name for tool in info.data.get("tools") or ()}
        if isinstance(value, NamedToolChoice) and value.function.name not in names:
            raise PydanticCustomError(
                "unknown_tool",
                "tool_choice names {name!r}, which is not among the tools",
                {"name": value.function.name[:64]},
            )
        if value == "required" and not names:
            raise PydanticCustomError("no_tools", "tool_choice 'required' needs tools")
        return value

    @property
    def tool_mode(self) -> str | None:
        """None (no tools in play), "auto", "required" or the one function's name."""
        if not self.tools or self.tool_choice == "none":
            return None
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function.name
        return self.tool_choice or "auto"

    @property
    def top_logprobs_count(self) -> int | None:
        """Alternatives per token in the answer; None when no logprobs were asked for."""
        return (self.top_logprobs or 0) if self.logprobs else None


# --- responses -----------------------------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    """The legacy completions shape: parallel lists, one entry per generated token."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: CompletionLogprobs | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None
    refusal: None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] = Field(default_factory=list)


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: ChatLogprobs | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
