"""Request-body schemas for /docs. Routes read raw bytes (no per-request pydantic model on the hot
path), so the schemas are declared here for the documentation only."""

from typing import Any

_TENSOR: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "UINT8",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "data": {"type": "array", "items": {}, "description": "flat or nested, row-major"},
        "parameters": {"type": "object"},
    },
}

INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {"type": "array", "items": _TENSOR},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                    },
                },
                "example": {
                    "id": "42",
                    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
                },
            }
        },
    }
}

PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "input": {"type": "array", "items": {}, "description": "one sample"},
                        "inputs": {"type": "array", "items": {}, "description": "samples"},
                    },
                },
                "example": {"input": [0.0, 1.0, 2.0]},
            }
        },
    }
}

FEEDBACK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": ["object", "array"],
                    "description": '{"id": <prediction id>, "label": <true class>}, or a list of them',
                },
                "example": {"id": "3f2a...", "label": "7"},
            }
        },
    }
}
