"""Request bodies as clients of the binary tensor extension send them."""

from __future__ import annotations

import numpy as np
import orjson


def binary_request(x: np.ndarray, name: str = "x", **extra: object) -> tuple[bytes, int]:
    """A v2 request whose one FP32 input `name` is `x`, as binary data after the JSON header (with
    `extra` fields, e.g. outputs or id); and the header's length (Inference-Header-Content-Length)."""
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            **extra,
        }
    )
    return head + x.astype("<f4").tobytes(), len(head)
