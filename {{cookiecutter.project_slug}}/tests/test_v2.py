"""Open Inference Protocol v2, driven by Triton's own HTTP client and by raw requests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from {{ cookiecutter.package_name }} import TEMPLATE_VERSION
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.vision.v2 import NUMPY_TO_V2

from .conftest import live_server
from .images import image_bytes

MODEL = "{{ cookiecutter.project_slug }}"
# the contract, as model.py declares it
INPUT, OUTPUT, SHAPE = Model.input_name, Model.output_name, list(Model.input_shape)
DATATYPE = NUMPY_TO_V2[np.dtype(Model.input_dtype)]
VALUES = int(np.prod(SHAPE))  # values in one input row


@pytest.fixture(scope="module")
def triton(
    tmp_path_factory: pytest.TempPathFactory, model_path
) -> Iterator[httpclient.InferenceServerClient]:  # type: ignore[no-untyped-def]
    from .conftest import make_settings

    app = create_app(make_settings(model_path))
    with live_server(app) as address:
        client = httpclient.InferenceServerClient(address)
        yield client
        client.close()


def tensor_for(client: TestClient, data: bytes) -> np.ndarray:
    return client.app.state.service.model.preprocess(data)[np.newaxis]


def test_server_and_model_metadata(triton: httpclient.InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready(MODEL)
    assert not triton.is_model_ready("no-such-model")
    server = triton.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    assert server["template_version"] == TEMPLATE_VERSION
    metadata = triton.get_model_metadata(MODEL)
    assert metadata["inputs"] == [{"name": INPUT, "datatype": DATATYPE, "shape": [-1, *SHAPE]}]
    assert metadata["outputs"] == [
        {"name": OUTPUT, "datatype": "FP32", "shape": [-1, len(Model.labels)]}
    ]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_matches_classify(
    triton: httpclient.InferenceServerClient, client: TestClient, binary: bool
) -> None:
    """The same image: v2 returns the raw output, /v1/classify its postprocessed ranking."""
    model = client.app.state.service.model
    for seed in range(4):
        data = image_bytes(seed)
        batch = tensor_for(client, data)
        tensor = httpclient.InferInput(INPUT, list(batch.shape), DATATYPE)
        tensor.set_data_from_numpy(batch, binary_data=binary)
        output = httpclient.InferRequestedOutput(OUTPUT, binary_data=binary)
        result = triton.infer(MODEL, [tensor], outputs=[output], request_id=f"req-{seed}")
        raw = result.as_numpy(OUTPUT)
        assert raw.shape == (1, len(model.labels))
        assert result.get_response()["id"] == f"req-{seed}"
        ranking = client.post(
            "/v1/classify", files={"file": ("x.png", data)}, params={"k": 100}
        ).json()["predictions"]
        scores = model.postprocess(raw[0])
        assert ranking[0]["label"] == model.labels[int(np.argmax(scores))]
        by_label = dict(zip(model.labels, scores, strict=True))
        for prediction in ranking:
            assert prediction["score"] == pytest.approx(
                float(by_label[prediction["label"]]), rel=1e-4, abs=1e-6
            )


def test_multi_row_batch_keeps_row_order(
    triton: httpclient.InferenceServerClient, client: TestClient, settings: Settings
) -> None:
    count = min(5, settings.max_batch_size)  # batching=none serves one row per call
    rows = np.concatenate([tensor_for(client, image_bytes(seed)) for seed in range(count)])
    tensor = httpclient.InferInput(INPUT, list(rows.shape), DATATYPE)
    tensor.set_data_from_numpy(rows)
    together = triton.infer(MODEL, [tensor]).as_numpy(OUTPUT)
    for index in range(len(rows)):
        single = httpclient.InferInput(INPUT, [1, *SHAPE], DATATYPE)
        single.set_data_from_numpy(rows[index : index + 1])
        alone = triton.infer(MODEL, [single]).as_numpy(OUTPUT)
        np.testing.assert_allclose(together[index], alone[0], rtol=1e-4, atol=1e-5)


def test_unknown_model_is_404(triton: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput(INPUT, [1, *SHAPE], DATATYPE)
    tensor.set_data_from_numpy(np.zeros((1, *SHAPE), Model.input_dtype))
    with pytest.raises(InferenceServerException, match="unknown model"):
        triton.infer("no-such-model", [tensor])


def test_wrong_dtype_through_tritonclient(triton: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput(INPUT, [1, *SHAPE], "INT32")
    tensor.set_data_from_numpy(np.zeros((1, *SHAPE), np.int32))
    with pytest.raises(InferenceServerException, match=f"datatype {DATATYPE}"):
        triton.infer(MODEL, [tensor])


def infer_json(client: TestClient, body: object, **kwargs):  # type: ignore[no-untyped-def]
    return client.post(f"/v2/models/{MODEL}/infer", content=json.dumps(body), **kwargs)


def good_input(shape: list[int] | None = None) -> dict:
    shape = shape or [1, *SHAPE]
    return {
        "name": INPUT,
        "datatype": DATATYPE,
        "shape": shape,
        "data": [0.0] * int(np.prod(shape)),
    }


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"inputs": [good_input([1, SHAPE[0], SHAPE[1] + 1, SHAPE[2]])]}, "must have shape"),
        ({"inputs": [good_input([0, *SHAPE])]}, "must have shape"),
        ({"inputs": [{**good_input(), "datatype": "BYTES"}]}, f"datatype {DATATYPE}"),
        ({"inputs": [{**good_input(), "name": INPUT + "-other"}]}, "unknown input"),
        ({"inputs": [{**good_input(), "data": [1.0, 2.0]}]}, f"needs {VALUES}"),
        ({"inputs": [{**good_input(), "data": ["a"] * VALUES}]}, "must be numbers"),
        ({"inputs": []}, "exactly one tensor"),
        ({"inputs": [good_input()], "outputs": [{"name": OUTPUT + "-other"}]}, "the only output"),
        ([1, 2, 3], "JSON object"),
    ],
    ids=[
        "shape",
        "zero-batch",
        "dtype",
        "name",
        "count",
        "strings",
        "no-inputs",
        "output",
        "not-object",
    ],
)
def test_bad_tensors_are_400(client: TestClient, body: object, needle: str) -> None:
    response = infer_json(client, body)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]


def test_batch_larger_than_max_is_400(client: TestClient, settings: Settings) -> None:
    rows = settings.max_batch_size + 1
    response = infer_json(client, {"inputs": [good_input([rows, *SHAPE])]})
    assert response.status_code == 400
    assert "1 <= N <=" in response.json()["error"]


def test_not_json_is_400(client: TestClient) -> None:
    response = client.post(f"/v2/models/{MODEL}/infer", content=b"\xff\xfe not json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_binary_size_mismatch_is_400(client: TestClient) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": INPUT,
                    "datatype": DATATYPE,
                    "shape": [1, *SHAPE],
                    "parameters": {
                        "binary_data_size": VALUES * np.dtype(Model.input_dtype).itemsize
                    },
                }
            ]
        }
    ).encode()
    response = client.post(
        f"/v2/models/{MODEL}/infer",
        content=header + b"\x00" * 100,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400
    assert "shorter than declared" in response.json()["error"]


def test_bad_header_length_is_400(client: TestClient) -> None:
    response = client.post(
        f"/v2/models/{MODEL}/infer",
        content=b"{}",
        headers={"Inference-Header-Content-Length": "999"},
    )
    assert response.status_code == 400
    assert "outside the body" in response.json()["error"]


def test_deeply_nested_json_is_400(client: TestClient) -> None:
    body = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post(f"/v2/models/{MODEL}/infer", content=body)
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert client.get("/health/ready").status_code == 200
