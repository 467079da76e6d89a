"""The model: the one file to edit to serve your own.

The class attributes of ``Model`` are the contract: what the model is. The
routes, warmup, the demo-model builder and the tests read them from here, and
``Model.load`` checks the model file against them, failing start-up with one
line that says what to change:

- ``sample_rate``: Hz of the waveforms ``predict`` returns (the WAV header and
  the X-Sample-Rate header say it); checked against the file's metadata;
- ``voices``: the voice names a request may ask for (OpenAI's, so existing
  clients work unchanged), each mapped to one of the model's own voices (its
  speaker id); every id must exist in the model (metadata ``num_voices``).
  The demo maps all thirteen names OpenAI documents (alloy, ash, ballad, coral,
  echo, fable, nova, onyx, sage, shimmer, verse, marin, cedar) to its thirteen
  voices; a model with fewer voices maps several names to one, or lists fewer
  names (the others answer 400, listing these);
- ``input_names`` / ``output_name``: the graph's tensors; the waveform output
  is float32 in [-1, 1], ``(batch, samples)``, with a dynamic batch axis.

OpenAI's ``instructions`` ("speak cheerfully") are accepted and ignored: this
model has no way to follow them, so the audio is the same with or without them.
The response's format (mp3, opus, aac, flac, wav, pcm) is the service's
business (``tts/encoders.py``): ``predict`` returns float samples whatever the
client asked for.

The methods the service calls:

- ``load()``: open the model once at start-up;
- ``prepare(text, voice, speed)``: one chunk of text (at most TTS_CHUNK_CHARS
  characters; the route splits longer input at sentences) -> one model input
  (an ``Utterance``); raise ``InvalidInput`` for text the model cannot speak;
- ``num_samples(utterance)``: the exact audio length of that input when it is
  known before synthesis, else ``None`` (WAV responses are then sent once
  complete instead of streamed; PCM always streams);
- ``predict(batch)``: a list of utterances -> one float32 mono waveform per
  utterance; it runs in a worker thread, never on the event loop, and must give
  each utterance the same audio whatever else is in its batch;
- ``example_utterances(n)``: inputs used to warm up every batch size.

The demo is a character-level model (see ``scripts/make_demo_model.py``): its
front-end tables (character set, frames per character, hop length) travel in the
ONNX file's metadata. To serve your own TTS model (VITS, Piper, Kokoro...):
export it to ONNX with a batch axis, set the contract above, point
``MODEL_PATH`` at it, and replace ``prepare`` (your tokenizer or phonemizer) and
``predict``. See "Serve your own model" in the README.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .serving.device import Device
from .serving.errors import InvalidInput
from .serving.onnxruntime_backend import create_session
from .settings import Settings
from .tts.contract import ContractError, check_graph, check_sample_rate, check_voices, probe

PAD_ID = 0
UNKNOWN_ID = 1


@dataclass(frozen=True, slots=True)
class Utterance:
    """One chunk of text, ready for the model."""

    ids: np.ndarray  # (chars,) int64 character ids
    durations: np.ndarray  # (chars,) int64 frames each character lasts
    voice: int


class Model:
    platform = "onnxruntime_onnx"
    # --- the contract: what the model is ------------------------------------------
    sample_rate = 24_000
    # OpenAI's voice name -> the model's own voice (speaker id); a request for a name that is
    # not here answers 400 listing these. Several names may share one voice.
    voices: ClassVar[dict[str, int]] = {
        "alloy": 0,
        "ash": 1,
        "ballad": 2,
        "coral": 3,
        "echo": 4,
        "fable": 5,
        "nova": 6,
        "onyx": 7,
        "sage": 8,
        "shimmer": 9,
        "verse": 10,
        "marin": 11,
        "cedar": 12,
    }
    input_names = ("ids", "durations", "voice")
    output_name = "audio"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device: Device | None = None
        self.hop_length = 0
        self._char_ids: dict[str, int] = {}
        self._char_frames = np.zeros(0, dtype=np.float64)
        self._session = None

    def load(self) -> None:
        self._session, self.device = create_session(self.settings.model_path, self.settings)
        check_graph(self._session, self.input_names, self.output_name)
        meta = self._session.get_modelmeta().custom_metadata_map
        try:
            sample_rate = int(meta["sample_rate"])
            num_voices = int(meta["num_voices"])
            self.hop_length = int(meta["hop_length"])
            self._char_ids = {char: index + 2 for index, char in enumerate(meta["charset"])}
            self._char_frames = np.array(json.loads(meta["char_frames"]), dtype=np.float64)
        except (KeyError, ValueError) as exc:
            raise ContractError(
                f"the model's metadata is missing or invalid ({exc}): save sample_rate, "
                "num_voices, hop_length, charset and char_frames with it"
            ) from None
        check_sample_rate(sample_rate, self.sample_rate)
        check_voices(self.voices, num_voices)
        probe(self)

    def prepare(self, text: str, voice: str, speed: float) -> Utterance:
        """Characters -> ids, and how many frames each lasts at this speed (at least one)."""
        ids = np.array(
            [self._char_ids.get(char, UNKNOWN_ID) for char in normalize(text)], dtype=np.int64
        )
        if ids.size == 0:
            raise InvalidInput("input contains no text to speak", param="input")
        durations = np.maximum(1, np.rint(self._char_frames[ids] / speed)).astype(np.int64)
        return Utterance(ids, durations, self.voices[voice])

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
        feeds = dict(zip(self.input_names, (ids, durations, voices), strict=True))
        (audio,) = self._session.run([self.output_name], feeds)
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
        names = list(self.voices)
        utterances = [self.prepare(text, names[i % len(names)], 1.0) for i in range(count)]
        return [Utterance(u.ids, np.ones_like(u.durations), u.voice) for u in utterances]


def normalize(text: str) -> str:
    """Lower case, accents stripped (é -> e): the demo's character set is plain ASCII."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))
