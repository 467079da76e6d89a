"""The image-classifier contract that ``model.py`` fills in, its defaults, and its checks.

``model.py``'s ``Model`` subclasses ``ImageClassifier`` (as LitServe's
``LitAPI``): it declares what the model is (tensor names, input shape and
dtype, labels) and implements ``load``, ``preprocess``, ``predict`` and
``postprocess``; ``batch``, ``unbatch`` and ``example_batch`` have defaults
here. The declaration is checked when the class is defined, and ``load``
checks the loaded model against it, so a model that disagrees fails start-up
with one line naming what to change, never with a runtime's error at warmup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..serving.device import Device

# the dtypes `input_dtype` may declare, by onnxruntime's name for them
ONNX_TYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
}
PROBE_ROWS = 2  # a batch of two: a fixed batch axis of 1 fails here, not at warmup


class ContractError(ValueError):
    """The model disagrees with what ``model.py`` declares; the message names the fix."""


class ImageClassifier:
    """Base of ``model.py``'s ``Model``: the declared contract and the batching defaults."""

    platform: ClassVar[str]  # the v2 metadata `platform`
    input_name: ClassVar[str]
    input_shape: ClassVar[tuple[int, int, int]]  # one image: (channels, height, width)
    input_dtype: ClassVar[type[np.generic]] = np.float32
    mean: ClassVar[tuple[float, ...]]  # per-channel normalisation, one value per channel
    std: ClassVar[tuple[float, ...]]
    output_name: ClassVar[str]
    labels: ClassVar[tuple[str, ...]]  # one per output class, in the model's order
    device: Device | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_declaration(cls)

    def batch(self, payloads: Sequence[np.ndarray]) -> np.ndarray:
        """Stack the payloads (each ``(n, *input_shape)``) into one model input."""
        return payloads[0] if len(payloads) == 1 else np.concatenate(payloads, axis=0)

    def unbatch(self, outputs: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
        """Split the model output back: each payload gets exactly its own rows, in order."""
        return np.split(outputs, np.cumsum(sizes)[:-1]) if len(sizes) > 1 else [outputs]

    def example_batch(self, size: int) -> np.ndarray:
        """A deterministic batch of ``size`` inputs, for warmup and the load-time probe."""
        rng = np.random.default_rng(size)
        return rng.standard_normal((size, *self.input_shape)).astype(self.input_dtype)


def check_declaration(cls: type[ImageClassifier]) -> None:
    """The contract attributes exist and make sense (checked when the class is defined)."""
    for name in ("platform", "input_name", "output_name"):
        value = getattr(cls, name, None)
        if not isinstance(value, str) or not value:
            raise ContractError(f"{cls.__name__}.{name} must be a non-empty string")
    shape = getattr(cls, "input_shape", None)
    if (
        not isinstance(shape, tuple)
        or len(shape) != 3
        or not all(isinstance(d, int) and d > 0 for d in shape)
    ):
        raise ContractError(
            f"{cls.__name__}.input_shape must be (channels, height, width) positive ints, "
            f"not {shape!r}"
        )
    for name in ("mean", "std"):
        values = getattr(cls, name, None)
        if not isinstance(values, tuple) or len(values) != shape[0]:
            raise ContractError(
                f"{cls.__name__}.{name} needs one value per input channel ({shape[0]}), "
                f"not {values!r}"
            )
    if not any(np.dtype(cls.input_dtype) == dtype for dtype in ONNX_TYPES.values()):
        raise ContractError(f"{cls.__name__}.input_dtype {cls.input_dtype!r} is not supported")
    labels = getattr(cls, "labels", None)
    if not labels or not all(isinstance(label, str) and label for label in labels):
        raise ContractError(f"{cls.__name__}.labels must list one non-empty name per class")
    if len(set(labels)) != len(labels):
        raise ContractError(f"{cls.__name__}.labels has duplicates")
{%- if cookiecutter.backend == 'onnxruntime' %}


def _dims(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else repr(d) for d in shape) + ")"


def check_onnx_session(model: ImageClassifier, session: Any) -> None:
    """The ONNX graph's input and output agree with the contract (before any inference)."""
    inputs = {node.name: node for node in session.get_inputs()}
    outputs = {node.name: node for node in session.get_outputs()}
    if model.input_name not in inputs:
        raise ContractError(
            f"input_name: model.py declares {model.input_name!r}, the model's inputs are "
            f"{sorted(inputs)}"
        )
    if model.output_name not in outputs:
        raise ContractError(
            f"output_name: model.py declares {model.output_name!r}, the model's outputs are "
            f"{sorted(outputs)}"
        )
    node = inputs[model.input_name]
    found = list(node.shape)
    if len(found) != 1 + len(model.input_shape):
        raise ContractError(
            f"input_shape: model.py declares {model.input_shape} (plus the batch axis), the "
            f"model's input {node.name!r} has shape {_dims(found)}"
        )
    check_batch_axis(found[0], f"input {node.name!r}")
    # a symbolic spatial axis takes any size; a fixed one must be the declared size
    fixed = zip(found[1:], model.input_shape, strict=True)
    if any(isinstance(f, int) and f != d for f, d in fixed):
        raise ContractError(
            f"input_shape: model.py declares {model.input_shape}, the model takes "
            f"{_dims(found[1:])}"
        )
    dtype = ONNX_TYPES.get(node.type)
    if dtype != np.dtype(model.input_dtype):
        raise ContractError(
            f"input_dtype: model.py declares {np.dtype(model.input_dtype).name}, the model's "
            f"input {node.name!r} is {node.type}"
        )
    output = list(outputs[model.output_name].shape)
    if len(output) != 2:
        raise ContractError(
            f"output {model.output_name!r} has shape {_dims(output)}; a classifier outputs "
            "(batch, classes)"
        )
    check_batch_axis(output[0], f"output {model.output_name!r}")
    if isinstance(output[1], int):
        check_label_count(model, output[1])


def check_batch_axis(dim: Any, what: str) -> None:
    if isinstance(dim, int):
        raise ContractError(
            f"the model's {what} has a fixed batch axis of {dim}: export with a dynamic batch "
            "axis (torch.onnx.export(..., dynamic_axes={name: {0: 'batch'}}))"
        )
{%- endif %}


def check_label_count(model: ImageClassifier, classes: int) -> None:
    if classes != len(model.labels):
        raise ContractError(
            f"labels: model.py lists {len(model.labels)}, the model outputs {classes} classes"
        )


def check_probe(model: Any) -> None:
    """Run ``predict`` on a probe batch: it must return ``(rows, len(labels))`` scores.

    This is the check for any network defined in code (a torch module), whose
    shapes only show when it runs: wrong input channels or size, a head with
    another number of classes, an output that is not one row per input.
    """
    probe = model.example_batch(PROBE_ROWS)
    try:
        output = model.predict(probe)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ContractError(
            f"the model failed on a probe batch of input_shape {model.input_shape} "
            f"({type(exc).__name__}: {reason}); make input_shape and the network in model.py "
            "agree"
        ) from None
    shape = getattr(output, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != PROBE_ROWS:
        raise ContractError(
            f"predict returned shape {shape} for a batch of {PROBE_ROWS}; a classifier "
            "returns (batch, classes)"
        )
    check_label_count(model, int(shape[1]))
    scores = np.asarray(model.postprocess(output[0]))
    if scores.shape != (len(model.labels),):
        raise ContractError(
            f"postprocess returned shape {scores.shape} for one output row; it returns one "
            f"score per label ({len(model.labels)})"
        )
