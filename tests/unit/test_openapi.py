"""The OpenAPI document is written from the route table: every route is documented, with its path
parameters, and nothing is documented that is not routed."""

from __future__ import annotations

import re

from starlette.routing import Route

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.unit.conftest import serving, unit_settings

PAGES = {("GET", "/docs"), ("GET", "/openapi.json")}  # the documentation's own pages


def test_the_document_describes_every_route_and_nothing_else(registry: Registry, settings: Settings) -> None:
    register_digits(registry)
    with serving(registry, unit_settings(settings)) as (client, server):
        document = client.get("/openapi.json").json()
        page = client.get("/docs")
    hot = server.app.app  # the hot path (inference, POST), in front of Starlette
    routes = [route for route in hot.app.routes if isinstance(route, Route)]
    routed = {(method, route.path) for route in routes for method in route.methods or () if method != "HEAD"}
    routed |= {("POST", template) for template in hot.templates}
    documented = {
        (method.upper(), path) for path, operations in document["paths"].items() for method in operations
    }
    assert documented == routed - PAGES
    assert routed >= PAGES
    assert ("POST", "/v2/models/{name}/infer") in documented and ("GET", "/metrics") in documented
    for path, operations in document["paths"].items():
        for operation in operations.values():
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path
            assert operation["tags"] and operation["summary"] and "200" in operation["responses"]
    ids = [op["operationId"] for operations in document["paths"].values() for op in operations.values()]
    assert len(ids) == len(set(ids))
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["required"] == ["inputs"]
    assert [p["name"] for p in document["paths"]["/predict"]["post"]["parameters"]] == ["top_k"]
    assert page.status_code == 200 and "/openapi.json" in page.text


def test_the_documented_datatypes_are_the_ones_served(registry: Registry, settings: Settings) -> None:
    register_digits(registry)
    with serving(registry, unit_settings(settings)) as (client, _):
        document = client.get("/openapi.json").json()
    body = document["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]
    tensor = body["content"]["application/json"]["schema"]["properties"]["inputs"]["items"]
    assert set(tensor["properties"]["datatype"]["enum"]) == {
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64", "BYTES",
    }  # fmt: skip
