"""Service configuration.

Every knob is an environment variable named ``{{ cookiecutter.package_name.upper() }}_<FIELD>``
(for example ``{{ cookiecutter.package_name.upper() }}_MODEL_PATH``), or a line in a ``.env`` file in
the working directory. The field descriptions below are the reference: the docs
and ``--help`` of the service are generated from them.
"""

from __future__ import annotations

{% if cookiecutter.workload != 'vision' -%}
import json
{% endif -%}
import re
from functools import lru_cache
from pathlib import Path
from typing import {{ '' if cookiecutter.workload == 'vision' else 'Annotated, ' }}Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, {{ '' if cookiecutter.workload == 'vision' else 'NoDecode, ' }}SettingsConfigDict
{%- if cookiecutter.workload != 'llm' %}

from .serving.cpus import server_workers
{%- endif %}

ENV_PREFIX = "{{ cookiecutter.package_name.upper() }}_"
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
{%- if cookiecutter.workload != 'vision' %}
# A served model name: `my-model`, `org/my-model`, `ft:gpt-4o-mini:team:tag`. Every
# `/`-separated part starts with a letter or digit, so there are no empty, `.` or `..` parts
# (clients and proxies normalise those away in GET /v1/models/{name}).
SERVED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*(/[A-Za-z0-9][A-Za-z0-9_.:-]*)*$"
SERVED_NAME_MAX_CHARS = 256
{%- endif %}


