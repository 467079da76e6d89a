"""The peer of `make bench-peers`: LitServe serving a baked vision service's model.

    PYTHONPATH=<project>/src python scripts/litserve_peer.py --port 8001 --max-batch-size 16

Run from the baked project's directory: it serves the very ONNX file and the very
pre- and post-processing of the service, by calling its ``Model`` (``load``,
``preprocess``, ``predict``, ``postprocess``) with the service's default settings
(so onnxruntime gets the same thread count), in LitServe's own request format: a
JSON body with a base64 field. ``{"image": <base64 JPEG/PNG>}`` answers the top 5
labels like ``/v1/classify`` (ranked by its ``top_k``); ``{"tensor": <base64 float32
input_shape row>}`` answers the raw logits like the v2 route. Both kinds share one
``LitAPI``, so LitServe runs one set of inference workers, as the service runs one model.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
from typing import Any

import litserve as ls
import numpy as np
from ai_service.model import Model
from ai_service.settings import ENV_PREFIX, Settings
from ai_service.vision.classify import top_k

TOP_K = 5


class VisionPeer(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = Model(Settings())
        self.model.load()

    # no annotation on `request`: LitServe builds its route from it (unannotated: a JSON body)
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        if "image" in request:
            return "image", self.model.preprocess(base64.b64decode(request["image"]))
        row = np.frombuffer(base64.b64decode(request["tensor"]), dtype=Model.input_dtype)
        return "tensor", row.reshape(Model.input_shape)

    def batch(self, inputs: list[tuple[str, np.ndarray]]) -> tuple[list[str], np.ndarray]:
        return [kind for kind, _ in inputs], np.stack([row for _, row in inputs])

    def predict(self, x: tuple[Any, np.ndarray]) -> Any:
        kinds, rows = x
        if isinstance(kinds, str):  # max_batch_size 1: one request, no batch() call
            return kinds, self.model.predict(rows[np.newaxis])[0]
        return list(zip(kinds, self.model.predict(rows), strict=True))

    def unbatch(self, output: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
        return output

    def encode_response(self, output: tuple[str, np.ndarray]) -> dict[str, Any]:
        kind, logits = output
        if kind == "tensor":
            return {"logits": logits.tolist()}
        ranked = top_k(self.model.postprocess(logits), Model.labels, TOP_K)
        return {"predictions": [prediction.model_dump() for prediction in ranked]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get(f"{ENV_PREFIX}PORT", 8001)))
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-timeout", type=float, default=0.002, help="seconds")
    parser.add_argument("--workers", type=int, default=1, help="LitServe workers_per_device")
    args = parser.parse_args()
    api = VisionPeer(max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=args.workers)
    # LitServe stops its API servers and inference workers on Ctrl-C only; a SIGTERM would
    # end this process and leave them running (and busy): make SIGTERM a Ctrl-C
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server.run(port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
