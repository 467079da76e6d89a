"""The model: the one file to edit to serve your own image classifier.

The class attributes of ``Model`` are the contract: everything else in the
service (``/v1/classify``, the ``/v2`` metadata and validation, warmup, the
demo-model builder, the benchmark and the tests) reads them from here. The
methods run it:

- ``load()``: build the network and load its safetensors weights once at
  start-up (pickled checkpoints are refused); a probe batch then checks the
  network against the contract, and a mismatch fails start-up with one line;
- ``preprocess(data)``: one uploaded image (bytes) -> one ``input_shape`` row;
  raise ``InvalidInput`` for bad data (it is rejected before batching);
- ``predict(batch)``: a stacked batch ``(N, *input_shape)`` -> ``(N, len(labels))``
  raw outputs (what ``/v2`` returns); it runs in a worker thread;
- ``postprocess(output)``: one output row -> one score per label, what
  ``/v1/classify`` ranks (softmax here; sigmoid for a multi-label model, the
  identity for a model that already outputs probabilities).

``batch``, ``unbatch`` and ``example_batch`` have defaults in ``ImageClassifier``.

To serve your own classifier: replace ``DemoClassifier`` with your network
(``build_network`` returns it), save its ``state_dict()`` with
``safetensors.torch.save_file``, set the contract below (``input_shape``,
``mean`` and ``std`` of its training, ``labels``), point ``MODEL_PATH`` at the
weights and run ``make test MODEL_PATH=...``.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from .serving.torch_backend import compute_dtype, load_weights, select_device, set_compute_threads
from .settings import Settings
from .vision.contract import ImageClassifier, check_probe
from .vision.images import decode_image


class Model(ImageClassifier):
    # --- the contract ------------------------------------------------------------
    platform = "pytorch_safetensors"
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
        self._net: nn.Module | None = None
        self._dtype = torch.float32
        self._mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        self._std = np.asarray(self.std, dtype=np.float32).reshape(-1, 1, 1)

    @classmethod
    def build_network(cls) -> nn.Module:
        """The network whose weights MODEL_PATH holds (the demo builder uses it too)."""
        return DemoClassifier(channels=cls.input_shape[0], num_classes=len(cls.labels))

    def load(self) -> None:
        self.device = select_device(self.settings)
        self._dtype = compute_dtype(self.settings, self.device)
        set_compute_threads(self.settings)
        net = self.build_network()
        self._net = load_weights(net, self.settings.model_path, self.device, self._dtype)
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

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        # from_numpy shares memory; a read-only buffer (v2 binary input) is copied instead
        tensor = torch.from_numpy(batch) if batch.flags.writeable else torch.tensor(batch)
        inputs = tensor.to(device=str(self.device), dtype=self._dtype)
        return self._net(inputs).float().cpu().numpy()

    def postprocess(self, output: np.ndarray) -> np.ndarray:
        """One row of logits -> softmax probabilities, one per label."""
        shifted = np.exp(output - output.max())
        return shifted / shifted.sum()


class DemoClassifier(nn.Module):
    """Four strided 3x3 convolutions, global average pooling, a linear head.

    About 58 M multiply-adds per 64x64 RGB image: roughly 0.5-1 ms per image on
    one CPU core, the cost of a small real vision model.
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 64, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(128, 256, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(256, 512, 3, stride=2, padding=1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        x = torch.relu(self.conv4(x))
        return self.fc(x.mean(dim=(2, 3)))
