"""The web: a static folder that runs the model in a browser, on onnxruntime-web's WebAssembly backend.

    index.html, shipyard-edge.js, shipyard-pixels.js     the page (edge/web/): draw, pick or type
    model.onnx, model.json                               the graph, and how to feed it and read it
    ort.wasm.min.mjs, ort-wasm-simd-threaded.{mjs,wasm}  onnxruntime-web, vendored by the Makefile

The page does the server's processing: a picture is converted, resized and cropped as the version's
recipe says, the way Pillow does it on the server (shipyard-pixels.js), and fed as uint8 pixels, the
graph doing the rest; the outputs are read as /predict reads them. One thread, so no cross-origin
isolation is needed: any static file server will do, and nothing is fetched from elsewhere. The check
serves the folder on 127.0.0.1 and runs it in headless Chromium (Playwright) through the page's own
`window.shipyardRun`. `shipyard serve` serves the same page at /edge/NAME/ (server/edge.py).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import importlib.resources
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from shipyard.edge import Built, Options, Ran
from shipyard.errors import ConversionFailed, Unavailable
from shipyard.processing import graph_inputs, recipe_of
from shipyard.registry import VersionRecord

ORT_WEB_VERSION = "1.30.0"
"""The onnxruntime-web release the page runs (opsets up to 21 and more); the Makefile vendors it from
the npm registry, reading this line."""
MAX_IR_VERSION = 13
"""The newest ONNX IR version that release reads: a graph stamped newer (onnx 1.23's helpers stamp 14)
that needs nothing newer is written with this one, and the check says whether it runs the same."""
ORT_WEB_ENV = "SHIPYARD_ORT_WEB"
"""A folder that holds onnxruntime-web's files, instead of the venv's share/shipyard/onnxruntime-web."""
RUNTIME = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
"""onnxruntime-web's ES module for the WebAssembly backend alone, its loader and its WebAssembly."""
PAGE = ("index.html", "shipyard-edge.js", "shipyard-pixels.js")
MODEL = "model.onnx"
DESCRIPTION = "model.json"
FILES = frozenset((*PAGE, *RUNTIME, MODEL, DESCRIPTION))
"""Every file a page is made of (what /edge/NAME/ serves)."""
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".mjs": "text/javascript",  # module scripts must be served as JavaScript
    ".wasm": "application/wasm",  # what WebAssembly.instantiateStreaming takes
    ".json": "application/json",
    ".onnx": "application/octet-stream",
}
CHROMIUM_ENV = "SHIPYARD_CHROMIUM"
LOAD_TIMEOUT_MS = 60_000
SAMPLES = 20
"""Single-row timings taken in the page; the latency is their median."""


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream")


def runtime_folder() -> Path:
    """Where onnxruntime-web's files are: SHIPYARD_ORT_WEB, else the venv's share/ folder (the Makefile
    puts them there). Unavailable, in one line that says how to get them, when they are not."""
    configured = os.environ.get(ORT_WEB_ENV)
    folder = Path(configured).expanduser() if configured else default_runtime_folder()
    how = (
        f"run `make` (it vendors them with `npm pack onnxruntime-web@{ORT_WEB_VERSION}`), or put that "
        f"package's package.json and dist/{{{','.join(RUNTIME)}}} in {folder}"
        + ("" if configured else f" or in a folder {ORT_WEB_ENV} names")
    )
    missing = [name for name in ("package.json", *RUNTIME) if not (folder / name).is_file()]
    if missing:
        raise Unavailable(f"onnxruntime-web {ORT_WEB_VERSION} is not installed for the web export: {how}")
    version = runtime_version(folder)
    if not configured and version != ORT_WEB_VERSION:
        raise Unavailable(f"{folder} holds onnxruntime-web {version}, not {ORT_WEB_VERSION}: {how}")
    return folder


def default_runtime_folder() -> Path:
    return Path(sys.prefix) / "share" / "shipyard" / "onnxruntime-web"


