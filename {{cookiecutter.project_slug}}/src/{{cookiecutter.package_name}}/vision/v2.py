"""Open Inference Protocol (KServe v2), JSON and binary tensor extension.

``tritonclient.http.InferenceServerClient`` works against these routes
unchanged. As the protocol requires, errors here answer ``{"error": "<text>"}``
(a string, which tritonclient prints), not the dict the other routes use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from .. import TEMPLATE_VERSION, __version__
from ..serving.batch_service import BatchingServiceDep
from ..serving.deps import disconnect_waiter, get_settings
from ..serving.errors import InvalidInput, ModelNotFound, ServiceError
from ..serving.health import readiness_response

HEADER_LENGTH = "inference-header-content-length"
DATATYPES: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "FP16": np.dtype("<f2"),
    "INT64": np.dtype("<i8"),
    "INT32": np.dtype("<i4"),
    "UINT8": np.dtype("u1"),
}
NUMPY_TO_V2 = {dtype: name for name, dtype in DATATYPES.items()}


class V2Route(APIRoute):
    """Render errors as the protocol's ``{"error": "<message>"}``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                return JSONResponse(
                    {"error": exc.message}, status_code=exc.status_code, headers=exc.headers
                )
            except RequestValidationError as exc:
                return JSONResponse(
                    {"error": str(exc.errors()[0].get("msg", "invalid request"))}, status_code=400
                )

        return handle


class V2Error(BaseModel):
    error: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": V2Error, "description": "Error (v2 protocol shape)"} for code in codes}


MODEL_ERRORS = _errors(401, 404, 503)
# The request body is parsed by hand (JSON header + optional binary tensors), so
# its schema is declared here for OpenAPI clients and fuzzers.
INFER_REQUEST_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "shape": {"type": "array", "items": {"type": "integer"}},
                                    "datatype": {"type": "string"},
                                    "parameters": {"type": "object"},
                                    "data": {"type": "array"},
                                },
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                    },
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

router = APIRouter(prefix="/v2", tags=["open-inference-protocol-v2"], route_class=V2Route)
health_router = APIRouter(prefix="/v2", tags=["open-inference-protocol-v2"], route_class=V2Route)


def _check_model(request: Request, name: str) -> None:
    if name != get_settings(request).model_name:
        raise ModelNotFound(f"unknown model {name!r}")


def _tensor_meta(name: str, dtype: np.dtype[Any], shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": NUMPY_TO_V2[np.dtype(dtype)], "shape": shape}


@health_router.get("/health/live", summary="v2 liveness")
async def v2_live() -> dict[str, bool]:
    return {"live": True}


@health_router.get("/health/ready", summary="v2 readiness", responses=_errors(503))
async def v2_ready(request: Request) -> Response:
    response = readiness_response(request)
    return JSONResponse({"ready": response.status_code == 200}, status_code=response.status_code)


@router.get("", summary="Server metadata", responses=_errors(401))
async def server_metadata(request: Request) -> dict[str, Any]:
    return {
        "name": request.app.title,
        "version": __version__,
        "extensions": ["binary_tensor_data"],
        # not in the protocol (clients ignore unknown fields): which template release runs
        "template_version": TEMPLATE_VERSION,
    }


@router.get("/models/{name}", summary="Model metadata", responses=MODEL_ERRORS)
async def model_metadata(
    name: str, request: Request, service: BatchingServiceDep
) -> dict[str, Any]:
    _check_model(request, name)
    model = service.model
    return {
        "name": name,
        "versions": ["1"],
        "platform": model.platform,
        "inputs": [_tensor_meta(model.input_name, model.input_dtype, [-1, *model.input_shape])],
        "outputs": [_tensor_meta(model.output_name, np.float32, [-1, len(model.labels)])],
    }


@router.get("/models/{name}/ready", summary="Model readiness", responses=MODEL_ERRORS)
async def model_ready(name: str, request: Request) -> Response:
    _check_model(request, name)
    response = readiness_response(request)
    return JSONResponse(
        {"name": name, "ready": response.status_code == 200}, status_code=response.status_code
    )


def _parse_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    if header_length is not None:
        try:
            json_size = int(header_length)
        except ValueError:
            raise InvalidInput("Inference-Header-Content-Length must be an integer") from None
        if not 0 < json_size <= len(body):
            raise InvalidInput("Inference-Header-Content-Length is outside the body")
    else:
        json_size = len(body)
    try:
        header = json.loads(body[:json_size])
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput("the inference request header is not valid JSON") from None
    if not isinstance(header, dict):
        raise InvalidInput("the inference request must be a JSON object")
    return header, memoryview(body)[json_size:]


def _input_array(
    tensor: Any, binary: memoryview, offset: int, model: Any, max_rows: int
) -> tuple[np.ndarray, int]:
    """Validate one input tensor and return it as an array plus the new binary offset."""
    if not isinstance(tensor, dict):
        raise InvalidInput("each input must be a JSON object", param="inputs")
    name = tensor.get("name")
    if name != model.input_name:
        raise InvalidInput(
            f"unknown input {name!r}; the model takes {model.input_name!r}", param="inputs"
        )
    datatype = tensor.get("datatype")
    expected_type = NUMPY_TO_V2[np.dtype(model.input_dtype)]
    if datatype != expected_type:
        raise InvalidInput(
            f"input {name!r} must have datatype {expected_type}, not {datatype!r}", param=name
        )
    shape = tensor.get("shape")
    expected = list(model.input_shape)
    if (
        not isinstance(shape, list)
        or len(shape) != len(expected) + 1
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[1:] != expected
        or not 1 <= shape[0] <= max_rows
    ):
        raise InvalidInput(
            f"input {name!r} must have shape [N, {', '.join(map(str, expected))}] with "
            f"1 <= N <= {max_rows}, not {shape!r}",
            param=name,
        )
    dtype = DATATYPES[datatype]
    count = math.prod(shape)
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f"parameters of input {name!r} must be an object", param=name)
    size = parameters.get("binary_data_size")
    if size is not None:
        if size != count * dtype.itemsize:
            raise InvalidInput(
                f"input {name!r} declares {size!r} binary bytes but shape {shape} needs "
                f"{count * dtype.itemsize}",
                param=name,
            )
        if offset + size > len(binary):
            raise InvalidInput(
                f"binary data of input {name!r} is shorter than declared", param=name
            )
        array = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape)
        return array, offset + size
    data = tensor.get("data")
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r} needs `data` or binary_data_size", param=name)
    try:
        array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(
            f"data of input {name!r} must be numbers of type {datatype}", param=name
        ) from None
    if array.size != count:
        raise InvalidInput(
            f"input {name!r} has {array.size} values; shape {shape} needs {count}", param=name
        )
    return array.reshape(shape), offset


