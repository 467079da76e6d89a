"""Vision: a team's 1x28x28 greyscale classifier with 5 labels and its own tensor names.

What a team does, and what the generated README's "Serve your own model" says:
export (or save) the model, set the contract in ``model.py`` (tensor names,
``input_shape``, ``mean``/``std``, ``labels``; and, when the model's output is
not logits, ``postprocess``; for torch also the network), point ``MODEL_PATH``
at it. Two cases:

- onnxruntime: an ONNX export (built here with the ``onnx`` package, dynamic
  batch axis) whose graph ends in a softmax, so ``postprocess`` becomes the
  identity (the scores are already probabilities);
- torch: the team's own network in ``model.py`` and its safetensors weights,
  a multi-label head, so ``postprocess`` becomes a sigmoid.

The served check drives ``/v2`` with ``tritonclient.http`` (the team's tensor
names, from the model metadata) and ``/v1/classify`` with a real PNG, and
compares both with the team's model run directly, outside the service.
"""

from __future__ import annotations

import io
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import Swap

LABELS = ("zero", "one", "two", "three", "four")
INPUT, OUTPUT, SHAPE = "pixel_values", "scores", (1, 28, 28)
MEAN, STD = 0.5, 0.5
SEED = 28

# the contract of the demo model, as the baked model.py declares it -> the team's
CONTRACT_EDITS = [
    ('input_name = "input"', f'input_name = "{INPUT}"'),
    ("input_shape = (3, 64, 64)", f"input_shape = {SHAPE}"),
    ("mean = (0.485, 0.456, 0.406)", f"mean = ({MEAN},)"),
    ("std = (0.229, 0.224, 0.225)", f"std = ({STD},)"),
    ('output_name = "logits"', f'output_name = "{OUTPUT}"'),
]
DEMO_LABELS = (
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
SOFTMAX_BODY = '''        """One row of logits -> softmax probabilities, one per label."""
        shifted = np.exp(output - output.max())
        return shifted / shifted.sum()'''

# the torch team's own network, as it would write it into model.py
TEAM_NET = '''

class TeamNet(nn.Module):
    """Two convolutions and a linear multi-label head over 28x28 greyscale digits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))
'''


def package_dir(project: Path) -> Path:
    return next(p for p in (project / "src").iterdir() if (p / "main.py").is_file())


def replace_all(text: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        assert text.count(old) == 1, f"model.py no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


def labels_edit() -> tuple[str, str]:
    old = "labels = (\n" + "".join(f'        "{label}",\n' for label in DEMO_LABELS) + "    )"
    return old, f"labels = {LABELS!r}"


def edit_model(
    postprocess: str, extra: list[tuple[str, str]], network: str | None = None
) -> Callable[[Path], None]:
    """Set the team's contract and postprocess; ``network`` replaces ``DemoClassifier``."""

    def edit(project: Path) -> None:
        path = package_dir(project) / "model.py"
        edits = [*CONTRACT_EDITS, labels_edit(), (SOFTMAX_BODY, postprocess), *extra]
        text = replace_all(path.read_text(), edits)
        if network is not None:
            demo = text.index("\n\nclass DemoClassifier(nn.Module):")
            text = text[:demo] + network
        path.write_text(text)

    return edit


# --- onnxruntime: an ONNX export that outputs probabilities ---------------------------------
def build_onnx(project: Path, out_dir: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED)
    weights = {
        "conv.weight": rng.standard_normal((8, 1, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(8).astype(np.float32) * 0.1,
        "fc.weight": rng.standard_normal((len(LABELS), 8)).astype(np.float32),
        "fc.bias": np.zeros(len(LABELS), np.float32),
    }
    nodes = [
        helper.make_node(
            "Conv", [INPUT, "conv.weight", "conv.bias"], ["conv"], kernel_shape=[3, 3], pads=[1] * 4
        ),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "fc.weight", "fc.bias"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], [OUTPUT], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "team_digits",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", *SHAPE])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", len(LABELS)])],
        initializer=[numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "digits.onnx"
    onnx.save(model, path)
    return path


def run_onnx(model_path: Path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw output, scores) of the team's model run directly: already probabilities."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    raw = session.run([OUTPUT], {INPUT: batch})[0]
    return raw, raw


# --- torch: the team's network in model.py, a multi-label head -----------------------------
def team_net() -> Any:
    import torch
    from torch import nn

    namespace: dict[str, Any] = {"torch": torch, "nn": nn}
    exec(TEAM_NET, namespace)  # the very source appended to model.py
    torch.manual_seed(SEED)
    return namespace["TeamNet"]().eval()


def build_torch(project: Path, out_dir: Path) -> Path:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "digits.safetensors"
    save_file(team_net().state_dict(), str(path))
    return path


def run_torch(model_path: Path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw output, scores) of the team's network run directly: sigmoid per label."""
    import torch
    from safetensors.torch import load_file

    net = team_net()
    net.load_state_dict(load_file(str(model_path)))
    with torch.inference_mode():
        raw = net(torch.from_numpy(batch)).numpy()
    return raw, 1 / (1 + np.exp(-raw))


# --- the served check ----------------------------------------------------------------------
def digit_png(seed: int) -> bytes:
    """A real PNG: an RGB photo-sized image the service must turn into 1x28x28 greyscale."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (56, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def team_preprocess(data: bytes) -> np.ndarray:
    """What the team's training pipeline does to an image (greyscale, 28x28, normalised)."""
    image = Image.open(io.BytesIO(data)).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)[np.newaxis] / 255.0
    return (pixels - MEAN) / STD


def classify(base_url: str, data: bytes) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}/v1/classify?k=100",
        data=data,
        headers={"Content-Type": "image/png"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


def check_served(
    run_model: Callable[[Path, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> Callable[[Path, Path, str], None]:
    def check(project: Path, model_path: Path, base_url: str) -> None:
        import tritonclient.http as httpclient

        name = project.name  # the project slug: the default MODEL_NAME
        client = httpclient.InferenceServerClient(base_url.removeprefix("http://"))
        try:
            assert client.is_model_ready(name)
            metadata = client.get_model_metadata(name)
            assert metadata["inputs"] == [
                {"name": INPUT, "datatype": "FP32", "shape": [-1, *SHAPE]}
            ], metadata
            assert metadata["outputs"] == [
                {"name": OUTPUT, "datatype": "FP32", "shape": [-1, len(LABELS)]}
            ], metadata
            batch = np.random.default_rng(SEED).standard_normal((3, *SHAPE)).astype(np.float32)
            tensor = httpclient.InferInput(INPUT, list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch, binary_data=True)
            wanted = httpclient.InferRequestedOutput(OUTPUT, binary_data=True)
            served = client.infer(name, [tensor], outputs=[wanted]).as_numpy(OUTPUT)
        finally:
            client.close()
        raw, _ = run_model(model_path, batch)
        np.testing.assert_allclose(served, raw, rtol=1e-4, atol=1e-5)  # v2: the raw output

        for seed in range(3):
            data = digit_png(seed)
            predictions = classify(base_url, data)["predictions"]
            _, scores = run_model(model_path, team_preprocess(data)[np.newaxis])
            expected = sorted(zip(LABELS, scores[0].tolist(), strict=True), key=lambda p: -p[1])
            assert [p["label"] for p in predictions] == [label for label, _ in expected]
            np.testing.assert_allclose(
                [p["score"] for p in predictions], [s for _, s in expected], rtol=1e-3, atol=1e-4
            )

    return check


SWAPS: list[Swap] = [
    Swap(
        combination={"workload": "vision", "backend": "onnxruntime"},
        build_model=build_onnx,
        edit_model=edit_model(
            '''        """The export ends in a softmax: its output is the scores."""
        return output''',
            [],
        ),
        check_served=check_served(run_onnx),
    ),
    Swap(
        combination={"workload": "vision", "backend": "torch"},
        build_model=build_torch,
        edit_model=edit_model(
            '''        """Multi-label: one independent sigmoid per label."""
        return 1 / (1 + np.exp(-output))''',
            [
                (
                    "return DemoClassifier(channels=cls.input_shape[0], "
                    "num_classes=len(cls.labels))",
                    "return TeamNet()",
                )
            ],
            network=TEAM_NET,
        ),
        check_served=check_served(run_torch),
    ),
]
