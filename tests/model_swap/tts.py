"""Text to speech: a team's model at 16 kHz (the demo: 24 kHz) with three voices (the demo: ten).

- onnxruntime: the team's own graph, built here with the ``onnx`` package under
  its own tensor names (``text_ids``, ``frames``, ``speaker`` -> ``waveform``):
  each character held for its frames, a sine at the speaker's pitch whose
  loudness is the character's;
- torch: the project's ``DemoSynthesizer`` network re-sized (3 speakers, 16 kHz,
  10 ms hops of 160 samples) with its own weights, saved with safetensors.

Both carry the front-end tables the demo's ``prepare`` reads (character set,
frames per character, hop length, voice count, sample rate) in their metadata.
``model.py`` is edited only in its contract (``sample_rate``, ``voices``, and the
graph's tensor names); the served audio, asked for with the official ``openai``
client (``audio.speech.create`` and ``with_streaming_response``), must be a
16 kHz WAV with an X-Sample-Rate of 16000, and for the ONNX model the very samples
the team's graph defines; the default (MP3) and Opus answers decode (libsndfile)
at 16 kHz to the WAV's length, give or take the codec's padding.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np

from . import Swap

SAMPLE_RATE = 16_000
HOP = 160
CHARSET = " abcdefghijklmnopqrstuvwxyz.,?!'"
# OpenAI's voice names the team maps to its three speakers
VOICES = {"alloy": 0, "echo": 1, "nova": 2}
PITCHES = [140.0, 190.0, 240.0]
TEXT = "hello from the support team."
NAMES = ("text_ids", "frames", "speaker")
OUTPUT = "waveform"


def char_frames() -> list[int]:
    """Frames per id (pad, unknown, then CHARSET): vowels longer, pauses at punctuation."""
    return [0, 6] + [9 if c in "aeiou" else 14 if c in ".,?!" else 6 for c in CHARSET]


def loudness() -> np.ndarray:
    return np.array([0.0, 0.3] + [0.0 if c in " .,?!'" else 0.8 for c in CHARSET], np.float32)


def metadata() -> dict[str, str]:
    return {
        "sample_rate": str(SAMPLE_RATE),
        "num_voices": str(len(PITCHES)),
        "hop_length": str(HOP),
        "charset": CHARSET,
        "char_frames": json.dumps(char_frames()),
    }


def reference(ids: np.ndarray, frames: np.ndarray, speaker: int) -> np.ndarray:
    """What the team's graph computes for one utterance, in numpy."""
    ends = np.cumsum(frames)
    frame = np.arange(ends[-1])
    index = np.minimum((frame[:, None] >= ends[None, :]).sum(axis=1), len(ids) - 1)
    amplitude = np.repeat(loudness()[ids][index], HOP)  # each frame's loudness, per sample
    t = np.arange(len(amplitude))
    tone = np.sin((PITCHES[speaker] * t).astype(np.float32) * np.float32(2 * np.pi / SAMPLE_RATE))
    return (amplitude * 0.5 * tone).astype(np.float32)


