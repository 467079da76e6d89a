"""Start-up refuses a speech model that disagrees with the contract in ``model.py``, in one line.

Each test breaks one thing about a copy of the model under test (or about the
declared contract) and expects start-up to fail with a line that says what to
change, never with the runtime's own error from warmup.
"""

from __future__ import annotations
{% if cookiecutter.backend == 'onnxruntime' %}
import shutil
{%- endif %}
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.errors import StartupFailed
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import make_settings


def startup_error(model_path: Path, model_factory: Any = Model) -> str:
    with (
        pytest.raises(StartupFailed) as failed,
        TestClient(create_app(make_settings(model_path), model_factory=model_factory)),
    ):
        pass
    message = str(failed.value)
    assert "\n" not in message, message
    return message


def test_the_model_under_test_fits_its_contract(model_path: Path) -> None:
    with TestClient(create_app(make_settings(model_path))) as http:
        response = http.post(
            "/v1/audio/speech",
            json={
                "model": Settings(_env_file=None).model_name,
                "input": "Hello there.",
                "voice": next(iter(Model.voices)),
            },
        )
    assert response.status_code == 200, response.text
    assert response.headers["X-Sample-Rate"] == str(Model.sample_rate)


def test_a_sample_rate_the_model_does_not_make(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    declared = Model.sample_rate
    monkeypatch.setattr(Model, "sample_rate", declared // 2)
    assert f"set Model.sample_rate = {declared}" in startup_error(model_path)


def test_a_voice_the_model_does_not_have(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Model, "voices", {**Model.voices, "extra": 10_000})
    message = startup_error(model_path)
    assert "Model.voices maps 'extra' to voice 10000 but the model has" in message
    assert "map the names to 0.." in message


def test_no_voices_at_all(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Model, "voices", {})
    assert "declares no voices" in startup_error(model_path)


def test_audio_longer_than_num_samples_promised_is_refused(model_path: Path) -> None:
    class Overpromises(Model):
        def num_samples(self, utterance: Any) -> int | None:
            promised = super().num_samples(utterance)
            return None if promised is None else promised + 1

    assert "num_samples() promised" in startup_error(model_path, Overpromises)
{%- if cookiecutter.backend == 'onnxruntime' %}


def copy_model(model_path: Path, into: Path) -> Path:
    into.mkdir()
    return Path(shutil.copy(model_path, into / model_path.name))


@pytest.mark.parametrize(
    ("attribute", "value", "fragment"),
    [
        ("output_name", f"{Model.output_name}_renamed", "the graph has no output"),
        (
            "input_names",
            tuple(f"{name}_renamed" for name in Model.input_names),
            "the graph's inputs are",
        ),
    ],
)
def test_tensor_names_the_graph_does_not_have(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, attribute: str, value: Any, fragment: str
) -> None:
    monkeypatch.setattr(Model, attribute, value)
    message = startup_error(model_path)
    assert fragment in message
    assert f"set Model.{attribute}" in message


def test_a_fixed_batch_axis_says_export_with_a_dynamic_one(
    model_path: Path, tmp_path: Path
) -> None:
    import onnx

    copied = copy_model(model_path, tmp_path / "model")
    graph = onnx.load(str(copied))
    for tensor in graph.graph.input:
        tensor.type.tensor_type.shape.dim[0].dim_value = 1  # exported with batch size 1
    onnx.save(graph, str(copied))
    assert "export with a dynamic batch axis" in startup_error(copied)


def test_metadata_without_a_sample_rate(model_path: Path, tmp_path: Path) -> None:
    import onnx

    copied = copy_model(model_path, tmp_path / "model")
    graph = onnx.load(str(copied))
    kept = [entry for entry in graph.metadata_props if entry.key != "sample_rate"]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    onnx.save(graph, str(copied))
    message = startup_error(copied)
    assert "metadata is missing or invalid ('sample_rate')" in message
{%- else %}


def test_metadata_without_a_sample_rate(model_path: Path, tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(model_path), framework="pt") as weights:
        tensors = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118
        meta = {k: v for k, v in (weights.metadata() or {}).items() if k != "sample_rate"}
    copied = tmp_path / model_path.name
    save_file(tensors, str(copied), metadata=meta)
    message = startup_error(copied)
    assert "metadata is missing or invalid ('sample_rate')" in message
{%- endif %}
