"""How the text-to-speech workload plugs into the app: its routers and its service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from ..serving import openai_models
from ..serving.batcher import BatchObserver
from ..settings import Settings
from . import routes
from .speech_service import SpeechService

# Behind the API key when one is set.
PROTECTED_ROUTERS: list[APIRouter] = [routes.router, openai_models.router]
OPEN_ROUTERS: list[APIRouter] = []


def run_batch(model: Any, payloads: list[list[Any]]) -> list[list[Any]]:
    """Synthesise every utterance of every payload in one model call; split the audio back.

    A payload is a list of utterances (a stream submits one per chunk; warmup
    submits ``size`` at once); its result is their waveforms, in order.
    """
    utterances = [utterance for payload in payloads for utterance in payload]
    audio = model.predict(utterances)
    if len(audio) != len(utterances):
        raise RuntimeError(f"predict returned {len(audio)} waveforms for {len(utterances)} inputs")
    results: list[list[Any]] = []
    start = 0
    for payload in payloads:
        results.append(audio[start : start + len(payload)])
        start += len(payload)
    return results


def example_payload(model: Any, size: int) -> list[Any]:
    """A warmup payload of ``size`` utterances."""
    return model.example_utterances(size)


async def create_service(
    settings: Settings, model_factory: Callable[[], Any], observer: BatchObserver | None
) -> SpeechService:
    """Load the model instances behind a dynamic batcher (not yet warm, not yet ready).

    Each chunk of a speech stream is one item: chunks of concurrent requests share batches.
    """
    return await SpeechService.from_settings(
        settings, model_factory, run_batch, example_payload, observer
    )
