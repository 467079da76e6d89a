"""The model contract: checked at load, one line naming the fix; and the demo model's answers.

The contract tests build their broken variants from the contract in
``model.py`` (never from restated names or shapes), so they hold for any
conforming model; the ``reference`` tests pin the demo model's own answers.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
{%- if cookiecutter.backend == 'onnxruntime' %}
import onnx
{%- endif %}
import pytest
{%- if cookiecutter.backend == 'torch' %}
import torch
{%- endif %}
from fastapi.testclient import TestClient
{%- if cookiecutter.backend == 'onnxruntime' %}
from onnx import TensorProto, helper, numpy_helper
{%- else %}
from safetensors.torch import save_file
{%- endif %}

from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.errors import StartupFailed
from {{ cookiecutter.package_name }}.vision.contract import ContractError, ImageClassifier

from .conftest import make_settings
from .images import image_bytes
{%- if cookiecutter.backend == 'onnxruntime' %}


def tiny_classifier(
    path: Path,
    *,
    batch: int | str = "batch",
    shape: tuple[int, ...] = Model.input_shape,
    input_name: str = Model.input_name,
    output_name: str = Model.output_name,
    element: int = TensorProto.FLOAT,
    classes: int = len(Model.labels),
) -> Path:
    """A small classifier as the contract describes it, with one thing changed (an export)."""
    channels = shape[0]
    weights = np.full((classes, channels), 0.1, dtype=np.float32)
    nodes = [
        helper.make_node("Cast", [input_name], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("GlobalAveragePool", ["as_float"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "weight"], [output_name], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, element, [batch, *shape])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(weights, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def other_size(shape: tuple[int, ...]) -> tuple[int, ...]:
    channels, height, width = shape
    return (channels, height + 1, width)


MISMATCHES: dict[str, tuple[dict[str, Any], str]] = {
    "fixed-batch": ({"batch": 1}, "export with a dynamic batch axis"),
    "input-size": ({"shape": other_size(Model.input_shape)}, "input_shape"),
    "input-name": ({"input_name": Model.input_name + "_x"}, "input_name"),
    "output-name": ({"output_name": Model.output_name + "_x"}, "output_name"),
    "dtype": ({"element": TensorProto.DOUBLE}, "input_dtype"),
    "label-count": ({"classes": len(Model.labels) + 1}, "labels"),
}


@pytest.mark.parametrize("change", list(MISMATCHES), ids=list(MISMATCHES))
def test_a_model_that_disagrees_with_the_contract_fails_load(tmp_path: Path, change: str) -> None:
    overrides, needle = MISMATCHES[change]
    model = Model(make_settings(tiny_classifier(tmp_path / "model.onnx", **overrides)))
    with pytest.raises(ContractError, match=re.escape(needle)) as raised:
        model.load()
    assert "\n" not in str(raised.value)


def test_the_contract_loads_a_conforming_export(tmp_path: Path) -> None:
    """The same builder, nothing changed, loads: the failures above are the changes."""
    Model(make_settings(tiny_classifier(tmp_path / "model.onnx"))).load()


def fixed_batch_model(tmp_path: Path) -> Path:
    return tiny_classifier(tmp_path / "model.onnx", batch=1)
{%- else %}


def other_channels(channels: int) -> int:
    return 1 if channels != 1 else 3


class MoreLabels(Model):
    """Declares one label more than the network it builds has classes."""

    labels = (*Model.labels, "one-more")

    @classmethod
    def build_network(cls) -> torch.nn.Module:
        return Model.build_network()


class OtherChannels(Model):
    """Declares another channel count than the network it builds takes."""

    input_shape = (other_channels(Model.input_shape[0]), *Model.input_shape[1:])
    mean = (0.5,) * input_shape[0]
    std = (0.5,) * input_shape[0]

    @classmethod
    def build_network(cls) -> torch.nn.Module:
        return Model.build_network()


@pytest.mark.parametrize(
    ("variant", "needle"),
    [(MoreLabels, "labels: model.py lists"), (OtherChannels, "input_shape")],
    ids=["label-count", "input-channels"],
)
def test_a_network_that_disagrees_with_the_contract_fails_load(
    tmp_path: Path, variant: type[Model], needle: str
) -> None:
    weights = tmp_path / "model.safetensors"
    save_file(variant.build_network().state_dict(), str(weights))
    with pytest.raises(ContractError, match=re.escape(needle)) as raised:
        variant(make_settings(weights)).load()
    assert "\n" not in str(raised.value)


def test_weights_of_another_network_fail_load_in_one_line(tmp_path: Path) -> None:
    """Weights whose last tensor has one row more (another head) do not fit the network."""
    state = Model.build_network().state_dict()
    name, tensor = list(state.items())[-1]
    state[name] = torch.zeros((tensor.shape[0] + 1, *tensor.shape[1:]), dtype=tensor.dtype)
    weights = tmp_path / "model.safetensors"
    save_file(state, str(weights))
    network = type(Model.build_network()).__name__
    with pytest.raises(ValueError, match=f"do not fit {network} in model.py") as raised:
        Model(make_settings(weights)).load()
    assert name in str(raised.value) and "\n" not in str(raised.value)


def fixed_batch_model(tmp_path: Path) -> Path:
    """Weights that fit, behind a network that only ever returns one row."""
    weights = tmp_path / "model.safetensors"
    save_file(Model.build_network().state_dict(), str(weights))
    return weights
{%- endif %}


def test_startup_fails_with_the_one_line(tmp_path: Path) -> None:
    """The whole app: the contract's line is the one error logged, before any warmup."""
{%- if cookiecutter.backend == 'onnxruntime' %}
    factory = Model
    needle = "export with a dynamic batch axis"
{%- else %}

    class OneRow(Model):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            return super().predict(batch[:1])

    factory = OneRow
    needle = "a classifier returns (batch, classes)"
{%- endif %}
    app = create_app(make_settings(fixed_batch_model(tmp_path)), model_factory=factory)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("{{ cookiecutter.package_name }}")
    logger.addHandler(handler)
    try:
        with pytest.raises(StartupFailed), TestClient(app):
            pass
    finally:
        logger.removeHandler(handler)
    errors = [r.getMessage() for r in records]
    assert len(errors) == 1 and needle in errors[0] and "\n" not in errors[0], errors


