"""The baseline people write by hand: FastAPI + uvicorn + one ONNX Runtime session, pydantic request
models, one request = one session.run, JSON in and out. Same v2 JSON body as shipyard's, so the same
load generator drives both.

    MODEL=path.onnx python bench/naive_server.py PORT
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("INTRA_OP_THREADS", "1"))
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["MODEL"], options, providers=["CPUExecutionProvider"])
app = FastAPI()


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list


class InferRequest(BaseModel):
    inputs: list[Tensor]


@app.get("/v2/health/ready")
def ready() -> dict:
    return {"ready": True}


@app.post("/v2/models/{model}/infer")
def infer(model: str, request: InferRequest) -> dict:
    feeds = {t.name: np.array(t.data, dtype=np.float32).reshape(t.shape) for t in request.inputs}
    outputs = session.run(None, feeds)
    return {
        "model_name": model,
        "outputs": [
            {"name": meta.name, "shape": list(out.shape), "datatype": "FP32", "data": out.ravel().tolist()}
            for meta, out in zip(session.get_outputs(), outputs, strict=True)
        ],
    }


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
