"""The llm workload's metrics: tokens, sequences, time to first token and between tokens.

``GenerationMetrics`` adds them to the shared ``ServiceMetrics`` and implements
the scheduler's ``GenerationObserver``; the scheduler calls it from its engine
thread (prometheus-client's metric objects are thread-safe).

It also exports three gauges under vLLM's names, the metrics the Gateway API
Inference Extension's model-server protocol asks for (its endpoint picker reads
them to route each request): ``vllm:num_requests_waiting``,
``vllm:num_requests_running`` and ``vllm:kv_cache_usage_perc`` (a fraction,
1 = full, as vLLM's), labelled ``model_name`` as vLLM's are. They are set in the
same update as ``inference_waiting_sequences``, ``inference_running_sequences``
and ``inference_kv_cache_usage_ratio``, and a scrape never sees half an update.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..metrics import PREFIX, ServiceMetrics, decades

# time to first token (prefill + waiting for a slot) and between tokens (one decode step)
TTFT_BUCKETS = decades(0.005, 30)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)
# per request: tokens over all its choices, and its sequences (prompts x n)
REQUEST_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
REQUEST_SEQUENCE_BUCKETS = (1, 2, 4, 8, 16)
# The model-server protocol's gauges (gateway-api-inference-extension
# docs/proposals/003-model-server-protocol), named as vLLM names them; the llm-d router's
# endpoint picker reads exactly these for engine type vllm, its default.
VLLM_WAITING = "vllm:num_requests_waiting"
VLLM_RUNNING = "vllm:num_requests_running"
VLLM_KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"


class GenerationMetrics(ServiceMetrics):
    def __init__(
        self,
        model_name: str,
        *,
        max_batch_size: int = 1,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(model_name, max_batch_size=max_batch_size, registry=registry)
        r = self.registry
        self.time_to_first_token = Histogram(
            f"{PREFIX}_time_to_first_token_seconds",
            "Time from admission of a sequence to its first generated token.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.inter_token_latency = Histogram(
            f"{PREFIX}_inter_token_latency_seconds",
            "Time between consecutive generated tokens of one sequence.",
            ["model"],
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            f"{PREFIX}_prompt_tokens", "Prompt tokens admitted.", ["model"], registry=r
        )
        self.generated_tokens = Counter(
            f"{PREFIX}_generated_tokens", "Tokens generated.", ["model"], registry=r
        )
        self.request_generation_tokens = Histogram(
            f"{PREFIX}_request_generation_tokens",
            "Tokens one request generated, over all its choices (n) and prompts.",
            ["model"],
            buckets=REQUEST_TOKEN_BUCKETS,
            registry=r,
        )
        self.request_sequences = Histogram(
            f"{PREFIX}_request_sequences",
            "Sequences one request ran: its prompts times n.",
            ["model"],
            buckets=REQUEST_SEQUENCE_BUCKETS,
            registry=r,
        )
        self.grammar_seconds = Counter(
            f"{PREFIX}_grammar_seconds",
            "Time the grammar engine spent on structured-output token masks.",
            ["model"],
            registry=r,
        )
        self.prefix_cache_query_tokens = Counter(
            f"{PREFIX}_prefix_cache_query_tokens",
            "Prompt tokens looked up in the prefix cache (every admitted prompt).",
            ["model"],
            registry=r,
        )
        self.prefix_cache_hit_tokens = Counter(
            f"{PREFIX}_prefix_cache_hit_tokens",
            "Prompt tokens found in the prefix cache: their keys and values were not computed.",
            ["model"],
            registry=r,
        )
        self.prefix_cache_bytes = Gauge(
            f"{PREFIX}_prefix_cache_bytes",
            "Keys and values the prefix cache holds (at most PREFIX_CACHE_MB).",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.running_sequences = Gauge(
            f"{PREFIX}_running_sequences",
            "Sequences in the running batch.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.waiting_sequences = Gauge(
            f"{PREFIX}_waiting_sequences",
            "Sequences waiting for a slot in the running batch.",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.kv_cache_usage = Gauge(
            f"{PREFIX}_kv_cache_usage_ratio",
            "Token positions the running sequences hold in the KV cache, over the most it "
            "holds (MAX_RUNNING_SEQUENCES at the context length).",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        # the same state under the model-server protocol's (vLLM's) names
        self.vllm_waiting = Gauge(
            VLLM_WAITING,
            "Requests waiting to be processed (= inference_waiting_sequences).",
            ["model_name"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.vllm_running = Gauge(
            VLLM_RUNNING,
            "Requests running on the model (= inference_running_sequences).",
            ["model_name"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.vllm_kv_cache_usage = Gauge(
            VLLM_KV_CACHE_USAGE,
            "KV-cache usage, 1 means 100 percent (= inference_kv_cache_usage_ratio).",
            ["model_name"],
            registry=r,
            multiprocess_mode="livemax",
        )
        # one update of the sequence gauges at a time, and no scrape in the middle of one
        self._sequences_lock = threading.Lock()
        for labelled in (
            self.time_to_first_token,
            self.inter_token_latency,
            self.prompt_tokens,
            self.generated_tokens,
            self.request_generation_tokens,
            self.request_sequences,
            self.grammar_seconds,
            self.prefix_cache_query_tokens,
            self.prefix_cache_hit_tokens,
            self.prefix_cache_bytes,
            self.running_sequences,
            self.waiting_sequences,
            self.kv_cache_usage,
        ):
            labelled.labels(model=model_name)  # export zeros from the start
        for vllm in (self.vllm_waiting, self.vllm_running, self.vllm_kv_cache_usage):
            vllm.labels(model_name=model_name)

    # --- GenerationObserver (the scheduler) ------------------------------------------
    def sequence_admitted(self, prompt_tokens: int, waited_s: float) -> None:
        self.prompt_tokens.labels(model=self.model_name).inc(prompt_tokens)
        # the queue of an llm service is its waiting sequences: the same queue-wait histogram
        self.queue_wait.labels(model=self.model_name).observe(waited_s)

    def first_token(self, seconds: float) -> None:
        self.time_to_first_token.labels(model=self.model_name).observe(seconds)

    def inter_token(self, seconds: float) -> None:
        self.inter_token_latency.labels(model=self.model_name).observe(seconds)

    def tokens_generated(self, count: int) -> None:
        self.generated_tokens.labels(model=self.model_name).inc(count)

    def generation_finished(self, generated_tokens: int, sequences: int) -> None:
        self.request_generation_tokens.labels(model=self.model_name).observe(generated_tokens)
        self.request_sequences.labels(model=self.model_name).observe(sequences)

    def grammar_computed(self, seconds: float) -> None:
        self.grammar_seconds.labels(model=self.model_name).inc(seconds)

    def prefix_cache_lookup(self, prompt_tokens: int, cached_tokens: int, cache_bytes: int) -> None:
        self.prefix_cache_query_tokens.labels(model=self.model_name).inc(prompt_tokens)
        self.prefix_cache_hit_tokens.labels(model=self.model_name).inc(cached_tokens)
        self.prefix_cache_bytes.labels(model=self.model_name).set(cache_bytes)

    def sequences(self, running: int, waiting: int, kv_cache_usage: float) -> None:
        with self._sequences_lock:
            self.running_sequences.labels(model=self.model_name).set(running)
            self.waiting_sequences.labels(model=self.model_name).set(waiting)
            self.kv_cache_usage.labels(model=self.model_name).set(kv_cache_usage)
            self.vllm_running.labels(model_name=self.model_name).set(running)
            self.vllm_waiting.labels(model_name=self.model_name).set(waiting)
            self.vllm_kv_cache_usage.labels(model_name=self.model_name).set(kv_cache_usage)
            # the queue of an llm service is its waiting sequences (one dashboard for all)
            self.queue_depth_gauge.labels(model=self.model_name).set(waiting)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        with self._sequences_lock:  # the gauges of one scheduler step, never half of them
            return super().render(accept)
