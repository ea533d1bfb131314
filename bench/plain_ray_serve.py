"""The baseline of bench/ray_serve.py: an ONNX model on Ray Serve written as Ray's documentation shows
(`@serve.deployment` around an ONNX Runtime session, `@serve.batch` coalescing requests, JSON in and
out through Ray's HTTP proxy), answering the KServe v2 infer route with the same JSON as shipyard.

    python bench/plain_ray_serve.py PORT MODEL.onnx REPLICAS

Runs until SIGTERM or Ctrl-C. GET answers 200 (the bench waits for it before measuring).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

import numpy as np
import onnxruntime as ort
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse


@serve.deployment(max_ongoing_requests=128)
class Model:
    def __init__(self, path: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def run(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, {self.input: np.stack(rows)})[0])

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse({})
        tensor = (await request.json())["inputs"][0]
        row = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"][1:])
        out = await self.run(row)
        return JSONResponse(
            {
                "outputs": [
                    {"name": "logits", "datatype": "FP32", "shape": [1, *out.shape], "data": out.tolist()}
                ]
            }
        )


def main() -> None:
    port, path, replicas = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Model.options(num_replicas=replicas).bind(path), name="plain", route_prefix="/")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    serve.shutdown()


if __name__ == "__main__":
    main()
