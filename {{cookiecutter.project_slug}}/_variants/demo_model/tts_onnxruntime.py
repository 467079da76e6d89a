"""Build the demo text-to-speech model as an ONNX file, offline and deterministically.

Uses the ``onnx`` package alone (no torch). The graph maps characters to audio
in one call, the way exported TTS models (VITS, Piper, Kokoro) do:

    ids (B, L) int64, durations (B, L) int64, voice (B,) int64  ->  audio (B, T) float32

- a character embedding plus a voice embedding, two masked 1-D convolutions
  and a linear head give each character a pitch, loudness, brightness and
  noise level (fixed-seed random weights);
- each character is held for ``durations`` frames of ``hop_length`` samples;
- a harmonic oscillator (continuous phase, eight harmonics whose balance is
  the voice's timbre) plus hashed noise, shaped by a per-character envelope,
  renders the waveform at 24 kHz.

The audio is repeatable, grows with the text and sounds like babble: the
model is not intelligible and is not meant to be. Padding (id 0, duration 0)
never changes another item's audio, so batched and single calls agree.
The front-end tables (character set, frames per character, voice names,
sample rate) travel in the file's metadata, the way real TTS models ship a
config beside their weights.

    python scripts/make_demo_model.py [--out models/model.onnx]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from {{ cookiecutter.package_name }}.model import Model

SEED = 20240601
SAMPLE_RATE = Model.sample_rate  # the contract: model.py declares it
IDS, DURATIONS, VOICE = Model.input_names
AUDIO = Model.output_name
HOP_LENGTH = 240  # 10 ms frames
HIDDEN = 64
HARMONICS = 8
NOISE_PERIOD = 9973  # the noise hash repeats after this many samples (a prime)
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


class GraphBuilder:
    """Tiny helper: every call adds one node and returns its output name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, value: float | int | list[int], dtype: type = np.float32) -> str:
        name = f"const_{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        return name

    def __call__(self, op: str, *inputs: str, **attributes: object) -> str:
        self._count += 1
        output = f"{op.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op, list(inputs), [output], **attributes))
        return output