class Settings(BaseSettings):
    """All runtime settings of the service, read once at start-up."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        protected_namespaces=(),
        validate_default=True,
    )

    # --- model -----------------------------------------------------------------
{%- if cookiecutter.workload == 'vision' %}
    model_name: str = Field(
        "{{ cookiecutter.project_slug }}",
        description="Name the model is served under (the v2 `{name}`, answers' `model`).",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
    )
{%- else %}
    model_name: str = Field(
        "{{ cookiecutter.project_slug }}",
        description="Name the model is served under: the `model` of responses, metrics' "
        "`model` label. `org/name` forms are allowed. With SERVED_MODEL_NAMES set it is "
        "their first name (leave it unset, or equal to that).",
        pattern=SERVED_NAME_PATTERN,
        max_length=SERVED_NAME_MAX_CHARS,
    )
    served_model_names: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Every name a request's `model` may use, all listed by `GET /v1/models`, "
        'comma-separated (`my-model,org/my-model`) or a JSON list (`["my-model", '
        '"org/my-model"]`); the first is the one responses carry, as vLLM\'s '
        "`--served-model-name`. Empty: MODEL_NAME alone.",
    )
{%- endif %}
    model_path: Path = Field(
        Path("models/model.{{ 'onnx' if cookiecutter.backend == 'onnxruntime' else 'safetensors' }}"),
{%- if cookiecutter.workload == 'llm' and cookiecutter.backend == 'onnxruntime' %}
        description="Decode graph loaded at start-up, with `prefill.onnx` beside it (built by "
        "`make model`).",
{%- elif cookiecutter.workload == 'llm' %}
        description="Demo weights (.safetensors, built by `make model`), or a local Hugging Face "
        "causal-LM folder (needs the `hf` extra; never downloads, never runs remote code).",
{%- else %}
        description="Model file loaded at start-up (built by `make model`).",
{%- endif %}
    )
{%- if cookiecutter.workload == 'vision' %}
    max_image_pixels: int = Field(
        25_000_000,
        ge=1,
        description="Largest accepted image (width x height) before decoding; "
        "larger images and decompression bombs answer 413.",
    )
{%- endif %}
{%- if cookiecutter.workload == 'embeddings' %}
    max_input_tokens: int | None = Field(
        None,
        ge=2,
        description="Longest input in tokens, special tokens included. Default: the model's "
        "own limit (`Model.max_input_tokens` in model.py); a larger value fails start-up.",
    )
    truncate: bool = Field(
        False,
        description="Inputs longer than MAX_INPUT_TOKENS: false answers 400 "
        "(`context_length_exceeded`, as OpenAI does), true embeds their first "
        "MAX_INPUT_TOKENS tokens (as sentence-transformers does).",
    )
    max_batch_tokens: int = Field(
        8192,
        ge=2,
        description="Most input tokens one model call receives, summed over its inputs "
        "(besides MAX_BATCH_SIZE items). Bounds activation memory; a longer request is "
        "split over several calls, and a single input longer than this runs alone.",
    )
    max_inputs_per_request: int = Field(
        2048, ge=1, description="Most strings one request may embed (OpenAI's limit is 2048)."
    )
{%- endif %}
{%- if cookiecutter.workload == 'tts' %}
    tts_max_input_chars: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        description="Longest accepted `input` in characters (OpenAI's limit is 4096); "
        "longer input answers 400.",
    )
    tts_chunk_chars: int = Field(
        200,
        ge=16,
        le=10_000,
        description="Input is synthesised and streamed in chunks of at most this many "
        "characters (sentences first) at speed 1; slower speech gets proportionally shorter "
        "chunks. Smaller: earlier first audio and finer batching; larger: fewer model calls.",
    )
    tts_chunks_in_flight: int = Field(
        2,
        ge=1,
        le=256,
        description="Chunks of one stream queued or computing at once. 1 synthesises "
        "strictly one after another; more lets a long input fill more of each batch (faster "
        "to finish), at the cost of later first audio for everyone under load.",
    )
{%- endif %}
{%- if cookiecutter.workload != 'llm' %}
    model_instances: int = Field(
        1,
        ge=1,
        le=64,
        description="Model copies, each with its own worker thread; raise on many-core "
        "CPUs or to overlap GPU work.",
    )
{%- endif %}

    # --- device ----------------------------------------------------------------
    device: str = Field(
        "{{ 'cuda' if cookiecutter.device == 'gpu' else 'cpu' }}",
        description="`auto`, `cpu`, `cuda` or `cuda:N`. `auto` picks the first GPU when "
        "one is visible.",
    )
    cpu_fallback: bool = Field(
        {{ 'False' if cookiecutter.device == 'gpu' else 'True' }},
        description="When a GPU is requested but none is visible: true runs on the CPU "
        "with a warning, false fails start-up with a clear error.",
    )
{%- if cookiecutter.backend == 'torch' %}
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        "fp32",
        description="Compute dtype. fp16 and bf16 halve weight memory on a GPU; on a CPU "
        "fp16 falls back to fp32 with a warning.",
    )
{%- endif %}
    gpu_memory_limit_mb: int = Field(
        0,
        ge=0,
        description="Cap on GPU memory for this process in MiB, 0 for none ("
{%- if cookiecutter.backend == 'torch' %}
        "torch: per-process memory fraction).",
{%- else %}
        "onnxruntime: CUDA arena `gpu_mem_limit`).",
{%- endif %}
    )
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "EXHAUSTIVE",
        description="cuDNN convolution algorithm search. EXHAUSTIVE benchmarks every "
        "algorithm per input shape (paid during warmup), HEURISTIC guesses.",
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        description="Threads one model call may use on the CPU; 0: the CPUs this process may "
        "use (its affinity, capped by the container's CPU quota) shared out among the model "
{%- if cookiecutter.backend == 'onnxruntime' and cookiecutter.workload == 'embeddings' %}
        "calls that run at once (WORKERS, times MODEL_INSTANCES): under load every process "
        "computes a large batch at once, and more threads than cores slow them all down "
        "(a lone request would be faster with every core; see docs chapter 04).",
{%- elif cookiecutter.backend == 'onnxruntime' %}
        "calls one process runs at once{{ '' if cookiecutter.workload == 'llm' else ' (MODEL_INSTANCES)' }}: onnxruntime's idle threads sleep, so "
        "the WORKERS processes need not split the cores, and a lone request gets them all.",
{%- else %}
        "calls that run at once (WORKERS, times MODEL_INSTANCES where there is that setting): "
        "torch's idle threads spin a while, so every process gets its share.",
{%- endif %}
    )
{%- if cookiecutter.workload == 'llm' %}

    # --- generation: continuous batching and backpressure --------------------
    max_running_sequences: int = Field(
        {{ '32' if cookiecutter.batching == 'dynamic' else '1' }},
        ge=1,
        le=1024,
        description="Sequences decoded together; new ones join and finished ones leave at "
        "every step."
{%- if cookiecutter.batching == 'none' %}
        " Generated with batching=none: 1 (one sequence at a time).",
{%- else %}
        " 1 serves one sequence at a time.",
{%- endif %}
    )
    max_waiting_sequences: int = Field(
        256,
        ge=0,
        description="Sequences allowed to wait for a free slot; beyond it requests answer 503 "
        "with Retry-After.",
    )
    max_tokens_per_step: int = Field(
        512,
        ge=1,
        description="Prompt tokens prefilled in one step plus one per running sequence: bounds "
        "how long running streams pause for new prompts (one waiting prompt is always "
        "admitted when a slot is free, even a longer one).",
    )
    prefix_cache_mb: int = Field(
        256,
        ge=0,
        description="Memory for the keys and values of prompt prefixes (system prompts, few-shot "
        "examples, chat history): a prompt that starts like an earlier one computes only the "
        "rest of it. Least recently used blocks go first; 0 turns prefix caching off.",
    )
    context_length: int = Field(
        0,
        ge=0,
        description="Most tokens (prompt + completion) per sequence; 0 uses the model's own "
        "maximum. Longer prompts answer 400.",
    )
    default_max_tokens: int = Field(
        256,
        ge=1,
        description="Completion length when a request sets no max_tokens (capped by what the "
        "context leaves).",
    )
    max_tokens_limit: int = Field(
        4096, ge=1, description="Largest max_tokens a request may ask for; larger answers 400."
    )
    max_sequences_per_request: int = Field(
        16,
        ge=1,
        description="Most sequences one request may ask for: n times its prompts (completions "
        "take several). The n choices of a prompt also fit MAX_RUNNING_SEQUENCES, since they "
        "run together from one prefill; more answer 400.",
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request that gets no token for this long (still waiting for a slot, "
        "or its model call stalled) gets 504, or an error event mid-stream; a generation that "
        "keeps producing tokens is never cut short.",
    )
{%- else %}

    # --- batching and backpressure -------------------------------------------
    max_batch_size: int = Field(
        {{ '32' if cookiecutter.batching == 'dynamic' else '1' }},
        ge=1,
        le=4096,
{%- if cookiecutter.batching == 'none' %}
        description="Most items one model call receives. Generated with batching=none: 1 "
        "(one request per call); raise it to batch.",
{%- else %}
        description="Most items one model call receives.",
{%- endif %}
    )
    max_batch_wait_ms: float = Field(
        {{ '2.0' if cookiecutter.batching == 'dynamic' else '0.0' }},
        ge=0,
        le=10_000,
        description="How long the oldest queued item waits for a fuller batch. A full "
        "batch is dispatched at once, and so is one that no admitted request can still join.",
    )
    max_queue_size: int = Field(
        {{ '4096' if cookiecutter.workload == 'embeddings' else '256' }},
        ge=1,
{%- if cookiecutter.workload == 'embeddings' %}
        description="Items allowed to wait; beyond it requests answer 503 with Retry-After. "
        "Each input string is an item, and a request may carry MAX_INPUTS_PER_REQUEST.",
{%- else %}
        description="Items allowed to wait; beyond it requests answer 503 with Retry-After.",
{%- endif %}
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="A request not answered within this time gets 504."
    )
{%- endif %}
    shutdown_timeout_s: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM, the whole shutdown's budget: in-flight and queued requests "
        "finish within it, what cannot answers 503, and the process exits within it plus a "
        "second. The Kubernetes grace period is derived from it.",
    )

    # --- HTTP ------------------------------------------------------------------
    host: str = Field("0.0.0.0", description="Interface to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(
        0,
        ge=0,
        le=64,
{%- if cookiecutter.workload == 'llm' %}
        description="Server processes, each with its own copy of the model and its own "
        "scheduler. 0: one, whose scheduler batches every running sequence (several would "
        "split the batch and the KV-cache memory).",
{%- else %}
        description="Server processes, each with its own copy of the model: more spread request "
        "parsing and pre/post-processing over CPU cores. 0: derived, one per CPU this process "
        "may use (its affinity, capped by the container's CPU quota), at most 8, when the model "
        "computes on the CPU (DEVICE=cpu); 1 on a GPU, where MODEL_INSTANCES adds copies.",
{%- endif %}
    )
    max_body_bytes: int = Field(
{%- if cookiecutter.workload == 'vision' %}
        10 * 1024 * 1024,
        ge=1024,
        description="Largest request body (an encoded image); larger ones answer 413.",
{%- elif cookiecutter.workload == 'llm' %}
        1024 * 1024,
        ge=1024,
        description="Largest request body; larger ones answer 413. The default fits a 32k-token "
        "context at 4 characters per token even with every character JSON-escaped "
        "(32768 x 4 x 2 bytes is 256 KiB of plain text), with room for the other fields.",
{%- elif cookiecutter.workload == 'embeddings' %}
        8 * 1024 * 1024,
        ge=1024,
        description="Largest request body; larger ones answer 413. The default fits "
        "MAX_INPUTS_PER_REQUEST (2048) inputs of 512 tokens at 4 characters per token, with "
        "JSON overhead (2048 x 512 x 4 bytes is 4 MiB).",
{%- else %}
        256 * 1024,
        ge=1024,
        description="Largest request body; larger ones answer 413. The default fits "
        "TTS_MAX_INPUT_CHARS (4096) characters with every one JSON-escaped (6 bytes each).",
{%- endif %}
    )
    body_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Time from the request's headers to the last byte of its body; a slower "
        "(or stalled) upload answers 408 `body_read_timeout`. Uploads hold no queue slot "
        "while they arrive.",
    )
    max_upload_bytes_in_flight: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Request-body bytes all unfinished requests of this process may hold "
        "together (arriving, queued or computing); a body that would exceed it answers 503 "
        "`upload_budget_exceeded` with Retry-After. Bounds memory with MAX_BODY_BYTES.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Time a connection has to send a complete request line and headers "
        "(from connect, or from the end of the previous response); slower ones (slowloris) "
        "get 408 and are closed.",
    )
    keep_alive_timeout_s: float = Field(
        5.0,
        gt=0,
        description="An idle keep-alive connection is closed after this many seconds.",
    )
    max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request line plus headers; larger answers 431 (a request line "
        "alone over MAX_URL_BYTES answers 414).",
    )
    max_url_bytes: int = Field(
        8 * 1024, ge=256, description="Longest request target (path and query); longer answers 414."
    )
    max_headers: int = Field(
        100, ge=8, le=10_000, description="Most header fields per request; more answer 431."
    )
    max_connections: int = Field(
        2048,
        ge=16,
        description="Open connections (and running requests) per process; beyond it requests "
        "answer 503 at once. Keep it under the process's file-descriptor limit "
        "(`ulimit -n`) minus what the model needs, so health probes still get a socket.",
    )
    api_key: SecretStr | None = Field(
        None,
        description="When set, every route except health needs `Authorization: Bearer <key>`. "
        "An empty key, or one with surrounding whitespace, fails start-up.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed by CORS, as a JSON list (`["https://app.example"]`); '
        "empty disables CORS.",
    )

    # --- logging ---------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the service and the server."
    )
    log_json: bool = Field(True, description="One JSON object per log line (false: plain text).")

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not DEVICE_PATTERN.match(value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("api_key")
    @classmethod
    def _check_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        key = value.get_secret_value()
        if not key:
            raise ValueError("is empty: unset it to turn authentication off, or set a key")
        if key != key.strip():
            raise ValueError("has leading or trailing whitespace (a newline?): remove it")
        return value

{%- if cookiecutter.workload != 'vision' %}

    @field_validator("served_model_names", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        """A JSON list as pydantic-settings reads lists, or names separated by commas."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not a valid JSON list ({exc})") from None
        return [name.strip() for name in value.split(",") if name.strip()]

    @field_validator("served_model_names")
    @classmethod
    def _check_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if len(name) > SERVED_NAME_MAX_CHARS or not re.fullmatch(SERVED_NAME_PATTERN, name):
                raise ValueError(
                    f"{name!r} is not a model name: at most {SERVED_NAME_MAX_CHARS} letters, "
                    "digits and `_.:-`, in parts separated by `/` (`org/name`), each starting "
                    "with a letter or digit"
                )
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"lists {duplicates[0]!r} more than once")
        return names

    @model_validator(mode="after")
    def _primary_name(self) -> Settings:
        """MODEL_NAME is the first served name: the one responses and metrics carry."""
        if not self.served_model_names:
            self.served_model_names = [self.model_name]
        elif "model_name" not in self.model_fields_set:
            self.model_name = self.served_model_names[0]
        elif self.model_name != self.served_model_names[0]:
            raise ValueError(
                f"{ENV_PREFIX}MODEL_NAME must be the first of {ENV_PREFIX}SERVED_MODEL_NAMES "
                "(the name responses carry), or unset"
            )
        return self
{%- endif %}

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

