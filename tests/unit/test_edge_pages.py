"""/edge/NAME/: the server builds the web export's page of the version it serves by default, once, into
a cache under its home, and serves its files with the types browsers need; no browser here (the page
running in Chromium: tests/integration/test_edge_web.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from shipyard.config import Settings
from shipyard.edge import web
from shipyard.registry import Registry
from shipyard.server.routes import scope_of
from tests.conftest import register_digits
from tests.unit.conftest import serving, unit_settings


def test_the_page_of_the_default_version_is_built_once_and_served(
    registry: Registry, settings: Settings
) -> None:
    register_digits(registry)
    second = register_digits(registry, description="the newer one")
    with serving(registry, unit_settings(settings)) as (client, _):
        page = client.get("/edge/digits/")
        model = client.get("/edge/digits/model.json")
        wasm = client.get("/edge/digits/ort-wasm-simd-threaded.wasm")
        module = client.get("/edge/digits/ort.wasm.min.mjs")
        graph = client.get("/edge/digits/model.onnx")
        moved = client.get("/edge/digits", follow_redirects=False)
        cache = settings.home_dir / "edge"
        built = sorted(p.name for p in cache.iterdir())
        again = client.get("/edge/digits/shipyard-edge.js")
        assert sorted(p.name for p in cache.iterdir()) == built  # not built again
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="shipyard-edge.js">' in page.text
    assert page.headers["cache-control"] == "no-cache"
    description = model.json()
    assert (description["model"], description["version"]) == ("digits", second.number)
    assert description["labels"] == second.labels and description["description"] == "the newer one"
    assert description["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert description["scores"] == {"output": "logits", "kind": "logits"} and description["image"] is None
    assert wasm.headers["content-type"] == "application/wasm"
    assert wasm.content[:4] == b"\0asm"  # WebAssembly's magic number
    assert module.headers["content-type"].startswith("text/javascript")
    served, stored = onnx.load_from_string(graph.content), onnx.load_from_string(registry.artifact(second))
    assert (stored.ir_version, served.ir_version) == (14, web.MAX_IR_VERSION)  # what onnxruntime-web reads
    served.ir_version = stored.ir_version
    assert served == stored  # else the same graph
    assert again.status_code == 200 and "window.shipyardRun" in again.text
    assert moved.status_code in (307, 308) and moved.headers["location"].endswith("/edge/digits/")
    assert built == [f"{second.sha256}-{web.page_id(second).split('-')[1]}"]


def test_a_model_not_served_or_a_file_no_page_holds_is_404(registry: Registry, settings: Settings) -> None:
    register_digits(registry)
    with serving(registry, unit_settings(settings)) as (client, _):
        unknown = client.get("/edge/nope/")
        for path in ("/edge/digits/registry.db", "/edge/digits/..%2F..%2Fregistry.db", "/edge/digits/.."):
            assert client.get(path).status_code == 404, path
        outside = client.get("/edge/digits/secret.txt")
    assert unknown.status_code == 404 and unknown.json() == {"error": "model 'nope' is not served here"}
    assert outside.json() == {"error": "the page of digits holds no file 'secret.txt'"}


def test_without_onnxruntime_web_the_page_is_503_saying_how_to_get_it(
    registry: Registry, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_digits(registry)
    monkeypatch.setenv(web.ORT_WEB_ENV, str(tmp_path / "empty"))
    with serving(registry, unit_settings(settings)) as (client, _):
        answer = client.get("/edge/digits/")
        assert not (settings.home_dir / "edge").exists() or not any((settings.home_dir / "edge").iterdir())
    assert answer.status_code == 503
    message = answer.json()["error"]
    assert f"onnxruntime-web {web.ORT_WEB_VERSION} is not installed" in message
    assert "`make`" in message and f"npm pack onnxruntime-web@{web.ORT_WEB_VERSION}" in message
    assert "\n" not in message


def test_the_page_is_read_like_the_dashboard() -> None:
    assert scope_of("/edge/{name}/") == scope_of("/edge/{name}/{file}") == scope_of("/dashboard/{name}")
    assert scope_of("/edge/{name}/") == "read"
