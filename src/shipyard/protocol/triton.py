"""Triton's model configuration extension (what perf_analyzer reads) in its JSON form, from a version's
signature and serving settings; protocol/grpc/codec.py writes the same as a message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.signature import Signature, TensorSpec

if TYPE_CHECKING:
    from shipyard.config import ModelServing

PLATFORM = "onnxruntime_onnx"
CONFIG_TYPES = {"BYTES": "STRING"}  # Triton's config names every other type as v2 does, after "TYPE_"


def model_config(name: str, signature: Signature, serving: ModelServing) -> dict[str, Any]:
    """With a dynamic batch axis, `max_batch_size` > 0 and dims leave the batch axis out, as in Triton."""
    batched = all(spec.batched for spec in signature.inputs + signature.outputs)

    def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        return [
            {
                "name": spec.name,
                "data_type": "TYPE_" + CONFIG_TYPES.get(spec.datatype, spec.datatype),
                "dims": list(spec.shape[1:] if batched else spec.shape),
            }
            for spec in specs
        ]

    config: dict[str, Any] = {
        "name": name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "max_batch_size": serving.max_batch_size if batched else 0,
        "input": tensors(signature.inputs),
        "output": tensors(signature.outputs),
        "instance_group": [{"count": serving.instances, "kind": "KIND_CPU"}],
        "version_policy": {"all": {}},
    }
    if batched and serving.batching:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": serving.max_queue_delay_us}
    return config
