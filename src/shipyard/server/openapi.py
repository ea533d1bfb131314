"""The OpenAPI document of server/routes.py's table, and the request bodies it shows. Routes read raw
bytes (no per-request pydantic model on the hot path), so the schemas are declared here, for the
documentation only; /docs shows the document with Swagger UI."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shipyard.datatypes import V2_TO_NUMPY
from shipyard.server.admin import DeployRequest, RollbackRequest, RolloutRequest, SplitRequest

if TYPE_CHECKING:
    from shipyard.server.routes import Route

_TENSOR: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "enum": list(V2_TO_NUMPY)},  # the one table: datatypes.py
        "data": {"type": "array", "items": {}, "description": "flat or nested, row-major"},
        "parameters": {"type": "object"},
    },
}


def json_body(schema: dict[str, Any], example: Any = None, *, required: bool = True) -> dict[str, Any]:
    """An OpenAPI request body of JSON."""
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"required": required, "content": {"application/json": content}}


INFER_BODY = json_body(
    {
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
                    "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                },
            },
        },
    },
    {"id": "42", "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
)
PREDICT_BODY = json_body(
    {
        "type": "object",
        "properties": {
            "input": {"type": "array", "items": {}, "description": "one sample"},
            "inputs": {"type": "array", "items": {}, "description": "samples"},
        },
    },
    {"input": [0.0, 1.0, 2.0]},
)
FEEDBACK_BODY = json_body(
    {
        "type": ["object", "array"],
        "description": '{"id": <prediction id>, "label": <true class>}, or a list of them',
    },
    {"id": "3f2a...", "label": "7"},
)
DEPLOY_BODY = json_body(DeployRequest.model_json_schema(), required=False)
ROLLBACK_BODY = json_body(RollbackRequest.model_json_schema(), required=False)
SPLIT_BODY = json_body(SplitRequest.model_json_schema())
ROLLOUT_BODY = json_body(RolloutRequest.model_json_schema())

TOP_K: dict[str, Any] = {
    "name": "top_k",
    "in": "query",
    "required": False,
    "description": "also return the k most likely classes",
    "schema": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 0},
}
FRAGMENT: dict[str, Any] = {
    "name": "fragment",
    "in": "query",
    "required": False,
    "description": "only the part of the page that refreshes",
    "schema": {"type": "boolean", "default": False},
}
ERROR: dict[str, Any] = {
    "description": 'An error: {"error": "what went wrong"}',
    "content": {
        "application/json": {
            "schema": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
        }
    },
}


def document(routes: Iterable[Route], title: str, version: str, description: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (those marked documented)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not route.documented:
            continue
        method = route.method.lower()
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)
        ]
        operation: dict[str, Any] = {
            "tags": [route.tag],
            "summary": route.summary,
            "operationId": f"{method}_{re.sub(r'[^a-z0-9]+', '_', route.path.lower()).strip('_') or 'root'}",
            "parameters": [*parameters, *route.query],
            "responses": {"200": {"description": "The answer"}, "default": ERROR},
        }
        if route.body is not None:
            operation["requestBody"] = route.body
        paths.setdefault(route.path, {})[method] = operation
    info = {"title": title, "version": version, "description": description}
    return {"openapi": "3.1.0", "info": info, "paths": paths}


def swagger_page(openapi_url: str, title: str) -> str:
    """/docs: Swagger UI (from its CDN, as FastAPI serves it) reading the document at `openapi_url`."""
    cdn = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f'<link rel=stylesheet href="{cdn}/swagger-ui.css"></head><body><div id=swagger-ui></div>'
        f'<script src="{cdn}/swagger-ui-bundle.js"></script><script>'
        f'SwaggerUIBundle({{url: "{openapi_url}", dom_id: "#swagger-ui"}})</script></body></html>'
    )
