"""The model: the one file to edit to serve your own.

The class attributes of ``Model`` are the contract: what the model is. The
routes, warmup, the demo-model builder and the tests read them from here, and
``Model.load`` checks the weights against them, failing start-up with one line
that says what to change:

- ``sample_rate``: Hz of the waveforms ``predict`` returns (the WAV header and
  the X-Sample-Rate header say it); checked against the weights' metadata;
- ``voices``: the voice names a request may ask for (OpenAI's, so existing
  clients work unchanged), each mapped to one of the model's own voices (its
  speaker id); every id must exist in the model (metadata ``num_voices``).
  The demo maps all thirteen names OpenAI documents (alloy, ash, ballad, coral,
  echo, fable, nova, onyx, sage, shimmer, verse, marin, cedar) to its thirteen
  voices; a model with fewer voices maps several names to one, or lists fewer
  names (the others answer 400, listing these).

OpenAI's ``instructions`` ("speak cheerfully") are accepted and ignored: this
model has no way to follow them, so the audio is the same with or without them.
The response's format (mp3, opus, aac, flac, wav, pcm) is the service's
business (``tts/encoders.py``): ``predict`` returns float samples whatever the
client asked for.

The methods the service calls:

- ``load()``: build the network and load its safetensors weights once at
  start-up (pickled checkpoints are refused);
- ``prepare(text, voice, speed)``: one chunk of text (at most TTS_CHUNK_CHARS
  characters; the route splits longer input at sentences) -> one model input
  (an ``Utterance``); raise ``InvalidInput`` for text the model cannot speak;
- ``num_samples(utterance)``: the exact audio length of that input when it is
  known before synthesis, else ``None`` (WAV responses are then sent once
  complete instead of streamed; PCM always streams);
- ``predict(batch)``: a list of utterances -> one float32 mono waveform in
  [-1, 1] per utterance; it runs in a worker thread, never on the event loop,
  and must give each utterance the same audio whatever else is in its batch;
- ``example_utterances(n)``: inputs used to warm up every batch size.

The demo is ``DemoSynthesizer``, a character-level model (weights from
``scripts/make_demo_model.py``); its front-end tables (character set, frames
per character, hop length) travel in the safetensors metadata. To serve your
own TTS model (VITS, Piper, Kokoro...): replace ``DemoSynthesizer`` with your
network, save its ``state_dict()`` with ``safetensors.torch.save_file``, set the
contract above, point ``MODEL_PATH`` at it, and replace ``prepare`` (your
tokenizer or phonemizer) and ``predict``. See "Serve your own model" in the
README.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from .serving.device import Device
from .serving.errors import InvalidInput
from .serving.torch_backend import (
    compute_dtype,
    load_weights,
    require_weights,
    select_device,
    set_compute_threads,
)
from .settings import Settings
from .tts.contract import ContractError, check_sample_rate, check_voices, probe

PAD_ID = 0
UNKNOWN_ID = 1
HIDDEN = 64
HARMONICS = 8
NOISE_PERIOD = 9973


@dataclass(frozen=True, slots=True)
class Utterance:
    """One chunk of text, ready for the model."""

    ids: np.ndarray  # (chars,) int64 character ids
    durations: np.ndarray  # (chars,) int64 frames each character lasts
    voice: int


class DemoSynthesizer(nn.Module):
    """Characters -> per-character pitch/loudness/brightness/noise -> harmonic + noise waveform.

    Padding (id 0, duration 0) never changes another item's audio: hidden
    states are masked after every layer and each item's frames start at 0.
    Synthesis runs in float32 whatever the network's precision.
    """

    def __init__(self, vocab_size: int, num_voices: int, sample_rate: int, hop_length: int) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.char_embedding = nn.Embedding(vocab_size, HIDDEN)
        self.voice_embedding = nn.Embedding(num_voices, HIDDEN)
        self.conv1 = nn.Conv1d(HIDDEN, HIDDEN, 3, padding=1)
        self.conv2 = nn.Conv1d(HIDDEN, HIDDEN, 3, padding=1)
        self.head = nn.Linear(HIDDEN, 4)
        self.register_buffer("voice_pitch", torch.zeros(num_voices))
        self.register_buffer("voice_timbre", torch.zeros(num_voices, HARMONICS))
        self.register_buffer("char_gain", torch.zeros(vocab_size))
        self.register_buffer("char_noise", torch.zeros(vocab_size))

    def forward(
        self, ids: torch.Tensor, durations: torch.Tensor, voice: torch.Tensor
    ) -> torch.Tensor:
        mask = (ids > PAD_ID).unsqueeze(1).to(self.conv1.weight.dtype)  # (B, 1, L)
        hidden = self.char_embedding(ids) + self.voice_embedding(voice).unsqueeze(1)
        hidden = hidden.transpose(1, 2) * mask  # (B, D, L)
        hidden = torch.tanh(self.conv1(hidden)) * mask
        hidden = hidden + torch.tanh(self.conv2(hidden)) * mask
        p = self.head(hidden.transpose(1, 2)).float()  # (B, L, 4)
        pitch = self.voice_pitch[voice][:, None] * torch.exp(0.3 * torch.tanh(p[..., 0]))
        loud = (0.35 + 0.25 * torch.tanh(p[..., 1])) * self.char_gain[ids]
        bright = 0.35 + 0.3 * torch.sigmoid(p[..., 2])
        noise_level = self.char_noise[ids] * (0.5 + 0.5 * torch.sigmoid(p[..., 3]))
        starts = torch.cumsum(durations, dim=1) - durations  # first frame of each character
        per_char = torch.stack(
            [pitch, loud, bright, noise_level, starts.float(), durations.float()], dim=2
        )

        # which character each frame belongs to: count the characters started so far
        total = durations.sum(dim=1, keepdim=True)  # (B, 1)
        frames = int(total.max())
        markers = torch.zeros(ids.shape[0], frames + 1, device=ids.device)
        markers.scatter_add_(1, starts, (durations > 0).float())
        char_index = (torch.cumsum(markers, dim=1)[:, :frames] - 1).long()  # (B, F)
        per_frame = torch.gather(
            per_char, 1, char_index.unsqueeze(2).expand(-1, -1, per_char.shape[2])
        )
        f_pitch, f_loud, f_bright, f_noise, f_start, f_dur = per_frame.unsqueeze(3).unbind(
            2
        )  # (B, F, 1)
        frame_no = torch.arange(frames, device=ids.device, dtype=torch.float32)[None, :, None]
        valid = (frame_no < total.float()[:, :, None]).float()

        # synthesis, frame by frame: (B, F, HOP)
        hop = self.hop_length
        offset = torch.arange(hop, device=ids.device, dtype=torch.float32)[None, None, :]
        step = f_pitch / self.sample_rate  # cycles per sample
        cycles = torch.cumsum(step * hop, dim=1) - step * hop
        theta = (cycles - torch.floor(cycles) + offset * step) * (2 * math.pi)
        timbre = self.voice_timbre[voice]  # (B, K)
        harmonics = torch.zeros_like(theta)
        weight = torch.ones_like(f_bright)
        for k in range(HARMONICS):
            harmonics = harmonics + torch.sin(theta * (k + 1)) * (timbre[:, k, None, None] * weight)
            weight = weight * f_bright  # brighter characters keep more upper harmonics
        position = (frame_no - f_start) * hop + (offset + 0.5)
        envelope = torch.sin(position / (f_dur * hop) * math.pi)
        sample_no = frame_no * hop + offset
        seed = voice.float()[:, None, None] * 78.233
        hashed = torch.sin(torch.fmod(sample_no, NOISE_PERIOD) * 12.9898 + seed) * 43758.5453
        noise = (hashed - torch.floor(hashed)) * 2 - 1
        audio = envelope * valid * (f_loud * harmonics + f_noise * noise)
        return audio.reshape(ids.shape[0], -1)


class Model:
    platform = "pytorch_safetensors"
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

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device: Device | None = None
        self.hop_length = 0
        self._char_ids: dict[str, int] = {}
        self._char_frames = np.zeros(0, dtype=np.float64)
        self._net: nn.Module | None = None

    def load(self) -> None:
        path = require_weights(self.settings.model_path)
        with safe_open(str(path), framework="pt") as weights:
            meta = weights.metadata() or {}
        try:
            sample_rate = int(meta["sample_rate"])
            num_voices = int(meta["num_voices"])
            self.hop_length = int(meta["hop_length"])
            charset = meta["charset"]
            self._char_frames = np.array(json.loads(meta["char_frames"]), dtype=np.float64)
        except (KeyError, ValueError) as exc:
            raise ContractError(
                f"the weights' metadata is missing or invalid ({exc}): save sample_rate, "
                "num_voices, hop_length, charset and char_frames with them (save_file metadata=)"
            ) from None
        check_sample_rate(sample_rate, self.sample_rate)
        check_voices(self.voices, num_voices)
        self._char_ids = {char: index + 2 for index, char in enumerate(charset)}
        self.device = select_device(self.settings)
        set_compute_threads(self.settings)
        net = DemoSynthesizer(len(charset) + 2, num_voices, self.sample_rate, self.hop_length)
        self._net = load_weights(
            net,
            path,
            self.device,
            compute_dtype(self.settings, self.device),
            fix="save the metadata (it sizes DemoSynthesizer) with the weights, "
            "or replace DemoSynthesizer",
        )
        # the synthesis tables stay in float32 whatever PRECISION says
        for name in ("voice_pitch", "voice_timbre", "char_gain", "char_noise"):
            setattr(self._net, name, getattr(self._net, name).float())
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

    @torch.inference_mode()
    def predict(self, batch: list[Utterance]) -> list[np.ndarray]:
        longest = max(len(u.ids) for u in batch)
        ids = np.full((len(batch), longest), PAD_ID, dtype=np.int64)
        durations = np.zeros((len(batch), longest), dtype=np.int64)  # padding lasts 0 frames
        for row, utterance in enumerate(batch):
            ids[row, : len(utterance.ids)] = utterance.ids
            durations[row, : len(utterance.durations)] = utterance.durations
        device = str(self.device)
        audio = self._net(
            torch.from_numpy(ids).to(device),
            torch.from_numpy(durations).to(device),
            torch.tensor([u.voice for u in batch], device=device),
        )
        audio = audio.cpu().numpy()
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
