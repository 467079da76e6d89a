"""Build the demo text-to-speech model as safetensors weights, offline and deterministically.

The network is ``DemoSynthesizer`` from the service's ``model.py``:

    ids (B, L) int64, durations (B, L) int64, voice (B,) int64  ->  audio (B, T) float32

- a character embedding plus a voice embedding, two masked 1-D convolutions
  and a linear head give each character a pitch, loudness, brightness and
  noise level (fixed-seed random weights);
- each character is held for ``durations`` frames of ``hop_length`` samples;
- a harmonic oscillator (continuous phase, eight harmonics whose balance is
  the voice's timbre) plus hashed noise, shaped by a per-character envelope,
  renders the waveform at 24 kHz.

The audio is repeatable, grows with the text and sounds like babble: the
model is not intelligible and is not meant to be. The front-end tables
(character set, frames per character, voice names, sample rate) travel in
the file's metadata, the way real TTS models ship a config beside their
weights. Weights are saved with safetensors, never pickle.

    python scripts/make_demo_model.py [--out models/model.safetensors]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from {{ cookiecutter.package_name }}.model import HARMONICS, HIDDEN, DemoSynthesizer, Model

SEED = 20240601
SAMPLE_RATE = Model.sample_rate  # the contract: model.py declares it
HOP_LENGTH = 240  # 10 ms frames
# id 0 pads a batch, id 1 is any character outside CHARSET
CHARSET = " abcdefghijklmnopqrstuvwxyz0123456789'-,;:.!?"
VOWELS = set("aeiouy")
VOICED = set("bdgjlmnrvwz")
UNVOICED = set("cfhkpqstx")
# the model's own voices (speaker ids 0..12), by base pitch in Hz; model.py maps
# OpenAI's voice names to them (Model.voices)
VOICE_PITCHES = [
    150.0,  # alloy
    120.0,  # ash
    165.0,  # ballad
    200.0,  # coral
    110.0,  # echo
    130.0,  # fable
    220.0,  # nova
    95.0,  # onyx
    180.0,  # sage
    240.0,  # shimmer
    140.0,  # verse
    210.0,  # marin
    100.0,  # cedar
]


def char_table() -> tuple[list[int], np.ndarray, np.ndarray]:
    """Per id: frames at speed 1, voiced gain and noise level (pad and unknown first)."""
    frames, gain, noise = [0, 7], [0.0, 0.5], [0.0, 0.1]
    for char in CHARSET:
        if char in VOWELS:
            entry = (9, 1.0, 0.02)
        elif char in VOICED:
            entry = (6, 0.75, 0.08)
        elif char in UNVOICED:
            entry = (6, 0.2, 0.4)
        elif char.isdigit():
            entry = (12, 0.8, 0.05)
        elif char in "'-":
            entry = (3, 0.0, 0.0)
        elif char in ",;:":
            entry = (14, 0.0, 0.0)
        elif char in ".!?":
            entry = (24, 0.0, 0.0)
        else:  # space
            entry = (4, 0.0, 0.0)
        frames.append(entry[0])
        gain.append(entry[1])
        noise.append(entry[2])
    return frames, np.array(gain, dtype=np.float32), np.array(noise, dtype=np.float32)


def demo_weights() -> dict[str, np.ndarray]:
    """Fixed-seed weights; the names match the torch variant's state dict."""
    rng = np.random.default_rng(SEED)
    vocab = len(CHARSET) + 2
    _, gain, noise = char_table()
    embedding = rng.standard_normal((vocab, HIDDEN)) * 0.5
    embedding[0] = 0.0  # padding contributes nothing
    timbre = rng.gamma(2.0, 1.0, (len(VOICE_PITCHES), HARMONICS)) / np.arange(1, HARMONICS + 1)
    weights = {
        "char_embedding.weight": embedding,
        "voice_embedding.weight": rng.standard_normal((len(VOICE_PITCHES), HIDDEN)) * 0.5,
        "conv1.weight": rng.standard_normal((HIDDEN, HIDDEN, 3)) * math.sqrt(1.0 / (3 * HIDDEN)),
        "conv1.bias": rng.standard_normal(HIDDEN) * 0.01,
        "conv2.weight": rng.standard_normal((HIDDEN, HIDDEN, 3)) * math.sqrt(1.0 / (3 * HIDDEN)),
        "conv2.bias": rng.standard_normal(HIDDEN) * 0.01,
        "head.weight": rng.standard_normal((4, HIDDEN)) * math.sqrt(1.0 / HIDDEN),
        "head.bias": np.zeros(4),
        "voice_pitch": np.array(VOICE_PITCHES),
        "voice_timbre": timbre / timbre.sum(axis=1, keepdims=True),
        "char_gain": gain,
        "char_noise": noise,
    }
    return {name: array.astype(np.float32) for name, array in weights.items()}


def metadata() -> dict[str, str]:
    frames, _, _ = char_table()
    return {
        "sample_rate": str(SAMPLE_RATE),
        "hop_length": str(HOP_LENGTH),
        "charset": CHARSET,
        "char_frames": json.dumps(frames),
        "num_voices": str(len(VOICE_PITCHES)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/model.safetensors"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    weights = {name: torch.from_numpy(array).contiguous() for name, array in demo_weights().items()}
    net = DemoSynthesizer(len(CHARSET) + 2, len(VOICE_PITCHES), SAMPLE_RATE, HOP_LENGTH)
    net.load_state_dict(weights, strict=True)  # the names and shapes match the network
    save_file(weights, str(args.out), metadata=metadata())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
