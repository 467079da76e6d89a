"""The model: the one file to edit to serve your own image classifier.

The class attributes of ``Model`` are the contract: everything else in the
service (``/v1/classify``, the ``/v2`` metadata and validation, warmup, the
demo-model builder, the benchmark and the tests) reads them from here. The
methods run it:

- ``load()``: open the model once at start-up; it is checked against the
  contract, and a mismatch fails start-up with one line naming the fix;
- ``preprocess(data)``: one uploaded image (bytes) -> one ``input_shape`` row;
  raise ``InvalidInput`` for bad data (it is rejected before batching);
- ``predict(batch)``: a stacked batch ``(N, *input_shape)`` -> ``(N, len(labels))``
  raw outputs (what ``/v2`` returns); it runs in a worker thread;
- ``postprocess(output)``: one output row -> one score per label, what
  ``/v1/classify`` ranks (softmax here; sigmoid for a multi-label model, the
  identity for a model that already outputs probabilities).

``batch``, ``unbatch`` and ``example_batch`` have defaults in ``ImageClassifier``.

To serve your own classifier: export it to ONNX with a dynamic batch axis,
set the contract below (tensor names, ``input_shape``, ``mean`` and ``std``
of its training, ``labels``), point ``MODEL_PATH`` at it and run
``make test MODEL_PATH=...``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .serving.onnxruntime_backend import create_session
from .settings import Settings
from .vision.contract import ImageClassifier, check_onnx_session, check_probe
from .vision.images import decode_image


class Model(ImageClassifier):
    # --- the contract ------------------------------------------------------------
    platform = "onnxruntime_onnx"
    input_name = "input"
    input_shape = (3, 64, 64)  # one image: channels (3 RGB, 1 greyscale), height, width
    input_dtype = np.float32
    # the normalisation of the training data: one value per input channel
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    output_name = "logits"
    labels = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session = None
        self._mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        self._std = np.asarray(self.std, dtype=np.float32).reshape(-1, 1, 1)

    def load(self) -> None:
        self._session, self.device = create_session(self.settings.model_path, self.settings)
        check_onnx_session(self, self._session)
        check_probe(self)

    def preprocess(self, data: bytes) -> np.ndarray:
        """Decode, resize and normalise one image to an ``input_shape`` row."""
        channels, height, width = self.input_shape
        image = decode_image(
            data, max_pixels=self.settings.max_image_pixels, greyscale=channels == 1
        )
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32).reshape(height, width, channels) / 255.0
        return ((pixels.transpose(2, 0, 1) - self._mean) / self._std).astype(self.input_dtype)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self.output_name], {self.input_name: batch})[0]

    def postprocess(self, output: np.ndarray) -> np.ndarray:
        """One row of logits -> softmax probabilities, one per label."""
        shifted = np.exp(output - output.max())
        return shifted / shifted.sum()
