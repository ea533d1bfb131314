"""The v2 gRPC messages, built from the checked-in descriptor of grpc_predict_v2.proto (`make proto`).

They live in a private descriptor pool, not protobuf's default one: Triton's client library registers
messages of the same `inference` package there, and two definitions of one name in one pool refuse
to load. A private pool lets shipyard's server and tritonclient share a process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "inference.GRPCInferenceService"
_DESCRIPTOR = Path(__file__).with_name("grpc_predict_v2.binpb")


def _load() -> tuple[descriptor_pool.DescriptorPool, dict[str, Any]]:
    files = descriptor_pb2.FileDescriptorSet.FromString(_DESCRIPTOR.read_bytes()).file
    pool = descriptor_pool.DescriptorPool()
    for file in files:
        pool.Add(file)
    return pool, message_factory.GetMessages(files, pool=pool)


_POOL, _CLASSES = _load()


def message(name: str) -> Any:
    return _CLASSES[f"inference.{name}"]


def methods() -> dict[str, tuple[Any, Any]]:
    """Each RPC of the service: its request and response classes."""
    service = _POOL.FindServiceByName(SERVICE)
    return {
        m.name: (_CLASSES[m.input_type.full_name], _CLASSES[m.output_type.full_name]) for m in service.methods
    }


ServerLiveResponse = message("ServerLiveResponse")
ServerReadyResponse = message("ServerReadyResponse")
ModelReadyResponse = message("ModelReadyResponse")
ServerMetadataResponse = message("ServerMetadataResponse")
ModelMetadataResponse = message("ModelMetadataResponse")
ModelInferRequest = message("ModelInferRequest")
ModelInferResponse = message("ModelInferResponse")
InferParameter = message("InferParameter")
ModelConfigResponse = message("ModelConfigResponse")
ModelConfig = message("ModelConfig")
ModelInput = message("ModelInput")
ModelOutput = message("ModelOutput")
ModelInstanceGroup = message("ModelInstanceGroup")
ModelDynamicBatching = message("ModelDynamicBatching")
ModelVersionPolicy = message("ModelVersionPolicy")
