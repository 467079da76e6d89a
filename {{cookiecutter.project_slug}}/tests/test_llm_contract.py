"""A model that disagrees with ``model.py``'s contract fails start-up with one line naming the fix.

Each test takes the model under test (the demo, or ``--model-path``) and puts
one side of the contract out of step: a value ``model.py`` declares, or the
model itself. Start-up must then fail before warmup, with one line.
"""

from __future__ import annotations
{% if cookiecutter.backend == 'onnxruntime' %}
import os
import shutil
{%- endif %}
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import model as model_module
from {{ cookiecutter.package_name }}.llm.contract import WARMUP_TEXT
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.errors import StartupFailed

from .conftest import make_settings


def startup_error(model_path: Path, factory: Any = Model) -> str:
    app = create_app(make_settings(model_path), model_factory=factory)
    with pytest.raises(StartupFailed) as failed, TestClient(app):
        pass
    message = str(failed.value)
    assert "\n" not in message, message
    return message


class Tampered:
    """The loaded tokenizer with one member changed."""

    def __init__(self, tokenizer: Any, **changes: Any) -> None:
        self._tokenizer = tokenizer
        self.vocab_size = changes.get("vocab_size", tokenizer.vocab_size)
        self.eos_token_ids = changes.get("eos_token_ids", tokenizer.eos_token_ids)
        self._encodes = changes.get("encodes", True)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text) if self._encodes else []

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(ids)

    def apply_chat_template(self, messages: Any) -> list[int]:
        return self._tokenizer.apply_chat_template(messages)


def with_tokenizer(**changes: Any) -> type[Model]:
    class TamperedModel(Model):
        def load(self) -> None:
            super().load()
            self.tokenizer = Tampered(self.tokenizer, **changes)

    return TamperedModel


def test_a_tokenizer_that_encodes_the_warmup_text_to_nothing(model_path: Path) -> None:
    message = startup_error(model_path, with_tokenizer(encodes=False))
    assert f"encodes {WARMUP_TEXT!r} to no tokens" in message


def test_a_tokenizer_larger_than_the_logits(model_path: Path) -> None:
    vocab = model_module.VOCAB_SIZE
    message = startup_error(model_path, with_tokenizer(vocab_size=vocab + 1))
    assert f"{vocab + 1} tokens but the model {vocab} logits" in message


def test_a_tokenizer_without_an_end_of_sequence_token(model_path: Path) -> None:
    message = startup_error(model_path, with_tokenizer(eos_token_ids=frozenset()))
    assert "names no end-of-sequence token" in message


def test_a_declared_vocabulary_the_model_does_not_have(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = model_module.VOCAB_SIZE
    monkeypatch.setattr(model_module, "VOCAB_SIZE", found + 7)
    assert f"set VOCAB_SIZE = {found}" in startup_error(model_path)


def test_a_declared_context_longer_than_the_model_holds(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
{%- if cookiecutter.backend == 'onnxruntime' %}
    import onnx

    metadata = onnx.load(model_path, load_external_data=False).metadata_props
    if not any(prop.key == model_module.CONTEXT_METADATA for prop in metadata):
        pytest.skip(f"{model_path.name} records no {model_module.CONTEXT_METADATA} to check")
{%- endif %}
    monkeypatch.setattr(model_module, "CONTEXT_LENGTH", 10**7)
    message = startup_error(model_path)
    assert "declares CONTEXT_LENGTH = 10000000" in message and "set CONTEXT_LENGTH = " in message
{%- if cookiecutter.backend == 'onnxruntime' %}


@pytest.mark.parametrize("name", ["LAYERS", "KV_HEADS", "HEAD_DIM"])
def test_a_declared_kv_cache_layout_the_graphs_do_not_have(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    found = getattr(model_module, name)
    monkeypatch.setattr(model_module, name, found + 1)
    assert f"set {name} = {found}" in startup_error(model_path)


@pytest.mark.parametrize(("name", "kind"), [("LOGITS", "output"), ("PRESENT", "output")])
def test_tensor_names_the_graphs_do_not_have(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, kind: str
) -> None:
    monkeypatch.setattr(model_module, name, "renamed_" + getattr(model_module, name))
    message = startup_error(model_path)
    assert f"has no {kind} 'renamed_" in message and "tensor names" in message


def copy_beside(model_path: Path, folder: Path) -> Path:
    """The model's folder, hard-linked where it can be (onnxruntime refuses symlinked weights)."""
    for item in model_path.parent.iterdir():
        if item.is_file():
            try:
                os.link(item, folder / item.name)
            except OSError:  # another file system
                shutil.copyfile(item, folder / item.name)
    return folder / model_path.name


def test_a_fixed_batch_axis_names_the_export_fix(model_path: Path, tmp_path: Path) -> None:
    import onnx

    target = copy_beside(model_path, tmp_path)
    graph = onnx.load(model_path, load_external_data=False)
    tokens = next(i for i in graph.graph.input if i.name == model_module.INPUTS[0])
    tokens.type.tensor_type.shape.dim[0].dim_value = 1
    target.unlink()
    onnx.save(graph, target)
    message = startup_error(target)
    assert f"{model_module.INPUTS[0]!r} has a fixed batch axis of 1" in message
    assert "export with a dynamic batch axis" in message


def test_a_missing_prefill_graph_is_named(model_path: Path, tmp_path: Path) -> None:
    target = copy_beside(model_path, tmp_path)
    (tmp_path / model_module.PREFILL_FILE).unlink()
    assert "export the prefill graph" in startup_error(target)
{%- else %}


def test_weights_that_do_not_fit_the_network_are_named(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = Model.network().state_dict()
    dropped = next(iter(state))
    path = tmp_path / "partial.safetensors"
    save_file({name: t for name, t in state.items() if name != dropped}, str(path))
    message = startup_error(path)
    assert f"do not fit {type(Model.network()).__name__} in model.py" in message
    assert f"missing {dropped}" in message and "\n" not in message
{%- endif %}
