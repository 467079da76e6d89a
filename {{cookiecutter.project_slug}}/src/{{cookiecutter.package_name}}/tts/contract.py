"""Start-up checks of a speech model against the contract that ``model.py`` declares.

Each check fails start-up with one line that says what disagrees and what to
change, before warmup (or the first request) could meet the runtime's own error
or, worse, serve audio at the wrong speed.
"""

from __future__ import annotations

from collections.abc import Mapping{% if cookiecutter.backend == 'onnxruntime' %}, Sequence{% endif %}
from typing import Any

import numpy as np


class ContractError(ValueError):
    """The model on disk disagrees with what model.py declares."""


def check_sample_rate(found: int, declared: int) -> None:
    if found != declared:
        raise ContractError(
            f"the model makes {found} Hz audio but model.py declares sample_rate = {declared}: "
            f"set Model.sample_rate = {found}"
        )


def check_voices(voices: Mapping[str, int], num_voices: int) -> None:
    """Every voice name maps to one of the model's ``num_voices`` voices."""
    if not voices:
        raise ContractError("model.py declares no voices: map at least one name in Model.voices")
    wrong = {name: index for name, index in voices.items() if not 0 <= index < num_voices}
    if wrong:
        name, index = next(iter(wrong.items()))
        raise ContractError(
            f"Model.voices maps {name!r} to voice {index} but the model has {num_voices} "
            f"voices: map the names to 0..{num_voices - 1}"
        )
{%- if cookiecutter.backend == 'onnxruntime' %}


def check_graph(session: Any, input_names: Sequence[str], output_name: str) -> None:
    """An ONNX session's tensors: the declared names, a dynamic batch axis, float32 audio."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if set(inputs) != set(input_names):
        raise ContractError(
            f"the graph's inputs are {sorted(inputs)} but model.py feeds {list(input_names)}: "
            "set Model.input_names (and predict's feeds) to the graph's"
        )
    if output_name not in outputs:
        raise ContractError(
            f"the graph has no output {output_name!r} (it has {sorted(outputs)}): set "
            "Model.output_name to its waveform output"
        )
    for name in input_names:
        batch = inputs[name].shape[0] if inputs[name].shape else None
        if isinstance(batch, int):
            raise ContractError(
                f"input {name!r} has a fixed batch axis ({inputs[name].shape}): export with "
                "a dynamic batch axis"
            )
    output = outputs[output_name]
    if output.type != "tensor(float)":
        raise ContractError(
            f"output {output_name!r} is {output.type}: export the waveform as float32 "
            "(samples in [-1, 1])"
        )
    if len(output.shape) != 2:
        raise ContractError(
            f"output {output_name!r} has shape {output.shape}: export it as (batch, samples), mono"
        )
{%- endif %}


def probe(model: Any) -> None:
    """Synthesise the warmup inputs once: the audio must be float32, finite and as long as
    ``num_samples`` promised (the WAV header is written from it before the audio exists)."""
    utterances = model.example_utterances(2)
    try:
        audio = model.predict(utterances)
    except Exception as exc:  # the runtime's own error, cut to its first line
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ContractError(
            f"the model fails on the warmup input ({reason}): make prepare() build the "
            "inputs the model takes"
        ) from None
    for utterance, waveform in zip(utterances, audio, strict=True):
        promised = model.num_samples(utterance)
        if waveform.dtype != "float32" or waveform.ndim != 1:
            raise ContractError(
                f"predict returned {waveform.dtype} audio of shape {waveform.shape}: return "
                "one float32 mono waveform per utterance"
            )
        if promised is not None and len(waveform) < promised:
            raise ContractError(
                f"the model made {len(waveform)} samples where num_samples() promised "
                f"{promised}: make num_samples() match the model (its hop length)"
            )
        if not np.isfinite(waveform).all():
            raise ContractError("the model's audio holds NaN or infinite samples")
