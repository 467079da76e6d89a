"""The model: the one file to edit to serve your own.

The service reads only what this module defines:

- ``Model(settings)`` and ``Model.load()``: open the model once at start-up;
- ``Model.voices`` (the names a request may ask for) and ``Model.sample_rate``;
- ``Model.prepare(text, voice, speed)``: one chunk of text -> one model input
  (an ``Utterance``); raise ``InvalidInput`` for text the model cannot speak;
- ``Model.num_samples(utterance)``: the exact audio length of that input when
  it is known before synthesis, else ``None`` (WAV responses are then sent
  once complete instead of streamed; PCM always streams);
- ``Model.predict(batch)``: a list of utterances -> one float32 mono
  waveform in [-1, 1] per utterance; it runs in a worker thread, never on
  the event loop, and must give each utterance the same audio whatever else
  is in its batch;
- ``Model.example_utterances(n)``: inputs used to warm up every batch size.

The demo is a character-level model (see ``scripts/make_demo_model.py``):
its front-end tables (character set, frames per character, voice names,
sample rate) come from the ONNX file's metadata. To serve your own TTS model
(VITS, Piper, Kokoro...): export it to ONNX with a batch axis, point
``MODEL_PATH`` at it, and replace ``prepare`` (your tokenizer or phonemizer)
and ``predict`` (your input and output names).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass

import numpy as np

from .serving.device import Device
from .serving.errors import InvalidInput
from .serving.onnxruntime_backend import create_session
from .settings import Settings

PAD_ID = 0
UNKNOWN_ID = 1
INPUTS = ("ids", "durations", "voice")


@dataclass(frozen=True, slots=True)
class Utterance:
    """One chunk of text, ready for the model."""

    ids: np.ndarray  # (chars,) int64 character ids
    durations: np.ndarray  # (chars,) int64 frames each character lasts
    voice: int


class Model:
    platform = "onnxruntime_onnx"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device: Device | None = None
        self.voices: tuple[str, ...] = ()
        self.sample_rate = 0
        self.hop_length = 0
        self._char_ids: dict[str, int] = {}
        self._char_frames = np.zeros(0, dtype=np.float64)
        self._session = None

    def load(self) -> None:
        self._session, self.device = create_session(self.settings.model_path, self.settings)
        names = tuple(i.name for i in self._session.get_inputs())
        if names != INPUTS:
            raise ValueError(f"model inputs are {names}, expected {INPUTS}")
        meta = self._session.get_modelmeta().custom_metadata_map
        try:
            self.sample_rate = int(meta["sample_rate"])
            self.hop_length = int(meta["hop_length"])
            self.voices = tuple(json.loads(meta["voices"]))
            self._char_ids = {char: index + 2 for index, char in enumerate(meta["charset"])}
            self._char_frames = np.array(json.loads(meta["char_frames"]), dtype=np.float64)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"model metadata is missing or invalid: {exc}") from exc

    def prepare(self, text: str, voice: str, speed: float) -> Utterance:
        """Characters -> ids, and how many frames each lasts at this speed (at least one)."""
        ids = np.array(
            [self._char_ids.get(char, UNKNOWN_ID) for char in normalize(text)], dtype=np.int64
        )
        if ids.size == 0:
            raise InvalidInput("input contains no text to speak", param="input")
        durations = np.maximum(1, np.rint(self._char_frames[ids] / speed)).astype(np.int64)
        return Utterance(ids, durations, self.voices.index(voice))

    def num_samples(self, utterance: Utterance) -> int | None:
        return int(utterance.durations.sum()) * self.hop_length

    def predict(self, batch: list[Utterance]) -> list[np.ndarray]:
        longest = max(len(u.ids) for u in batch)
        ids = np.full((len(batch), longest), PAD_ID, dtype=np.int64)
        durations = np.zeros((len(batch), longest), dtype=np.int64)  # padding lasts 0 frames
        for row, utterance in enumerate(batch):
            ids[row, : len(utterance.ids)] = utterance.ids
            durations[row, : len(utterance.durations)] = utterance.durations
        voices = np.array([u.voice for u in batch], dtype=np.int64)
        feeds = {"ids": ids, "durations": durations, "voice": voices}
        (audio,) = self._session.run(["audio"], feeds)
        # copies: a view would keep the whole batch alive until every stream is done
        return [audio[row, : self.num_samples(u)].copy() for row, u in enumerate(batch)]

    def example_utterances(self, count: int) -> list[Utterance]:
        """The widest input the service sends (the longest chunk), in every voice.

        One frame per character: the same model input shapes with the least audio,
        so warmup stays short.
        """
        sentence = "the quick brown fox jumps over the lazy dog. "
        width = self.settings.tts_chunk_chars
        text = (sentence * (width // len(sentence) + 1))[:width]
        utterances = [
            self.prepare(text, self.voices[i % len(self.voices)], 1.0) for i in range(count)
        ]
        return [Utterance(u.ids, np.ones_like(u.durations), u.voice) for u in utterances]


def normalize(text: str) -> str:
    """Lower case, accents stripped (é -> e): the demo's character set is plain ASCII."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))
