"""The web target in a real browser (Debian's headless Chromium, driven by Playwright): `export` builds
the page and checks it against the server's graph; `shipyard serve` serves it at /edge/NAME/, where a
digit drawn with the mouse, a picture picked from the disk or a row typed in gets the server's answer.
Skipped only where Chromium is not installed (CI installs it); onnxruntime-web's files come from the
Makefile (`make test` vendors them first)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shipyard.config import Settings
from shipyard.edge import MANIFEST, export, web
from shipyard.importing import import_file, import_onnx
from shipyard.processing import pixels, recipe_of, samples
from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.integration.conftest import Server, start_server, stop_server
from tests.models import digits_data, picture_cnn

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT_ENV = (
    "SHIPYARD_EDGE_SCREENSHOT"  # also save the drawn 7's screenshot there (docs/img/edge-digits.png)
)
DIGITS_RECIPE = "image: resize=8x8, channels=L, scale=16/255, invert=true"  # examples/digits/demo.sh's
CNN_RECIPE = "image: resize=40, center_crop=32, normalize=imagenet"
SEVEN = [(14, 12), (50, 12), (30, 56)]  # examples/digits/build.py's draw_seven, on 64x64
SETTLED = "() => window.shipyard.last !== null && !window.shipyard.busy"
LOADED = "() => window.shipyard && (window.shipyard.ready || window.shipyard.error !== null)"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt install chromium)")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits-pictures (the demo's MLP with the demo's recipe), a small CNN on photos, and digits."""
    home = tmp_path_factory.mktemp("home")
    demo = tmp_path_factory.mktemp("demo")
    subprocess.run(
        [sys.executable, str(ROOT / "examples/digits/build.py"), str(demo)], check=True, timeout=300
    )
    (demo / "cnn.onnx").write_bytes(picture_cnn())
    registry = Registry.open(Settings(home=home))
    try:
        import_file(
            demo / "digits.pt", name="digits-pictures", input_shape=[1, 64], registry=registry,
            labels=(demo / "labels.txt").read_text().split(), preprocess=DIGITS_RECIPE,
        )  # fmt: skip
        labels = ["cat", "dog", "bird", "fish"]
        import_onnx(
            demo / "cnn.onnx", name="pictures", labels=labels, preprocess=CNN_RECIPE, registry=registry
        )
        register_digits(registry)
    finally:
        registry.close()
    return home


@pytest.fixture
def registry(home: Path) -> Iterator[Registry]:
    opened = Registry.open(Settings(home=home))
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    running = start_server(home, "digits-pictures", "pictures", "digits", "--no-grpc")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        opened = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield opened
        opened.close()


@pytest.mark.parametrize("name", ["digits-pictures", "pictures"])
def test_the_export_runs_in_chromium_as_the_server_does(
    registry: Registry, tmp_path: Path, name: str
) -> None:
    out = tmp_path / "web"
    report = export(registry, name, "web", out)
    check = report.check
    assert check.max_abs_diff <= 1e-4 and check.top1 == 1.0 and check.samples == 6  # samples.pictures()
    assert report.ran.runtime.startswith("Chromium ") and report.ran.runtime.endswith(
        f" + onnxruntime-web {web.ORT_WEB_VERSION}"
    )
    assert 0 < report.ran.load_s < 60 and 0 < report.ran.latency_s < 1
    files = {p.name for p in out.iterdir()}
    assert files == {*web.FILES, MANIFEST}
    manifest = orjson.loads((out / MANIFEST).read_bytes())
    assert (manifest["model"], manifest["target"], manifest["model_file"]) == (name, "web", "model.onnx")
    assert manifest["onnxruntime_web"]["version"] == web.ORT_WEB_VERSION
    assert set(manifest["files"]) == files - {MANIFEST}
    description = orjson.loads((out / "model.json").read_bytes())
    recipe = recipe_of(report.record.signature)
    assert recipe is not None and description["image"] == recipe.to_dict()
    assert description["inputs"] == [
        {"name": recipe.input, "datatype": "UINT8", "shape": list(recipe.pixels_shape)}
    ]
    events = [e for e in registry.history(name) if e.kind == "export"]
    assert events and events[-1].detail.startswith(f"web to {out}: max |diff|")


