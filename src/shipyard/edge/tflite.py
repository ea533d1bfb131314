"""TensorFlow Lite (LiteRT): the model as a float32 .tflite, converted by onnx2tf and checked by the
LiteRT interpreter.

onnx2tf runs in a tool environment of its own (onnx2tf_env.py), in a subprocess: its pins (numpy 1.x,
protobuf 4.x, tensorflow 2.19) cannot live beside shipyard's. The inputs keep the ONNX model's shapes
(`-kat`: an NCHW picture input stays NCHW, an NHWC one stays NHWC) and the batch stays dynamic, so the
device feeds what the server is fed. onnx2tf lays 3-5D outputs out channels-last (a convolution's
[n, C, H, W] output comes out [n, H, W, C]); the manifest names such outputs (`channels_last_outputs`)
and the check transposes them back. The interpreter runs in shipyard's own environment
(`pip install 'shipyard[tflite]'`: ai-edge-litert needs only numpy, protobuf and flatbuffers)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from shipyard.convert.check import dims, real_inputs
from shipyard.edge import Built, Options, Ran, onnx2tf_env
from shipyard.edge.ort_mobile import median_run
from shipyard.errors import ConversionFailed, InvalidInput, Unavailable
from shipyard.registry import VersionRecord

MODEL = "model.tflite"
CONVERT_TIMEOUT_S = 600
INSTALL = "pip install 'shipyard[tflite]'"


class Tflite:
    def build(self, onnx_bytes: bytes, record: VersionRecord, folder: Path, options: Options) -> Built:
        if options.int8:  # TensorFlow's quantization is not optimize's: its numbers have no server twin
            raise InvalidInput("--int8 is for ort-mobile: the tflite export is float32")
        interpreter = _interpreter_class()  # before a conversion that would be for nothing without it
        model = onnx.load_model_from_string(onnx_bytes)
        graph_inputs = _graph_inputs(model)
        python = onnx2tf_env.python()
        versions = _versions(python)
        arguments = ["-n", "-kat", *graph_inputs]
        with tempfile.TemporaryDirectory(prefix="shipyard-tflite-") as tmp:
            source = Path(tmp) / "model.onnx"
            source.write_bytes(onnx_bytes)
            command = [str(python), "-m", "onnx2tf", "-i", str(source), "-o", str(Path(tmp) / "out")]
            _convert([*command, *arguments], Path(tmp), record, versions["version"])
            converted = Path(tmp) / "out" / "model_float32.tflite"
            if not converted.is_file():
                raise ConversionFailed(f"onnx2tf wrote no float32 .tflite for {record.ref}")
            (folder / MODEL).write_bytes(converted.read_bytes())
        loaded = interpreter(model_path=str(folder / MODEL))
        runner = loaded.get_signature_runner()
        names = _names(graph_inputs, list(runner.get_input_details()), record, "input")
        outputs = {o.name: o for o in model.graph.output}
        names |= _names(list(outputs), list(runner.get_output_details()), record, "output")
        details = runner.get_output_details()
        channels_last = [
            name
            for name, value in outputs.items()
            if _channels_last(_shape(value), [int(d) for d in details[names[name]]["shape_signature"]])
        ]
        extra: dict[str, Any] = {
            "converter": {"name": "onnx2tf", **versions, "arguments": arguments},
            "tflite_names": names,
            "channels_last_outputs": channels_last,
        }
        return Built(MODEL, None, _operators(loaded), extra)

    def run(self, folder: Path, built: Built, inputs: dict[str, np.ndarray], outputs: list[str]) -> Ran:
        interpreter = _interpreter_class()
        import ai_edge_litert

        names: dict[str, str] = built.extra["tflite_names"]
        channels_last = set(built.extra["channels_last_outputs"])
        started = time.perf_counter()
        # one thread, as a phone's model runs on a core or two; XNNPACK, as LiteRT does by default
        with _quiet_stderr():
            loaded = interpreter(model_path=str(folder / built.model_file), num_threads=1)
            loaded.allocate_tensors()  # where LiteRT applies XNNPACK: part of loading, as in an app
        runner = loaded.get_signature_runner()
        load_s = time.perf_counter() - started

        def answer(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            found = runner(**{names[name]: array for name, array in feeds.items()})
            return [
                _channels_first(found[names[n]]) if n in channels_last else found[names[n]] for n in outputs
            ]

        found = answer(inputs)
        one = {name: array[:1] for name, array in inputs.items()}
        return Ran(found, load_s, median_run(lambda: answer(one)), f"LiteRT {ai_edge_litert.__version__}")


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise Unavailable(f"the tflite target checks with the LiteRT interpreter: {INSTALL}") from None
    return Interpreter


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """LiteRT's C++ core prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to the
    process's stderr when the first interpreter of a process allocates: not a line for the user."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _versions(python: Path) -> dict[str, str]:
    """onnx2tf's and TensorFlow's versions in the tool environment (also: that onnx2tf is there)."""
    probe = "import importlib.metadata as m; print(m.version('onnx2tf'), m.version('tensorflow'))"
    try:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{python} does not run ({exc}): the tflite target converts with it") from None
    if done.returncode != 0:
        raise Unavailable(
            f"{python} has no onnx2tf ({onnx2tf_env.last_line(done.stderr)}): unset "
            f"{onnx2tf_env.ENV_PYTHON} to let shipyard make its own environment, or install "
            f"onnx2tf=={onnx2tf_env.ONNX2TF} there"
        )
    onnx2tf, tensorflow = done.stdout.split()
    return {"version": onnx2tf, "tensorflow": tensorflow}


