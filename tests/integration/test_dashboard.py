"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright) after traffic."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from shipyard.config import Settings
from shipyard.monitor.reference import profile_version
from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.integration.conftest import start_server, stop_server
from tests.models import digits_data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT_ENV = "SHIPYARD_DASHBOARD_SCREENSHOT"  # also save the screenshot there (docs/img/dashboard.png)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt install chromium)")


def test_the_dashboard_shows_traffic_drift_accuracy_and_cost(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    X, y = digits_data()
    order = np.random.default_rng(3).permutation(len(X))
    registry = Registry.open(Settings(home=tmp_path))
    record = register_digits(registry)
    np.savez(tmp_path / "reference.npz", X=X[order[:1000]])
    registry.set_reference("digits", 1, profile_version(registry, record, tmp_path / "reference.npz"), "ref")
    registry.close()
    server = start_server(tmp_path, "--no-grpc", env={"SHIPYARD_MONITOR__DRIFT_WINDOW": "300"})
    try:
        with httpx.Client(base_url=server.url) as client:
            live = order[1000:]
            answers = []
            for i in live[:400]:  # unshifted traffic, then brighter inputs: drift
                if len(answers) == 200:
                    # The charts plot one point per second, and 400 answers can take a fifth of one:
                    # the second half goes in the next second, so that each chart has a line to draw.
                    time.sleep(1 - time.time() % 1)
                rows = X[i : i + 1] + (3 if len(answers) >= 250 else 0)
                doc = client.post(
                    "/v1/models/digits/predict", json={"input": np.clip(rows, 0, 16)[0].tolist()}
                )
                answers.append((doc.json()["id"], str(y[i])))
            feedback = [{"id": a, "label": label} for a, label in answers[:250]]
            assert client.post("/v1/models/digits/feedback", json=feedback).status_code == 200
            client.post("/v2/models/digits/infer", json={"inputs": []})  # one error
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"{server.url}/dashboard/digits")
            page.wait_for_selector("section.version svg.chart")
            charts = page.locator("section.version .card")
            assert charts.count() == 5
            assert page.locator("polyline.line").count() >= 2  # throughput and latency drawn
            assert page.locator(".card rect.bar").count() >= 10  # confidence bars and drift bars
            assert page.locator(".card rect.bar.alert").count() >= 1  # features past the threshold
            tiles = page.locator(".tile").all_inner_texts()
            text = " ".join(tiles)
            assert "DRIFT" in text and "250 labelled" in text and "$" in text
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        assert shot.stat().st_size > 10_000
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copy(shot, os.environ[SCREENSHOT_ENV])
    finally:
        stop_server(server)