def _wants_binary(header: dict[str, Any], output_name: str) -> bool:
    outputs = header.get("outputs")
    if isinstance(outputs, list):
        for output in outputs:
            if isinstance(output, dict) and output.get("name") == output_name:
                params = output.get("parameters") or {}
                if isinstance(params, dict) and "binary_data" in params:
                    return bool(params["binary_data"])
    params = header.get("parameters") or {}
    return isinstance(params, dict) and bool(params.get("binary_data_output", False))


# A JSON part larger than this is parsed off the event loop (a big `data` list
# costs milliseconds to decode); binary requests carry a tiny JSON header.
INLINE_JSON_LIMIT = 64 * 1024


def decode_request(
    body: bytes, header_length: str | None, model: Any, max_rows: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Validate an inference request; return its JSON header and its input tensor.

    Binary tensors are wrapped, not copied (``np.frombuffer`` on the body).
    """
    header, binary = _parse_request(body, header_length)
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise InvalidInput(
            f"`inputs` must be a list with exactly one tensor ({model.input_name!r})",
            param="inputs",
        )
    outputs = header.get("outputs")
    if outputs is not None and (
        not isinstance(outputs, list)
        or any(not isinstance(o, dict) or o.get("name") != model.output_name for o in outputs)
    ):
        raise InvalidInput(f"the only output is {model.output_name!r}", param="outputs")
    array, _ = _input_array(inputs[0], binary, 0, model, max_rows)
    return header, array


def encode_response(
    name: str, header: dict[str, Any], output_name: str, result: np.ndarray
) -> Response:
    result = np.ascontiguousarray(result, dtype=np.float32)
    output: dict[str, Any] = {"name": output_name, "datatype": "FP32", "shape": list(result.shape)}
    response: dict[str, Any] = {"model_name": name, "model_version": "1", "outputs": [output]}
    if "id" in header:
        response["id"] = header["id"]
    if _wants_binary(header, output_name):
        raw = result.tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
        head = json.dumps(response, separators=(",", ":")).encode()
        return Response(
            head + raw,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(len(head))},
        )
    output["data"] = result.ravel().tolist()
    return Response(json.dumps(response, separators=(",", ":")), media_type="application/json")


@router.post(
    "/models/{name}/infer",
    summary="Run inference (JSON or binary tensors)",
    responses=_errors(400, 401, 404, 413, 500, 503, 504),
    openapi_extra=INFER_REQUEST_SCHEMA,
)
async def infer(name: str, request: Request, service: BatchingServiceDep) -> Response:
    _check_model(request, name)
    model = service.model
    service.check_room()  # a full queue answers 503 before the body is read
    body = await request.body()  # an upload holds no queue slot while it arrives
    with service.admit() as admission:
        header_length = request.headers.get(HEADER_LENGTH)
        json_size = len(body) if header_length is None else _int_or_zero(header_length)
        args = (body, header_length, model, service.batcher.max_batch_size)
        if json_size > INLINE_JSON_LIMIT:
            header, array = await service.preprocess(decode_request, *args)
        else:
            header, array = decode_request(*args)
        result = await service.infer(
            array, len(array), admission=admission, disconnected=disconnect_waiter(request)
        )
    return encode_response(name, header, model.output_name, result)


def _int_or_zero(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0  # decode_request reports it