def _convert(command: list[str], cwd: Path, record: VersionRecord, version: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")},
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "",  # a conversion needs no accelerator: never probe one
    }
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise ConversionFailed(
            f"onnx2tf {version} did not convert {record.ref} within {CONVERT_TIMEOUT_S} s"
        ) from None
    if done.returncode != 0:
        reason = onnx2tf_env.last_line(done.stdout + "\n" + done.stderr)
        raise ConversionFailed(f"onnx2tf {version} cannot convert {record.ref} to TensorFlow Lite: {reason}")


def _graph_inputs(model: onnx.ModelProto) -> list[str]:
    return [value.name for value in real_inputs(model)]


def _names(onnx_names: list[str], tflite: list[str], record: VersionRecord, kind: str) -> dict[str, str]:
    """Each ONNX name's tensor in the .tflite's signature: the same name, else the same once what
    TensorFlow does not allow in a name is left out ("onnx::Gemm_0" is "onnx____Gemm_0" there)."""

    def plain(name: str) -> str:
        return re.sub(r"[^0-9A-Za-z]", "", name)

    found = {}
    for name in onnx_names:
        if name in tflite:
            found[name] = name
            continue
        like = [t for t in tflite if plain(t) == plain(name)]
        if len(onnx_names) == len(tflite) == 1:
            like = tflite
        if len(like) != 1:
            raise ConversionFailed(
                f"the .tflite of {record.ref} has no {kind} to match {name!r} (it has {', '.join(tflite)})"
            )
        found[name] = like[0]
    return found


def _shape(value: onnx.ValueInfoProto) -> list[int]:
    return list(dims(value))


def _channels_last(onnx_shape: list[int], tflite_shape: list[int]) -> bool:
    """Whether onnx2tf laid this output out channels-last ([n, C, H, W] as [n, H, W, C]). Where both
    layouts fit the shapes (C == H == W), channels-last is onnx2tf's own rule for 3-5D tensors."""

    def fits(a: list[int], b: list[int]) -> bool:
        return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))

    if not 3 <= len(onnx_shape) <= 5 or len(tflite_shape) != len(onnx_shape):
        return False
    moved = [onnx_shape[0], *onnx_shape[2:], onnx_shape[1]]
    return fits(moved, tflite_shape) and (not fits(onnx_shape, tflite_shape) or moved == onnx_shape)


def _channels_first(array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, -1, 1)


def _operators(interpreter: Any) -> list[str]:
    """The .tflite's builtin operators, most used first."""
    from collections import Counter

    counts = Counter(str(op["op_name"]) for op in interpreter._get_ops_details())
    return [op for op, _ in counts.most_common()]


TARGET = Tflite()
