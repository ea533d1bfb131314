"""The floor of per-request cost in Python: a raw ASGI callable on uvicorn (uvloop, httptools), orjson,
and ONNX Runtime run on the event loop. No routing, validation, batching or monitoring: whatever a
real server does costs something on top of this. Same v2 JSON and binary bodies as shipyard's.

    MODEL=path.onnx python bench/bare_server.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

import bare_session
import numpy as np
import orjson
import uvicorn

session, INPUT, OUTPUT = bare_session.load()
READY = orjson.dumps({"ready": True})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: nothing to set up
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["method"] == "GET":
        await _answer(send, READY, b"application/json")
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = dict(scope["headers"])
    header_length = headers.get(b"inference-header-content-length")
    if header_length is None:  # v2 JSON
        tensor = orjson.loads(body)["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        (y,) = session.run([OUTPUT], {INPUT: x})
        doc = {"outputs": [{"name": OUTPUT, "shape": list(y.shape), "datatype": "FP32", "data": y.ravel()}]}
        await _answer(send, orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), b"application/json")
        return
    n = int(header_length)  # the binary tensor extension: a JSON header, then the raw tensor
    tensor = orjson.loads(body[:n])["inputs"][0]
    x = np.frombuffer(body, dtype=np.float32, offset=n).reshape(tensor["shape"])
    (y,) = session.run([OUTPUT], {INPUT: x})
    out = y.tobytes()
    head = orjson.dumps(
        {
            "outputs": [
                {
                    "name": OUTPUT,
                    "shape": list(y.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(out)},
                }
            ]
        }
    )
    await _answer(
        send,
        head + out,
        b"application/octet-stream",
        [(b"inference-header-content-length", str(len(head)).encode())],
    )


async def _answer(
    send: Any, body: bytes, kind: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", loop="uvloop", http="httptools"
    )