@pytest.mark.parametrize(
    ("attributes", "needle"),
    [
        ({"input_shape": (64, 64)}, "input_shape"),
        ({"labels": ()}, "labels"),
        ({"labels": ("cat", "cat")}, "duplicates"),
        ({"mean": (0.5,) * (Model.input_shape[0] + 1)}, "one value per input channel"),
        ({"input_name": ""}, "input_name"),
    ],
    ids=["shape", "no-labels", "duplicate-labels", "mean", "name"],
)
def test_a_contract_that_makes_no_sense_fails_when_defined(
    attributes: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ContractError, match=re.escape(needle)):
        type("Broken", (Model,), attributes)


def test_model_is_an_image_classifier() -> None:
    assert issubclass(Model, ImageClassifier)


def test_default_batch_and_unbatch_give_each_payload_its_rows(model_path: Path) -> None:
    model = Model(make_settings(model_path))
    payloads = [model.example_batch(n) for n in (1, 3, 2)]
    batch = model.batch(payloads)
    assert batch.shape == (6, *Model.input_shape)
    parts = model.unbatch(np.arange(6 * 2).reshape(6, 2), [1, 3, 2])
    assert [part[:, 0].tolist() for part in parts] == [[0], [2, 4, 6], [8, 10]]


def test_preprocess_gives_one_contract_row(model_path: Path) -> None:
    model = Model(make_settings(model_path))
    for data in (image_bytes(0), image_bytes(1, size=(7, 300), fmt="JPEG")):
        row = model.preprocess(data)
        assert row.shape == Model.input_shape and row.dtype == np.dtype(Model.input_dtype)


# --- the demo model's own answers ----------------------------------------------------------
# top-3 (label, score) of image_bytes(0..3): the same for the ONNX and the torch demo, whose
# weights come from one seed
DEMO_TOP3 = [
    [("horse", 0.2886), ("bird", 0.1400), ("dog", 0.1311)],
    [("horse", 0.2304), ("bird", 0.1554), ("cat", 0.1189)],
    [("horse", 0.2294), ("cat", 0.1418), ("bird", 0.1409)],
    [("horse", 0.2351), ("bird", 0.1521), ("dog", 0.1434)],
]


@pytest.mark.reference
def test_demo_model_answers(client: TestClient) -> None:
    for seed, expected in enumerate(DEMO_TOP3):
        predictions = client.post(
            "/v1/classify", files={"file": ("x.png", image_bytes(seed))}, params={"k": 3}
        ).json()["predictions"]
        assert [p["label"] for p in predictions] == [label for label, _ in expected]
        assert [p["score"] for p in predictions] == pytest.approx(
            [score for _, score in expected], abs=2e-4
        )


@pytest.mark.reference
def test_demo_scores_are_softmax_probabilities(client: TestClient) -> None:
    predictions = client.post(
        "/v1/classify", files={"file": ("x.png", image_bytes(2))}, params={"k": 100}
    ).json()["predictions"]
    assert all(0 <= p["score"] <= 1 for p in predictions)
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-5)
