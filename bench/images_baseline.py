"""The picture classifier people write by hand: FastAPI + uvicorn + Pillow + one ONNX Runtime session.
An `async def` endpoint reads the raw body (the picture's bytes), Pillow opens, converts, resizes (the
shorter side to 256, bilinear) and crops (the centre 224), numpy normalises (ImageNet's mean and std)
and lays it out as NCHW, one session.run, a softmax, and {"class", "confidence"} back: the same answer
as shipyard's /v1/models/NAME/predict for a model imported with
`--preprocess "image: resize=256, center_crop=224, normalize=imagenet"`.

MODE=naive does it all inside the endpoint, on the event loop (what the tutorials show); MODE=careful
hands the decoding and the run to Starlette's thread pool (`run_in_threadpool`), as a user who knows
not to block the loop does. ONNX Runtime's threads are left at their defaults (intra- and inter-op
threads 0: ORT's choice, one thread per core), which is what `shipyard serve` uses for a model that runs
on threads; INTRA_OP_THREADS=1 sets one, as `shipyard serve --intra-op-threads 1` does.

    MODEL=cnn.onnx LABELS=labels.txt MODE=careful [INTRA_OP_THREADS=1] python bench/images_baseline.py PORT
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from PIL import Image
from starlette.concurrency import run_in_threadpool

RESIZE, CROP = 256, 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class Classifier:
    """Bytes of a picture in, (class, confidence) out; the server's and the in-process ceiling's code."""

    def __init__(self, model: str, labels: list[str], threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ORT's choice, one a core
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.labels = labels

    def preprocess(self, data: bytes) -> np.ndarray:
        """The picture as float32 [1, 3, 224, 224], normalised. Not turned by its EXIF orientation, as most
        hand-written servers do not (shipyard reads the tag; the pictures here have none)."""
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            w, h = image.size
            size = (RESIZE, int(RESIZE * h / w)) if w <= h else (int(RESIZE * w / h), RESIZE)
            image = image.resize(size, Image.Resampling.BILINEAR)
            left, top = round((size[0] - CROP) / 2), round((size[1] - CROP) / 2)
            image = image.crop((left, top, left + CROP, top + CROP))
            x = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
        return x.transpose(2, 0, 1)[None]

    def predict(self, x: np.ndarray) -> dict[str, str | float]:
        (logits,) = self.session.run(None, {self.input: x})
        z = logits[0] - logits[0].max()
        p = np.exp(z) / np.exp(z).sum()
        best = int(p.argmax())
        return {"class": self.labels[best], "confidence": float(p[best])}

    def __call__(self, data: bytes) -> dict[str, str | float]:
        return self.predict(self.preprocess(data))


def app(classifier: Classifier, mode: str) -> FastAPI:
    api = FastAPI()

    @api.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    if mode == "naive":

        @api.post("/v1/models/{model}/predict")
        async def predict(model: str, request: Request) -> dict[str, str | float]:
            return classifier(await request.body())

    else:

        @api.post("/v1/models/{model}/predict")
        async def predict_in_thread(model: str, request: Request) -> dict[str, str | float]:
            return await run_in_threadpool(classifier, await request.body())

    return api


if __name__ == "__main__":
    import uvicorn

    labels = Path(os.environ["LABELS"]).read_text().split()
    threads = int(os.environ.get("INTRA_OP_THREADS", "0"))
    api = app(Classifier(os.environ["MODEL"], labels, threads), os.environ.get("MODE", "careful"))
    uvicorn.run(api, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
