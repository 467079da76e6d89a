"""The model: the one file to edit to serve your own.

The service reads only what this module defines:

- ``Model(settings)`` and ``Model.load()``: build the network and load its
  safetensors weights once at start-up (pickled checkpoints are refused);
- ``Model.preprocess(data)``: one uploaded image (bytes) -> one input row;
  raise ``InvalidInput`` for bad data (it is rejected before batching);
- ``Model.predict(batch)``: a stacked batch ``(N, *input_shape)`` -> logits
  ``(N, len(labels))``; it runs in a worker thread, never on the event loop;
- ``Model.example_batch(n)``: inputs used to warm up every batch size;
- ``input_name``, ``input_shape``, ``output_name`` and ``labels``: what the
  Open Inference Protocol (``/v2``) advertises.

To serve your own classifier: replace ``DemoClassifier`` with your network,
save its ``state_dict()`` with ``safetensors.torch.save_file``, point
``MODEL_PATH`` at it, put its classes in ``labels.txt`` beside it, and change
``IMAGE_SIZE`` and ``MEAN``/``STD`` to match its training.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from .serving.device import Device
from .serving.errors import InvalidInput
from .serving.torch_backend import compute_dtype, load_weights, select_device
from .settings import Settings
from .vision.images import decode_image

IMAGE_SIZE = 64
NUM_CLASSES = 10
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


class DemoClassifier(nn.Module):
    """Four strided 3x3 convolutions, global average pooling, a linear head.

    About 58 M multiply-adds per 64x64 image: roughly 0.5-1 ms per image on one
    CPU core, the cost of a small real vision model.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1)
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


def read_labels(path) -> list[str]:
    labels = [
        line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    if not labels:
        raise ValueError(f"labels file {path} is empty")
    return labels


class Model:
    platform = "pytorch_safetensors"
    input_name = "input"
    output_name = "logits"
    input_shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    input_dtype = np.float32

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.labels: list[str] = []
        self.device: Device | None = None
        self._net: nn.Module | None = None
        self._dtype = torch.float32

    def load(self) -> None:
        self.device = select_device(self.settings)
        self._dtype = compute_dtype(self.settings, self.device)
        if self.settings.intra_op_threads:
            torch.set_num_threads(self.settings.intra_op_threads)
        net = DemoClassifier()
        self._net = load_weights(net, self.settings.model_path, self.device, self._dtype)
        self.labels = read_labels(self.settings.resolved_labels_path)
        classes = net.fc.out_features
        if len(self.labels) != classes:
            raise ValueError(f"model has {classes} classes but {len(self.labels)} labels")

    def preprocess(self, data: bytes) -> np.ndarray:
        """Decode, resize and normalise one image to a ``(3, 64, 64)`` float32 row."""
        image = decode_image(data, max_pixels=self.settings.max_image_pixels)
        if min(image.size) < 1:
            raise InvalidInput("the image has no pixels", param="file")
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (pixels - MEAN) / STD

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        # from_numpy shares memory; a read-only buffer (v2 binary input) is copied instead
        tensor = torch.from_numpy(batch) if batch.flags.writeable else torch.tensor(batch)
        inputs = tensor.to(device=str(self.device), dtype=self._dtype)
        return self._net(inputs).float().cpu().numpy()

    def example_batch(self, size: int) -> np.ndarray:
        rng = np.random.default_rng(size)
        return rng.standard_normal((size, *self.input_shape), dtype=np.float32)