def build_graph(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    g = GraphBuilder()
    f = g.const
    axis1, axis2 = f([1], np.int64), f([2], np.int64)
    # --- text encoder: per-character parameters -------------------------------------------
    mask = g("Cast", g("Greater", IDS, f(0, np.int64)), to=TensorProto.FLOAT)  # (B, L)
    voice_emb = g("Unsqueeze", g("Gather", "voice_embedding.weight", VOICE), axis1)
    hidden = g(
        "Mul",
        g("Add", g("Gather", "char_embedding.weight", IDS), voice_emb),
        g("Unsqueeze", mask, axis2),
    )
    channels_first = g("Transpose", hidden, perm=[0, 2, 1])  # (B, D, L)
    mask_cf = g("Unsqueeze", mask, axis1)
    conv = dict(kernel_shape=[3], pads=[1, 1])
    h1 = g(
        "Mul", g("Tanh", g("Conv", channels_first, "conv1.weight", "conv1.bias", **conv)), mask_cf
    )
    h2 = g(
        "Add", h1, g("Mul", g("Tanh", g("Conv", h1, "conv2.weight", "conv2.bias", **conv)), mask_cf)
    )
    head_weight = g("Transpose", "head.weight", perm=[1, 0])
    head = g(
        "Add", g("MatMul", g("Transpose", h2, perm=[0, 2, 1]), head_weight), "head.bias"
    )  # (B, L, 4)
    p_pitch, p_loud, p_bright, p_noise = (
        g("Slice", head, f([i], np.int64), f([i + 1], np.int64), axis2) for i in range(4)
    )
    voice_pitch = g(
        "Unsqueeze", g("Gather", "voice_pitch", VOICE), f([1, 2], np.int64)
    )  # (B, 1, 1)
    pitch = g("Mul", voice_pitch, g("Exp", g("Mul", f(0.3), g("Tanh", p_pitch))))
    gain = g("Unsqueeze", g("Gather", "char_gain", IDS), axis2)
    loud = g("Mul", g("Add", f(0.35), g("Mul", f(0.25), g("Tanh", p_loud))), gain)
    bright = g("Add", f(0.35), g("Mul", f(0.3), g("Sigmoid", p_bright)))
    noise_table = g("Unsqueeze", g("Gather", "char_noise", IDS), axis2)
    noise_level = g("Mul", noise_table, g("Add", f(0.5), g("Mul", f(0.5), g("Sigmoid", p_noise))))
    starts = g("CumSum", DURATIONS, f(1, np.int64), exclusive=1)  # (B, L) first frame of each char
    as_float = lambda name: g("Unsqueeze", g("Cast", name, to=TensorProto.FLOAT), axis2)  # noqa: E731
    per_char = g(
        "Concat", pitch, loud, bright, noise_level, as_float(starts), as_float(DURATIONS), axis=2
    )

    # --- durations: which character each frame belongs to ----------------------------------
    total = g("ReduceSum", DURATIONS, axis1, keepdims=1)  # (B, 1)
    frames = g("ReduceMax", total, keepdims=0)  # scalar: frames of the longest item
    batch = g("Unsqueeze", g("Gather", g("Shape", IDS), f(0, np.int64)), f([0], np.int64))
    marker_shape = g(
        "Concat", batch, g("Unsqueeze", g("Add", frames, f(1, np.int64)), f([0], np.int64)), axis=0
    )
    zeros = g(
        "ConstantOfShape", marker_shape, value=numpy_helper.from_array(np.zeros(1, np.float32))
    )
    starts_mark = g("Cast", g("Greater", DURATIONS, f(0, np.int64)), to=TensorProto.FLOAT)
    markers = g("ScatterElements", zeros, starts, starts_mark, axis=1, reduction="add")
    counted = g(
        "Slice",
        g("CumSum", markers, f(1, np.int64)),
        f([0], np.int64),
        g("Unsqueeze", frames, f([0], np.int64)),
        axis1,
    )
    char_index = g("Cast", g("Sub", counted, f(1.0)), to=TensorProto.INT64)  # (B, F)
    gather_index = g(
        "Expand",
        g("Unsqueeze", char_index, axis2),
        g("Concat", g("Shape", char_index), f([6], np.int64), axis=0),
    )
    per_frame = g("GatherElements", per_char, gather_index, axis=1)  # (B, F, 6)
    f_pitch, f_loud, f_bright, f_noise, f_start, f_dur = (
        g("Slice", per_frame, f([i], np.int64), f([i + 1], np.int64), axis2) for i in range(6)
    )
    frame_no = g(
        "Unsqueeze",
        g("Cast", g("Range", f(0, np.int64), frames, f(1, np.int64)), to=TensorProto.FLOAT),
        f([0, 2], np.int64),
    )
    valid = g(
        "Cast",
        g("Less", frame_no, g("Unsqueeze", g("Cast", total, to=TensorProto.FLOAT), axis2)),
        to=TensorProto.FLOAT,
    )

    # --- synthesis, frame by frame (B, F, HOP) ---------------------------------------------
    offset = f(np.arange(HOP_LENGTH, dtype=np.float32).reshape(1, 1, HOP_LENGTH))
    step = g("Div", f_pitch, f(float(SAMPLE_RATE)))  # cycles per sample
    cycles = g("CumSum", g("Mul", step, f(float(HOP_LENGTH))), f(1, np.int64), exclusive=1)
    frame_phase = g("Sub", cycles, g("Floor", cycles))  # keep the phase small: precise in fp32
    theta = g("Mul", g("Add", frame_phase, g("Mul", offset, step)), f(2 * math.pi))
    timbre = g("Gather", "voice_timbre", VOICE)  # (B, K)
    harmonic_sum = None
    weight = g("Identity", f(1.0))
    for k in range(HARMONICS):
        level = g(
            "Unsqueeze", g("Slice", timbre, f([k], np.int64), f([k + 1], np.int64), axis1), axis2
        )
        term = g("Mul", g("Sin", g("Mul", theta, f(float(k + 1)))), g("Mul", level, weight))
        harmonic_sum = term if harmonic_sum is None else g("Add", harmonic_sum, term)
        weight = g("Mul", weight, f_bright)  # brighter characters keep more upper harmonics
    position = g(
        "Add", g("Mul", g("Sub", frame_no, f_start), f(float(HOP_LENGTH))), g("Add", offset, f(0.5))
    )
    envelope = g(
        "Sin", g("Mul", g("Div", position, g("Mul", f_dur, f(float(HOP_LENGTH)))), f(math.pi))
    )
    sample_no = g("Add", g("Mul", frame_no, f(float(HOP_LENGTH))), offset)
    voice_seed = g("Unsqueeze", g("Cast", VOICE, to=TensorProto.FLOAT), f([1, 2], np.int64))
    hashed = g(
        "Mul",
        g(
            "Sin",
            g(
                "Add",
                g("Mul", g("Mod", sample_no, f(float(NOISE_PERIOD)), fmod=1), f(12.9898)),
                g("Mul", voice_seed, f(78.233)),
            ),
        ),
        f(43758.5453),
    )
    noise = g("Sub", g("Mul", g("Sub", hashed, g("Floor", hashed)), f(2.0)), f(1.0))
    voiced = g("Mul", f_loud, harmonic_sum)
    audio3 = g("Mul", g("Mul", envelope, valid), g("Add", voiced, g("Mul", f_noise, noise)))
    g.nodes.append(helper.make_node("Reshape", [audio3, f([0, -1], np.int64)], [AUDIO]))

    graph = helper.make_graph(
        g.nodes,
        "demo_tts",
        [
            helper.make_tensor_value_info(IDS, TensorProto.INT64, ["batch", "chars"]),
            helper.make_tensor_value_info(DURATIONS, TensorProto.INT64, ["batch", "chars"]),
            helper.make_tensor_value_info(VOICE, TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info(AUDIO, TensorProto.FLOAT, ["batch", "samples"])],
        initializer=[numpy_helper.from_array(array, name) for name, array in weights.items()]
        + g.constants,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_demo_model"
    )
    model.ir_version = 8
    helper.set_model_props(model, metadata())
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/model.onnx"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(demo_weights()), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
