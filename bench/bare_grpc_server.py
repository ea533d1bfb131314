"""The floor of per-request cost over gRPC in Python: one grpc.aio generic handler (the server
shipyard, MLServer and Ray Serve build on) that parses ModelInfer, runs ONNX Runtime on the event
loop and answers. No validation, batching or monitoring; a health check on HTTP for the benchmark's
"ready" probe comes from a bare ASGI app on a second port (PORT + 1 is the gRPC one).

    MODEL=path.onnx python bench/bare_grpc_server.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

import bare_session
import grpc
import numpy as np
import uvicorn
from tritonclient.grpc import service_pb2

session, INPUT, OUTPUT = bare_session.load()


async def infer(request: service_pb2.ModelInferRequest, context: Any) -> service_pb2.ModelInferResponse:
    tensor = request.inputs[0]
    x = np.frombuffer(request.raw_input_contents[0], dtype=np.float32).reshape(list(tensor.shape))
    (y,) = session.run([OUTPUT], {INPUT: x})
    response = service_pb2.ModelInferResponse(model_name=request.model_name)
    response.outputs.add(name=OUTPUT, datatype="FP32", shape=list(y.shape))
    response.raw_output_contents.append(y.tobytes())
    return response


class Handlers(grpc.GenericRpcHandler):
    def __init__(self) -> None:
        self.infer = grpc.unary_unary_rpc_method_handler(
            infer,
            request_deserializer=service_pb2.ModelInferRequest.FromString,
            response_serializer=service_pb2.ModelInferResponse.SerializeToString,
        )

    def service(self, details: Any) -> Any:
        return self.infer if details.method.endswith("/ModelInfer") else None


async def ready(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def main(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((Handlers(),))
    server.add_insecure_port(f"127.0.0.1:{port + 1}")
    await server.start()
    config = uvicorn.Config(ready, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
