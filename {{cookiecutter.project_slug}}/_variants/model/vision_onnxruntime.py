"""The model: the one file to edit to serve your own.

The service reads only what this module defines:

- ``Model(settings)`` and ``Model.load()``: open the model once at start-up;
- ``Model.preprocess(data)``: one uploaded image (bytes) -> one input row;
  raise ``InvalidInput`` for bad data (it is rejected before batching);
- ``Model.predict(batch)``: a stacked batch ``(N, *input_shape)`` -> logits
  ``(N, len(labels))``; it runs in a worker thread, never on the event loop;
- ``Model.example_batch(n)``: inputs used to warm up every batch size;
- ``input_name``, ``input_shape``, ``output_name`` and ``labels``: what the
  Open Inference Protocol (``/v2``) advertises.

To serve your own classifier: export it to ONNX with a dynamic batch axis,
point ``MODEL_PATH`` at it, put its classes in ``labels.txt`` beside it, and
change ``IMAGE_SIZE``, ``MEAN``/``STD`` and the tensor names below to match.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .serving.device import Device
from .serving.errors import InvalidInput
from .serving.onnxruntime_backend import create_session
from .settings import Settings
from .vision.images import decode_image

IMAGE_SIZE = 64
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


def read_labels(path) -> list[str]:
    labels = [
        line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    if not labels:
        raise ValueError(f"labels file {path} is empty")
    return labels


class Model:
    platform = "onnxruntime_onnx"
    input_name = "input"
    output_name = "logits"
    input_shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    input_dtype = np.float32

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.labels: list[str] = []
        self.device: Device | None = None
        self._session = None

    def load(self) -> None:
        self._session, self.device = create_session(self.settings.model_path, self.settings)
        self.labels = read_labels(self.settings.resolved_labels_path)
        inputs = {i.name for i in self._session.get_inputs()}
        if self.input_name not in inputs:
            raise ValueError(
                f"model has no input named {self.input_name!r} (it has {sorted(inputs)})"
            )
        classes = self._session.get_outputs()[0].shape[-1]
        if isinstance(classes, int) and classes != len(self.labels):
            raise ValueError(
                f"model predicts {classes} classes but there are {len(self.labels)} labels"
            )

    def preprocess(self, data: bytes) -> np.ndarray:
        """Decode, resize and normalise one image to a ``(3, 64, 64)`` float32 row."""
        image = decode_image(data, max_pixels=self.settings.max_image_pixels)
        if min(image.size) < 1:
            raise InvalidInput("the image has no pixels", param="file")
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (pixels - MEAN) / STD

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self.output_name], {self.input_name: batch})[0]

    def example_batch(self, size: int) -> np.ndarray:
        rng = np.random.default_rng(size)
        return rng.standard_normal((size, *self.input_shape), dtype=np.float32)
