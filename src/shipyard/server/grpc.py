"""The gRPC transport: KServe v2's GRPCInferenceService on grpc.aio, over the same data plane.

Each method converts the message (protocol/grpc/codec.py), calls the data plane, converts back.
A failure is answered with the code one table gives its status (server/failures.py says which, and
logs it as HTTP does).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any, TypeVar

import grpc

from shipyard.config import TransportLimits
from shipyard.dataplane import DataPlane
from shipyard.errors import NotFound, Unavailable
from shipyard.protocol.grpc import codec
from shipyard.protocol.grpc import messages as pb
from shipyard.protocol.v2 import InferenceRequest
from shipyard.server.auth import Auth
from shipyard.server.failures import failure

STATUS_CODES: dict[int, grpc.StatusCode] = {
    HTTPStatus.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    HTTPStatus.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    HTTPStatus.UNPROCESSABLE_ENTITY: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    HTTPStatus.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.TOO_MANY_REQUESTS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    HTTPStatus.GATEWAY_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
}
GRPC_IDLE_MS = 300_000  # channels are long-lived by design: close one only after 5 idle minutes
# Which scope each RPC needs (server/auth.py), "read" unless said; the health checks need none.
# ModelInfer's is checked as the data plane admits the request (dataplane.Inbound), so that a refusal
# is counted as every other failure of a request is.
SCOPES: dict[str, str | None] = {"ServerLive": None, "ServerReady": None, "ModelInfer": None}

Req = TypeVar("Req")
Res = TypeVar("Res")


def _guard(method: Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Res]]) -> Any:
    """Check the call's scope, then answer a failure with its status's code (anything unexpected:
    INTERNAL, logged)."""
    scope = SCOPES.get(method.__name__, "read")

    async def wrapper(self: InferenceServicer, request: Req, context: grpc.aio.ServicerContext) -> Res:
        try:
            if scope is not None and (scope == "admin" or self.auth.enforced(scope)):
                model = getattr(request, "name", None)
                self.auth.check(_authorization(context), scope, model or None, context.peer())
            return await method(self, request, context)
        except Exception as exc:
            status, message, _ = failure(exc)
            await context.abort(STATUS_CODES.get(status, grpc.StatusCode.INTERNAL), message)
        raise AssertionError("unreachable: abort raises")

    wrapper.__name__ = method.__name__
    return wrapper


def _metadata(context: grpc.aio.ServicerContext, wanted: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == wanted:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    return _metadata(context, "authorization")


Call = tuple[Any, grpc.aio.ServicerContext]
"""A ModelInferRequest and its call."""


class InferInbound:
    """How ModelInfer hands a request to the data plane: the caller's token from the call's metadata;
    the message, whole already, decoded once the request is admitted."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    def allow(self, call: Call, model: str) -> None:
        if self.auth.enforced("predict"):
            context = call[1]
            self.auth.check(_authorization(context), "predict", model, context.peer())

    def key(self, call: Call) -> str | None:
        return _metadata(call[1], "x-shipyard-key")

    async def read(self, call: Call) -> InferenceRequest:
        return codec.decode_infer(call[0])[0]


class InferenceServicer:
    def __init__(self, dataplane: DataPlane, auth: Auth | None = None) -> None:
        self.dataplane = dataplane
        self.auth = auth or Auth()
        self.inbound = InferInbound(self.auth)

    @_guard
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self.dataplane.live())

    @_guard
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    @_guard
    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            ready = self.dataplane.model_ready(request.name, request.version or None)
        except NotFound:
            ready = False
        return pb.ModelReadyResponse(ready=ready)

    @_guard
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(**self.dataplane.server_metadata())

    @_guard
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        meta = self.dataplane.model_metadata(request.name, request.version or None)
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
        )

    @_guard
    async def ModelConfig(self, request: Any, context: Any) -> Any:
        return codec.encode_config(self.dataplane.model_config(request.name, request.version or None))

    @_guard
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        name, version = request.model_name, request.model_version or None
        response = await self.dataplane.infer(name, version, (request, context), self.inbound, "grpc")
        return codec.encode_infer(response, bool(request.raw_input_contents))


@contextlib.asynccontextmanager
async def grpc_server(
    dataplane: DataPlane,
    host: str,
    port: int,
    max_message_bytes: int,
    reuse_port: bool = False,
    *,
    auth: Auth | None = None,
    limits: TransportLimits | None = None,
    tls: tuple[bytes, bytes] | None = None,
) -> AsyncIterator[int]:
    """Serve gRPC on the running loop for the duration of the block; yields the bound port.

    `reuse_port` lets `--workers` processes share the port; otherwise a port in use is an error
    (grpc would share it silently with another server). `tls` is (certificate, key) in PEM. Calls past
    `limits.grpc_max_concurrent_rpcs` are refused by grpc before their message is parsed; idle
    connections close, and clients that ping too often are cut off.
    """
    limits = limits or TransportLimits()
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", int(reuse_port)),
        ("grpc.max_concurrent_streams", 256),
        ("grpc.max_connection_idle_ms", GRPC_IDLE_MS),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 2),
    ]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=limits.grpc_max_concurrent_rpcs)
    servicer = InferenceServicer(dataplane, auth)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in pb.methods().items()
        if hasattr(servicer, name)
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(pb.SERVICE, handlers),))
    try:
        address = f"{host}:{port}"
        if tls is not None:
            cert, key = tls
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise Unavailable(f"cannot listen for gRPC on {host}:{port}: is the port in use? (--grpc-port)")
    await server.start()
    try:
        yield bound
    finally:
        await server.stop(grace=5)
