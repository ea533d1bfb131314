"""The HTTP transport: an ASGI app whose routes only convert, call the data plane, and convert back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Query, Request
from starlette.responses import Response

from shipyard._version import __version__
from shipyard.dataplane import DataPlane
from shipyard.errors import InvalidInput, PayloadTooLarge
from shipyard.protocol.v2 import HEADER_LENGTH, decode_request, encode_response
from shipyard.server import errors
from shipyard.server.openapi import INFER_BODY, PREDICT_BODY

JSON = "application/json"


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to pass `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _header_length(request: Request) -> int | None:
    value = request.headers.get(HEADER_LENGTH)
    if value is None:
        return None
    if not value.isdigit():
        raise InvalidInput(f"Inference-Header-Content-Length must be a number, got {value!r}")
    return int(value)


def create_app(
    dataplane: DataPlane,
    *,
    max_body_bytes: int = 64 * 1024 * 1024,
    also_serve: Callable[[], contextlib.AbstractAsyncContextManager[Any]] | None = None,
) -> FastAPI:
    """The ASGI app; `also_serve` runs beside it on the same loop (the gRPC server)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await dataplane.manager.start()
        try:
            async with also_serve() if also_serve else contextlib.nullcontext():
                yield
        finally:
            await dataplane.manager.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="shipyard",
        version=__version__,
        description="KServe v2 inference protocol and a friendly /predict API over ONNX Runtime.",
        default_response_class=Response,
    )
    errors.install(app)

    # -- KServe v2: health and metadata ---------------------------------------------------

    @app.get("/v2/health/live", tags=["v2"])
    async def live() -> Response:
        return json_response({"live": dataplane.live()})

    @app.get("/v2/health/ready", tags=["v2"])
    async def ready() -> Response:
        is_ready = dataplane.ready()
        return json_response({"ready": is_ready}, 200 if is_ready else 400)

    @app.get("/v2", tags=["v2"])
    async def server_metadata() -> Response:
        return json_response(dataplane.server_metadata())

    @app.get("/v2/models/{name}", tags=["v2"])
    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"])
    async def model_metadata(name: str, version: str | None = None) -> Response:
        return json_response(dataplane.model_metadata(name, version))

    @app.get("/v2/models/{name}/config", tags=["v2"])
    @app.get("/v2/models/{name}/versions/{version}/config", tags=["v2"])
    async def model_config(name: str, version: str | None = None) -> Response:
        return json_response(dataplane.model_config(name, version))

    @app.get("/v2/models/{name}/ready", tags=["v2"])
    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"])
    async def model_ready(name: str, version: str | None = None) -> Response:
        return json_response({"name": name, "ready": dataplane.model_ready(name, version)})

    # -- KServe v2: inference ---------------------------------------------------------------

    @app.post("/v2/models/{name}/infer", tags=["v2"], openapi_extra=INFER_BODY)
    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["v2"], openapi_extra=INFER_BODY)
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        dataplane.model_ready(name, version)  # an unknown model is a 404 whatever the body
        body = await read_body(request, max_body_bytes)
        decoded = decode_request(body, _header_length(request))
        response = await dataplane.infer(name, version, decoded)
        content, header_length = encode_response(response)
        if header_length is None:
            return Response(content, media_type=JSON)
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )

    # -- friendly API -------------------------------------------------------------------------

    @app.get("/v1/models", tags=["friendly"])
    async def list_models() -> Response:
        return json_response({"models": dataplane.models()})

    async def _predict(request: Request, name: str | None, version: str | None, top_k: int) -> Response:
        body = await read_body(request, max_body_bytes)
        return json_response(await dataplane.predict(name, version, body, top_k))

    top_k_query = Query(0, ge=0, le=1000, description="also return the k most likely classes")

    @app.post("/v1/models/{name}/predict", tags=["friendly"], openapi_extra=PREDICT_BODY)
    @app.post(
        "/v1/models/{name}/versions/{version}/predict",
        tags=["friendly"],
        openapi_extra=PREDICT_BODY,
    )
    async def predict(
        request: Request, name: str, version: str | None = None, top_k: int = top_k_query
    ) -> Response:
        return await _predict(request, name, version, top_k)

    @app.post("/predict", tags=["friendly"], openapi_extra=PREDICT_BODY)
    async def predict_only(request: Request, top_k: int = top_k_query) -> Response:
        return await _predict(request, None, None, top_k)

    return app