def test_a_seven_drawn_on_the_served_page_is_a_seven(
    server: Server, browser: Any, registry: Registry, tmp_path: Path
) -> None:
    page, asked = open_page(browser, f"{server.url}/edge/digits-pictures/")
    box = page.locator("#pad").bounding_box()
    assert box is not None
    at = [(box["x"] + x * box["width"] / 64, box["y"] + y * box["height"] / 64) for x, y in SEVEN]
    page.mouse.move(*at[0])
    page.mouse.down()
    for point in at[1:]:
        page.mouse.move(*point, steps=12)
    page.mouse.up()
    page.wait_for_function(SETTLED, timeout=10_000)
    assert page.locator("#class").inner_text() == "7"
    last = page.evaluate("() => window.shipyard.last")
    png = page.evaluate("() => document.getElementById('pad').toDataURL('image/png')")
    drawn = base64.b64decode(png.partition(",")[2])
    with httpx.Client(base_url=server.url) as client:  # the server, on the very pixels of the pad
        answer = client.post(
            "/v1/models/digits-pictures/predict", content=drawn, headers={"content-type": "image/png"}
        ).json()
    assert last["answer"]["class"] == answer["class"] == "7"
    assert abs(last["answer"]["confidence"] - answer["confidence"]) < 1e-5
    recipe = recipe_of(registry.version("digits-pictures").signature)
    assert recipe is not None
    assert last["pixels"] == pixels(drawn, recipe).ravel().tolist()  # Pillow's resize, in the browser
    shot = tmp_path / "edge-digits.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copy(shot, os.environ[SCREENSHOT_ENV])
    assert_offline(asked, server.url)
    page.close()


def test_a_picture_picked_on_the_page_gets_the_servers_answer(
    server: Server, browser: Any, registry: Registry, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(samples.picture("JPEG", "RGB", (640, 480), seed=11))
    page, asked = open_page(browser, f"{server.url}/edge/pictures/")
    page.set_input_files("#file", str(photo))
    page.wait_for_function(SETTLED, timeout=10_000)
    last = page.evaluate("() => window.shipyard.last")
    with httpx.Client(base_url=server.url) as client:
        answer = client.post(
            "/v1/models/pictures/predict", content=photo.read_bytes(), headers={"content-type": "image/jpeg"}
        ).json()
    assert page.locator("#class").inner_text() == last["answer"]["class"] == answer["class"]
    assert abs(last["answer"]["confidence"] - answer["confidence"]) < 1e-5
    recipe = recipe_of(registry.version("pictures").signature)
    assert recipe is not None
    assert last["pixels"] == pixels(photo.read_bytes(), recipe).ravel().tolist()  # decoded, resized, cropped
    assert_offline(asked, server.url)
    page.close()


def test_a_row_typed_on_the_page_gets_the_servers_answer(server: Server, browser: Any) -> None:
    X, _ = digits_data()
    row = X[1234].astype(int).tolist()
    page, asked = open_page(browser, f"{server.url}/edge/digits/")
    page.fill("#values textarea[name=input]", json.dumps(row))
    page.click("#values button[type=submit]")
    page.wait_for_function(SETTLED, timeout=10_000)
    last = page.evaluate("() => window.shipyard.last")
    with httpx.Client(base_url=server.url) as client:
        answer = client.post("/v1/models/digits/predict", json={"input": row}).json()
    assert last["answer"]["class"] == answer["class"]
    assert abs(last["answer"]["confidence"] - answer["confidence"]) < 1e-5
    assert_offline(asked, server.url)
    page.close()


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A new page at `url`, its model loaded; the URLs it asks for, as it asks."""
    page = browser.new_page(viewport={"width": 820, "height": 600})
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(url)
    page.wait_for_function(LOADED, timeout=60_000)
    state = page.evaluate("() => window.shipyard")
    assert state["ready"] and state["error"] is None, state
    assert state["version"] == web.ORT_WEB_VERSION
    return page, asked


def assert_offline(asked: list[str], base: str) -> None:
    outside = [url for url in asked if not url.startswith((base + "/edge/", "data:", "blob:"))]
    assert not outside, f"the page asked for {outside}"
    assert any(url.endswith(".wasm") for url in asked)
