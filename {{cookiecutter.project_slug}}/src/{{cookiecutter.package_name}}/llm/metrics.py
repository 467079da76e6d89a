"""The llm workload's metrics: tokens, sequences, time to first token and between tokens.

``GenerationMetrics`` adds them to the shared ``ServiceMetrics`` and implements
the scheduler's ``GenerationObserver``; the scheduler calls it from its engine
thread (prometheus-client's metric objects are thread-safe).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..metrics import PREFIX, ServiceMetrics, decades

# time to first token (prefill + waiting for a slot) and between tokens (one decode step)
TTFT_BUCKETS = decades(0.005, 30)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)


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
        for labelled in (
            self.time_to_first_token,
            self.inter_token_latency,
            self.prompt_tokens,
            self.generated_tokens,
            self.running_sequences,
            self.waiting_sequences,
        ):
            labelled.labels(model=model_name)  # export zeros from the start

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

    def sequences(self, running: int, waiting: int) -> None:
        self.running_sequences.labels(model=self.model_name).set(running)
        self.waiting_sequences.labels(model=self.model_name).set(waiting)
        # the queue of an llm service is its waiting sequences (one dashboard for all workloads)
        self.queue_depth_gauge.labels(model=self.model_name).set(waiting)