def runtime_version(folder: Path) -> str:
    try:
        return str(orjson.loads((folder / "package.json").read_bytes())["version"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return "(unknown version)"


def describe(record: VersionRecord, version: str = ORT_WEB_VERSION) -> dict[str, Any]:
    """model.json: what the page needs to feed the graph and read its answer."""
    signature = record.signature
    recipe = recipe_of(signature)
    scores = signature.scores
    return {
        "model": record.model,
        "version": record.number,
        "sha256": record.sha256,
        "description": record.description,
        "model_file": MODEL,
        "inputs": [spec.to_dict() for spec in graph_inputs(signature)],
        "outputs": [spec.to_dict() for spec in signature.outputs],
        "labels": record.labels,
        "scores": None if scores is None else scores.to_dict(),
        "unit": signature.unit,
        "image": None if recipe is None else recipe.to_dict(),
        "features": None if signature.features is None else list(signature.features),
        "runtime": {"onnxruntime-web": version, "backend": "wasm", "threads": 1},
    }


def page_id(record: VersionRecord) -> str:
    """What names the page of `record` once built: its artifact's sha256, then a digest of the rest the
    page is made of (model.json, the page's files, onnxruntime-web's version), so that a page is
    built anew when any of them changes (server/edge.py's cache)."""
    version = runtime_version(runtime_folder())
    digest = hashlib.sha256(orjson.dumps(describe(record, version)))
    for name in PAGE:
        digest.update(_asset(name))
    return f"{record.sha256}-{digest.hexdigest()[:12]}"


def build_page(onnx_bytes: bytes, record: VersionRecord, folder: Path) -> dict[str, Any]:
    """Write the page of `record` into `folder`; what it runs on (for the manifest)."""
    runtime = runtime_folder()  # first: nothing is written when it is missing
    version = runtime_version(runtime)
    written: dict[str, Any] = {"version": version, "backend": "wasm", "threads": 1}
    onnx_bytes, stored = _readable(onnx_bytes)
    if stored is not None:
        written["ir_version"] = {"stored": stored, "written": MAX_IR_VERSION}
    for name in PAGE:
        (folder / name).write_bytes(_asset(name))
    for name in RUNTIME:
        shutil.copyfile(runtime / name, folder / name)
    (folder / MODEL).write_bytes(onnx_bytes)
    description = describe(record, version)
    (folder / DESCRIPTION).write_bytes(orjson.dumps(description, option=orjson.OPT_INDENT_2))
    return written


def _asset(name: str) -> bytes:
    return (importlib.resources.files("shipyard.edge") / "web" / name).read_bytes()


def _readable(onnx_bytes: bytes) -> tuple[bytes, int | None]:
    """The graph with an IR version onnxruntime-web reads, and the one it had when that was changed."""
    import onnx

    model = onnx.load_model_from_string(onnx_bytes)
    if model.ir_version <= MAX_IR_VERSION:
        return onnx_bytes, None
    stored = int(model.ir_version)
    model.ir_version = MAX_IR_VERSION
    return model.SerializeToString(), stored


class Web:
    def build(self, onnx_bytes: bytes, record: VersionRecord, folder: Path, options: Options) -> Built:
        # the graph compared with the server's is the version's own (not the IR-restamped copy)
        runtime = build_page(onnx_bytes, record, folder)
        return Built(MODEL, extra={"page": PAGE[0], "onnxruntime_web": runtime})

    def run(self, folder: Path, built: Built, inputs: dict[str, np.ndarray], outputs: list[str]) -> Ran:
        # on a thread of its own: Playwright's sync API refuses a thread whose asyncio loop is running
        # (a notebook's, or a caller's own Playwright)
        with ThreadPoolExecutor(1, thread_name_prefix="web-export-check") as pool:
            return pool.submit(self._run, folder, inputs, outputs).result()

    def _run(self, folder: Path, inputs: dict[str, np.ndarray], outputs: list[str]) -> Ran:
        sync_api = _playwright()
        with _serving(folder) as url, sync_api.sync_playwright() as playwright:
            browser = _launch(playwright, sync_api)
            try:
                page = browser.new_page()
                outside: list[str] = []

                def local_only(route: Any) -> None:  # a page that needs the network is no export
                    if route.request.url.startswith(url):
                        route.continue_()
                    else:
                        outside.append(route.request.url)
                        route.abort()

                page.route("**/*", local_only)
                state = _open(page, url + PAGE[0], sync_api)
                found = _call(page, "feeds => window.shipyardRun(feeds)", _feeds(inputs), sync_api)
                one = _feeds({name: array[:1] for name, array in inputs.items()})
                times = _call(page, TIMING, [one, SAMPLES], sync_api)
                if outside:
                    raise ConversionFailed(f"the page asked for {outside[0]}: an export must run offline")
                runtime = f"Chromium {browser.version} + onnxruntime-web {state['version']}"
            finally:
                browser.close()
        latency_s = sorted(times)[len(times) // 2] / 1000
        return Ran([_array(found[name]) for name in outputs], state["loadMs"] / 1000, latency_s, runtime)


TIMING = """async ([feeds, samples]) => {
  await window.shipyardRun(feeds);
  let started = performance.now();
  await window.shipyardRun(feeds);
  // the page's clock ticks every 0.1 ms without cross-origin isolation: a sample is runs of 2 ms or more
  const repeat = Math.min(100, Math.ceil(2 / Math.max(performance.now() - started, 0.01)));
  const times = [];
  for (let s = 0; s < samples; s++) {
    started = performance.now();
    for (let i = 0; i < repeat; i++) await window.shipyardRun(feeds);
    times.push((performance.now() - started) / repeat);
  }
  return times;
}"""


def _open(page: Any, url: str, sync_api: Any) -> dict[str, Any]:
    """Open the page and wait for its model to load; its window.shipyard."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error).splitlines()[0]))
    page.goto(url)
    try:
        page.wait_for_function(
            "() => window.shipyard && (window.shipyard.ready || window.shipyard.error !== null)",
            timeout=LOAD_TIMEOUT_MS,
        )
    except sync_api.TimeoutError:
        why = f": {errors[0]}" if errors else ""
        seconds = LOAD_TIMEOUT_MS // 1000
        raise ConversionFailed(f"the page did not load the model in {seconds} s{why}") from None
    state: dict[str, Any] = page.evaluate("() => window.shipyard")
    if state["error"] is not None:
        reason = " ".join(str(state["error"]).split())  # one line
        raise ConversionFailed(f"onnxruntime-web cannot run the model: {reason}")
    return state


RUN_TIMEOUT_MS = 120_000
"""How long the check waits for the page's answers (Playwright's evaluate has no timeout of its own)."""


def _call(page: Any, script: str, argument: Any, sync_api: Any) -> Any:
    seconds = RUN_TIMEOUT_MS // 1000
    raced = (
        f"async argument => Promise.race([({script})(argument), new Promise((_, reject) => setTimeout("
        f"() => reject(new Error('no answer in {seconds} s')), {RUN_TIMEOUT_MS}))])"
    )
    try:
        return page.evaluate(raced, argument)
    except sync_api.Error as exc:
        reason = str(exc.message).splitlines()[0]
        raise ConversionFailed(f"onnxruntime-web could not run the model: {reason}") from None


ORT_TYPES = frozenset(
    ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16", "float32",
     "float64", "bool")
)  # fmt: skip
"""The numpy dtypes onnxruntime-web takes as they are named (strings aside)."""


def _feeds(inputs: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    feeds = {}
    for name, array in inputs.items():
        if array.dtype.kind in "OSU":
            items = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel().tolist()]
            feeds[name] = {"data": items, "dims": list(array.shape), "type": "string"}
        elif (kind := array.dtype.name) in ORT_TYPES:
            feeds[name] = {"data": array.ravel().tolist(), "dims": list(array.shape), "type": kind}
        else:
            raise ConversionFailed(f"onnxruntime-web takes no {array.dtype} tensors (input {name!r})")
    return feeds


def _array(found: dict[str, Any]) -> np.ndarray:
    dtype = object if found["type"] == "string" else np.dtype(found["type"])
    return np.asarray(found["data"], dtype=dtype).reshape(found["dims"])


def _playwright() -> Any:
    try:
        from playwright import sync_api
    except ImportError:
        raise Unavailable(
            "the web export's check runs the page in Chromium with Playwright: pip install playwright"
        ) from None
    return sync_api


def _launch(playwright: Any, sync_api: Any) -> Any:
    """Headless Chromium: SHIPYARD_CHROMIUM, a chromium on the PATH, else Playwright's own."""
    executable = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    try:
        return playwright.chromium.launch(executable_path=executable, args=args)
    except sync_api.Error as exc:
        reason = str(exc.message).splitlines()[0]
        raise Unavailable(
            f"no Chromium to run the web export's check ({reason}): install one (apt install chromium, or "
            f"playwright install chromium), or name it in {CHROMIUM_ENV}"
        ) from None


class _Files(http.server.SimpleHTTPRequestHandler):
    def guess_type(self, path: str | os.PathLike[str]) -> str:
        return media_type(os.fspath(path))

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the check's own requests: nothing to tell


@contextlib.contextmanager
def _serving(folder: Path) -> Iterator[str]:
    """The folder on a free port of 127.0.0.1, as any static server would serve it; its URL."""
    handler = functools.partial(_Files, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="web-export-files", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


TARGET = Web()
