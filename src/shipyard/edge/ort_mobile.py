"""ONNX Runtime Mobile: the model in ORT format (.ort, what ORT's mobile and minimal builds load), with
the operator config a reduced-size build of ONNX Runtime takes (--include_ops_by_config), optionally
with int8 weights (optimize's dynamic quantization). Checked by ONNX Runtime itself on the .ort file."""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from shipyard import customops
from shipyard.convert.check import first_line
from shipyard.edge import Built, Options, Ran
from shipyard.errors import ConversionFailed
from shipyard.registry import VersionRecord

MODEL = "model.ort"
CONFIG = "required_operators.config"


class OrtMobile:
    def build(self, onnx_bytes: bytes, record: VersionRecord, folder: Path, options: Options) -> Built:
        from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

        extra: dict[str, object] = {}
        quantized = None
        if options.int8:
            from shipyard.optimize.quantize_dynamic import int8

            model, used = int8(onnx.load_model_from_string(onnx_bytes))
            quantized = onnx_bytes = model.SerializeToString()
            extra["int8"] = used
        with tempfile.TemporaryDirectory(prefix="shipyard-ort-") as tmp:
            source = Path(tmp) / "model.onnx"
            source.write_bytes(onnx_bytes)
            quiet = io.StringIO()
            # its module logs "Created config in ..." on a logger it sets to DEBUG when imported
            logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
            try:
                with (
                    contextlib.redirect_stdout(quiet),
                    contextlib.redirect_stderr(quiet),
                    warnings.catch_warnings(),
                ):
                    warnings.simplefilter("ignore", ResourceWarning)  # the converter leaves its file open
                    convert_onnx_models_to_ort(source, Path(tmp) / "out", [OptimizationStyle.Fixed])
                    gc.collect()  # ... closed here, with its warning ignored
            except Exception as exc:  # the converter raises what ORT raises
                raise ConversionFailed(
                    f"ONNX Runtime cannot convert {record.ref} to ORT format: {exc}"
                ) from None
            converted = next((Path(tmp) / "out").glob("*.ort"), None)
            config = next((Path(tmp) / "out").glob("*.config"), None)
            if converted is None or config is None:
                raise ConversionFailed(
                    f"ONNX Runtime wrote no ORT model for {record.ref}: {quiet.getvalue()[-300:]}"
                )
            (folder / MODEL).write_bytes(converted.read_bytes())
            (folder / CONFIG).write_bytes(config.read_bytes())
        extra["operator_config"] = CONFIG
        return Built(MODEL, quantized, _operators((folder / CONFIG).read_text()), extra)

    def run(self, folder: Path, built: Built, inputs: dict[str, np.ndarray], outputs: list[str]) -> Ran:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a phone's model runs on one core or two: time it so
        options.log_severity_level = 3
        model = folder / built.model_file
        customops.register(options, model.read_bytes(), "export")
        started = time.perf_counter()
        try:
            session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            load_s = time.perf_counter() - started
            found = list(session.run(outputs, inputs))
        except Exception as exc:  # ORT raises its own unexported types
            raise ConversionFailed(f"ONNX Runtime cannot run the ORT file: {first_line(exc)}") from None
        one = {name: array[:1] for name, array in inputs.items()}
        return Ran(
            found, load_s, median_run(lambda: session.run(outputs, one)), f"onnxruntime {ort.__version__}"
        )


def _operators(config: str) -> list[str]:
    """The operators of a reduced build's config ("ai.onnx;13;Cast,Gemm" lines), as they run."""
    found = []
    for line in config.splitlines():
        if line.strip() and not line.startswith("#"):
            domain, _, ops = line.split(";", 2)
            found += [op if domain == "ai.onnx" else f"{domain}:{op}" for op in ops.split(",")]
    return found


def median_run(run: Callable[[], object], repeat: int = 50) -> float:
    """The median time of `run`, after one run not counted."""
    run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


TARGET = OrtMobile()