{%- if cookiecutter.workload == 'llm' %}

    @model_validator(mode="after")
    def _check_tokens(self) -> Settings:
        if self.context_length and self.context_length < 2:
            raise ValueError(
                f"{ENV_PREFIX}CONTEXT_LENGTH must be 0 (the model's own) or at least 2"
            )
        return self

    @property
    def max_batch_size(self) -> int:
        """The most sequences one model call takes (batch-size metrics are sized by it)."""
        return self.max_running_sequences

    @property
    def worker_processes(self) -> int:
        """WORKERS, or (0) one: see its description."""
        return self.workers or 1

    @property
    def model_calls_per_process(self) -> int:
        """Model calls one process may run at once: its scheduler's step."""
        return 1

    @property
    def parallel_model_calls(self) -> int:
        """Model calls that may run at once: one scheduler step per worker process."""
        return self.worker_processes * self.model_calls_per_process
{%- else %}

    @model_validator(mode="after")
    def _check_queue(self) -> Settings:
        if self.max_queue_size < self.max_batch_size:
            raise ValueError(
                f"{ENV_PREFIX}MAX_QUEUE_SIZE must be at least {ENV_PREFIX}MAX_BATCH_SIZE, "
                "or batches never fill"
            )
        return self

    @property
    def max_batch_wait_s(self) -> float:
        return self.max_batch_wait_ms / 1000.0

    @property
    def worker_processes(self) -> int:
        """WORKERS, or (0) derived from the CPUs: see its description."""
        return server_workers(self.workers, cpu_inference=self.device == "cpu")

    @property
    def model_calls_per_process(self) -> int:
        """Model calls one process may run at once: one per model instance."""
        return self.model_instances

    @property
    def parallel_model_calls(self) -> int:
        """Model calls that may run at once: MODEL_INSTANCES in each worker process."""
        return self.worker_processes * self.model_calls_per_process
{%- endif %}

    @property
    def calls_sharing_cpus(self) -> int:
        """The model calls INTRA_OP_THREADS=0 shares the usable CPUs among: see its description."""
{%- if cookiecutter.backend == 'onnxruntime' and cookiecutter.workload != 'embeddings' %}
        return self.model_calls_per_process
{%- else %}
        return self.parallel_model_calls
{%- endif %}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings`` instead)."""
    return Settings()


def describe_invalid(error: ValidationError) -> str:
    """One line naming each bad setting and what is wrong with it, never the value given.

    pydantic's own text quotes the input (``input_value=...``): for a cross-field
    error that is every setting, ``API_KEY`` included.
    """
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        names = [str(part) for part in item["loc"] if isinstance(part, str)]
        message = str(item["msg"]).removeprefix("Value error, ")
        # a cross-field check has no location: its message names the settings itself
        problems.append(f"{ENV_PREFIX}{names[0].upper()}: {message}" if names else message)
    return "invalid settings: " + "; ".join(problems)