def build_onnx(project: Path, out_dir: Path) -> Path:
    """The team's graph: (ids, frames, speaker) -> a sine at the speaker's pitch, each frame
    as loud as its character; frames past an item's end are silent."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ids, frames, speaker = NAMES
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []

    def const(value: object, dtype: object = np.int64) -> str:
        name = f"c{len(initializers)}"
        initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op: str, *inputs: str, **attributes: object) -> str:
        output = f"n{len(nodes)}"
        nodes.append(helper.make_node(op, list(inputs), [output], **attributes))
        return output

    ends = node("CumSum", frames, const(1))  # (B, L) frame after each character
    total = node("ReduceSum", frames, const([1]), keepdims=1)  # (B, 1) frames per item
    frame = node("Range", const(0), node("ReduceMax", total, keepdims=0), const(1))  # (F,)
    started = node(
        "GreaterOrEqual",
        node("Unsqueeze", frame, const([0, 1])),  # (1, 1, F)
        node("Unsqueeze", ends, const([2])),  # (B, L, 1)
    )
    last = node("Sub", node("Gather", node("Shape", ids), const(1)), const(1))
    char = node(
        "Min",
        node("ReduceSum", node("Cast", started, to=TensorProto.INT64), const([1]), keepdims=0),
        last,
    )  # (B, F) the character each frame belongs to
    loud = node("GatherElements", node("Gather", const(loudness(), np.float32), ids), char, axis=1)
    inside = node(
        "Cast", node("Less", node("Unsqueeze", frame, const([0])), total), to=TensorProto.FLOAT
    )
    per_frame = node("Mul", node("Mul", loud, inside), const(0.5, np.float32))  # (B, F)
    batch = node("Shape", ids, end=1)
    per_sample = node(
        "Reshape",
        node(
            "Mul", node("Unsqueeze", per_frame, const([2])), const(np.ones((1, 1, HOP)), np.float32)
        ),
        node("Concat", batch, const([-1]), axis=0),
    )  # (B, F * HOP)
    samples = node("Shape", per_sample, start=1)
    t = node(
        "Cast",
        node("Range", const(0), node("Squeeze", samples, const([0])), const(1)),
        to=TensorProto.FLOAT,
    )
    pitch = node("Unsqueeze", node("Gather", const(PITCHES, np.float32), speaker), const([1]))
    phase = node(
        "Mul",
        node("Mul", pitch, node("Unsqueeze", t, const([0]))),
        const(2 * np.pi / SAMPLE_RATE, np.float32),
    )
    nodes.append(helper.make_node("Mul", [node("Sin", phase), per_sample], [OUTPUT]))
    graph = helper.make_graph(
        nodes,
        "team_tts",
        [
            helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "chars"]),
            helper.make_tensor_value_info(frames, TensorProto.INT64, ["batch", "chars"]),
            helper.make_tensor_value_info(speaker, TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", "samples"])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    helper.set_model_props(model, metadata())
    onnx.checker.check_model(model, full_check=True)
    out_dir.mkdir(parents=True)
    onnx.save(model, out_dir / "team-tts.onnx")
    return out_dir / "team-tts.onnx"


BUILD_TORCH = """
import json, sys
import torch
from safetensors.torch import save_file
from {package}.model import DemoSynthesizer
meta = json.loads(sys.argv[2])
torch.manual_seed(11)
net = DemoSynthesizer(len(meta["charset"]) + 2, int(meta["num_voices"]), {rate}, {hop})
state = {{name: tensor.detach().clone() for name, tensor in net.state_dict().items()}}
state["voice_pitch"] = torch.tensor({pitches})
state["voice_timbre"] = torch.softmax(torch.randn(state["voice_timbre"].shape), dim=1)
state["char_gain"] = torch.tensor({loudness})
state["char_noise"] = torch.full(state["char_noise"].shape, 0.05)
save_file(state, sys.argv[1], metadata=meta)
"""


def build_torch(project: Path, out_dir: Path) -> Path:
    """Weights for the project's own network, re-sized, from the project's environment."""
    out_dir.mkdir(parents=True)
    path = out_dir / "team-tts.safetensors"
    package = next(p.name for p in (project / "src").iterdir() if (p / "model.py").is_file())
    script = BUILD_TORCH.format(
        package=package,
        rate=SAMPLE_RATE,
        hop=HOP,
        pitches=PITCHES,
        loudness=loudness().tolist(),
    )
    subprocess.run(
        [sys.executable, "-c", script, str(path), json.dumps(metadata())],
        cwd=project,
        env={"PYTHONPATH": str(project / "src"), "PATH": ""},
        check=True,
        capture_output=True,
    )
    return path


def set_contract(project: Path, *, names: bool) -> None:
    """Rewrite the contract lines of the baked model.py, as a team edits them."""
    path = next((project / "src").glob("*/model.py"))
    text = path.read_text(encoding="utf-8")
    edits = [
        (r"(?m)^    sample_rate = .*$", f"    sample_rate = {SAMPLE_RATE}"),
        (
            r"(?ms)^    voices: ClassVar\[dict\[str, int\]\] = \{.*?^    \}$",
            f"    voices: ClassVar[dict[str, int]] = {VOICES!r}",
        ),
    ]
    if names:
        edits += [
            (r"(?m)^    input_names = .*$", f"    input_names = {NAMES!r}"),
            (r"(?m)^    output_name = .*$", f"    output_name = {OUTPUT!r}"),
        ]
    for pattern, line in edits:
        text, count = re.subn(pattern, line, text)
        assert count == 1, f"model.py has no contract line matching {pattern}"
    path.write_text(text, encoding="utf-8")


def read_wav(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as wav:
        layout = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        assert layout == (1, 2, SAMPLE_RATE), layout
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert len(data) == 44 + 2 * len(samples), "the WAV header's length is not the body's"
    return samples


def check_served(project: Path, model_path: Path, base_url: str) -> None:
    import openai

    frames = np.array(char_frames())
    ids = np.array([CHARSET.index(c) + 2 for c in TEXT])
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        model = client.models.list().data[0].id
        for voice, speaker in VOICES.items():
            audio = client.audio.speech.create(
                model=model, voice=voice, input=TEXT, response_format="wav"
            )
            samples = read_wav(audio.content)
            assert len(samples) == frames[ids].sum() * HOP, len(samples)
            if model_path.suffix == ".onnx":  # the team's graph, sample for sample
                expected = np.clip(reference(ids, frames[ids], speaker), -1, 1) * 32767
                assert np.abs(samples - expected).max() <= 2
        with client.audio.speech.with_streaming_response.create(
            model=model, voice="nova", input=TEXT, response_format="wav"
        ) as streamed:
            assert streamed.headers["x-sample-rate"] == str(SAMPLE_RATE)
            body = b"".join(streamed.iter_bytes())
        wav = client.audio.speech.create(
            model=model, voice="nova", input=TEXT, response_format="wav"
        ).content
        assert body == wav
        check_compressed(client, model, len(read_wav(wav)))
        try:
            client.audio.speech.create(model=model, voice="onyx", input=TEXT)
        except openai.BadRequestError as error:
            assert error.body["param"] == "voice", error.body
            assert "alloy, echo, nova" in error.body["message"]
        else:
            raise AssertionError("a voice outside the team's table was not refused")


def check_compressed(client: Any, model: str, num_samples: int) -> None:
    """The default answer (MP3) and Opus, at the team's 16 kHz (both codecs take it)."""
    import soundfile

    default = client.audio.speech.with_raw_response.create(model=model, voice="nova", input=TEXT)
    assert default.headers["content-type"] == "audio/mpeg", default.headers
    opus = client.audio.speech.create(model=model, voice="nova", input=TEXT, response_format="opus")
    for data, padding in ((default.content, 3 * 1152), (opus.content, 0)):
        samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
        assert rate == SAMPLE_RATE, rate
        assert 0 <= len(samples) - num_samples <= padding, (len(samples), num_samples)


SWAPS = [
    Swap(
        combination={"workload": "tts", "backend": "onnxruntime"},
        build_model=build_onnx,
        edit_model=lambda project: set_contract(project, names=True),
        check_served=check_served,
    ),
    Swap(
        combination={"workload": "tts", "backend": "torch"},
        build_model=build_torch,
        edit_model=lambda project: set_contract(project, names=False),
        check_served=check_served,
    ),
]
