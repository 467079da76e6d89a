"""Start-up refuses a model that disagrees with the contract in ``model.py``, in one line.

Each test breaks one thing about a copy of the model under test (or about the
declared contract) and expects start-up to fail with a line that says what to
change, never with the runtime's own error from warmup.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tokenizers import Regex, Tokenizer, normalizers

from {{ cookiecutter.package_name }}.embeddings.contract import PROBE_TEXT
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.errors import StartupFailed

from .conftest import make_settings


def copy_model(model_path: Path, into: Path) -> Path:
    """A copy of the model's folder (weights, tokenizer, configs); the copied MODEL_PATH."""
    folder = model_path if model_path.is_dir() else model_path.parent
    shutil.copytree(folder, into)
    return into if model_path.is_dir() else into / model_path.name


def startup_error(model_path: Path, **overrides: Any) -> str:
    with (
        pytest.raises(StartupFailed) as failed,
        TestClient(create_app(make_settings(model_path, **overrides))),
    ):
        pass
    message = str(failed.value)
    assert "\n" not in message, message
    return message


def folder_of(model_path: Path) -> Path:
    return model_path if model_path.is_dir() else model_path.parent


def edit_config(model_path: Path, **changes: Any) -> dict[str, Any]:
    """Change config.json beside the model; the config as it was (skip when it has none)."""
    path = folder_of(model_path) / "config.json"
    if not path.is_file():
        pytest.skip("the model under test has no config.json")
    config = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**config, **changes}), encoding="utf-8")
    return config


def test_the_model_under_test_fits_its_contract(model_path: Path) -> None:
    with TestClient(create_app(make_settings(model_path))) as http:
        model = http.app.state.service.model
        assert model.dimensions == Model.dimensions
        assert model.max_input_tokens == Model.max_input_tokens


def test_a_missing_tokenizer_names_the_file_and_the_fix(model_path: Path, tmp_path: Path) -> None:
    copied = copy_model(model_path, tmp_path / "model")
    (folder_of(copied) / Model.tokenizer_file).unlink()
    message = startup_error(copied)
    assert f"no tokenizer {Model.tokenizer_file} beside the model" in message
    assert "save the model's tokenizer there" in message


def test_a_tokenizer_that_encodes_text_to_nothing_is_refused(
    model_path: Path, tmp_path: Path
) -> None:
    copied = copy_model(model_path, tmp_path / "model")
    path = folder_of(copied) / Model.tokenizer_file
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.normalizer = normalizers.Replace(Regex(r"[\s\S]"), "")  # erases every character
    tokenizer.save(str(path))
    assert f"encodes {PROBE_TEXT!r} to no tokens" in startup_error(copied)


def test_a_declared_dimension_the_model_does_not_have(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Model, "dimensions", Model.dimensions + 1)
    assert f"set Model.dimensions = {Model.dimensions - 1}" in startup_error(model_path)


def test_a_model_py_without_matryoshka_dimensions_says_what_to_add(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model.py written for an older template (it had `supports_dimensions`)."""
    monkeypatch.delattr(Model, "matryoshka_dimensions")
    message = startup_error(model_path)
    assert "Model has no matryoshka_dimensions: add the class attribute" in message


@pytest.mark.parametrize("offset", [1, -Model.dimensions])
def test_matryoshka_sizes_outside_the_vector(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    size = Model.dimensions + offset  # longer than the vector, or 0
    monkeypatch.setattr(Model, "matryoshka_dimensions", (size,))
    message = startup_error(model_path)
    assert f"but {size} is not a size from 1 to dimensions = {Model.dimensions}" in message


def test_max_input_tokens_beyond_the_position_embeddings(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = copy_model(model_path, tmp_path / "model")
    positions = edit_config(copied)["max_position_embeddings"]
    monkeypatch.setattr(Model, "max_input_tokens", positions + 1)
    message = startup_error(copied)
    assert f"the model has {positions} position embeddings" in message
    assert f"set Model.max_input_tokens to at most {positions}" in message
{%- if cookiecutter.backend == 'onnxruntime' %}


def test_without_config_json_the_model_itself_is_probed(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No config.json to compare with: a run at the declared size and limit catches both."""
    copied = copy_model(model_path, tmp_path / "model")
    positions = edit_config(copied)["max_position_embeddings"]
    (folder_of(copied) / "config.json").unlink()
    with monkeypatch.context() as patched:
        patched.setattr(Model, "dimensions", Model.dimensions + 1)
        assert f"set Model.dimensions = {Model.dimensions - 1}" in startup_error(copied)
    monkeypatch.setattr(Model, "max_input_tokens", positions + 1)
    message = startup_error(copied)
    assert f"the model fails on a {positions + 1}-token input" in message
    assert "set Model.max_input_tokens" in message


@pytest.mark.parametrize(
    ("attribute", "value", "fragment"),
    [
        (
            "output_name",
            f"{Model.output_name}_renamed",
            f"the graph has no output '{Model.output_name}_renamed'",
        ),
        (
            "input_names",
            tuple(f"{name}_renamed" for name in Model.input_names),
            f"the graph has no input '{Model.input_names[0]}_renamed'",
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
    assert "export with dynamic batch and sequence axes" in startup_error(copied)


def test_a_tokenizer_larger_than_the_embedding_table(model_path: Path, tmp_path: Path) -> None:
    copied = copy_model(model_path, tmp_path / "model")
    vocab_size = edit_config(copied)["vocab_size"]
    edit_config(copied, vocab_size=vocab_size - 1)
    assert f"the model embeds only {vocab_size - 1}" in startup_error(copied)
{%- else %}


def test_weights_that_do_not_fit_the_network(model_path: Path, tmp_path: Path) -> None:
    copied = copy_model(model_path, tmp_path / "model")
    layers = edit_config(copied)["num_hidden_layers"]
    edit_config(copied, num_hidden_layers=layers + 1)
    message = startup_error(copied)
    assert "do not fit BertEncoder in model.py" in message and "config.json" in message
    assert f"encoder.layer.{layers}." in message


def test_no_config_json_says_to_save_it(model_path: Path, tmp_path: Path) -> None:
    copied = copy_model(model_path, tmp_path / "model")
    (folder_of(copied) / "config.json").unlink()
    assert "no config.json beside" in startup_error(copied)
{%- endif %}
