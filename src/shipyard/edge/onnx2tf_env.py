"""The tool environment the tflite target converts in: onnx2tf and the TensorFlow it pins, in a virtual
environment of its own, because onnx2tf pins exact versions of numpy (1.x), protobuf (4.x), onnx,
onnxruntime and tensorflow that cannot live beside shipyard's.

It is made once, on the first tflite export (about 2.6 GB; under a minute from a nearby package index,
a few minutes from pypi.org), under `$SHIPYARD_HOME/tools/onnx2tf-<version>/`, and reused; or ahead of
time:

    python -m shipyard.edge.onnx2tf_env [--root DIR]

SHIPYARD_ONNX2TF_PYTHON names a Python that already has onnx2tf instead (then nothing is made).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from shipyard.errors import Unavailable

ONNX2TF = "1.29.24"
REQUIREMENTS = (
    f"onnx2tf=={ONNX2TF}",  # pins numpy, onnx, onnxruntime, tensorflow 2.19.0, tf-keras, protobuf, ...
    "keras==3.15.1",  # the one TensorFlow leaves open (>=3.5): the version these exports were checked with
)
"""What the tool environment holds: the one place the converter's versions are pinned."""
ENV_PYTHON = "SHIPYARD_ONNX2TF_PYTHON"
INSTALL_TIMEOUT_S = 1800
STAMP = ".shipyard-tools"
"""Written last into a finished environment, with REQUIREMENTS: a folder without it is remade."""

log = logging.getLogger(__name__)


def default_root() -> Path:
    from shipyard.config import Settings

    return Settings().home_dir / "tools"


def location(root: Path) -> Path:
    return root / f"onnx2tf-{ONNX2TF}"


def python_in(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def python() -> Path:
    """The Python that converts: SHIPYARD_ONNX2TF_PYTHON, else the managed environment (made now if it
    is not there yet)."""
    given = os.environ.get(ENV_PYTHON)
    if given:
        if not Path(given).is_file():
            raise Unavailable(f"{ENV_PYTHON}={given} is not a file: name a Python that has onnx2tf")
        return Path(given)
    return ensure(default_root())


def ensure(root: Path) -> Path:
    """The managed environment's Python under `root`, made first when missing or unfinished."""
    root = root.expanduser().absolute()
    env = location(root)
    if _finished(env):
        return python_in(env)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{env.name}.lock"):
        if not _finished(env):  # another process may have made it while this one waited
            _create(env)
    return python_in(env)


def _finished(env: Path) -> bool:
    stamp = env / STAMP
    return stamp.is_file() and stamp.read_text().split() == list(REQUIREMENTS)


def _create(env: Path) -> None:
    log.warning(
        "making the tflite converter's environment (onnx2tf %s with TensorFlow, about 2.6 GB, once) in %s",
        ONNX2TF,
        env,
    )
    started = time.monotonic()
    shutil.rmtree(env, ignore_errors=True)
    try:
        _step([sys.executable, "-m", "venv", str(env)], "python -m venv")
        install = [str(python_in(env)), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        _step([*install, *REQUIREMENTS], "pip install " + " ".join(REQUIREMENTS))
    except BaseException:
        shutil.rmtree(env, ignore_errors=True)  # a half-made environment is gigabytes of nothing
        raise
    (env / STAMP).write_text("\n".join(REQUIREMENTS) + "\n")
    log.warning("made %s in %.0f s", env, time.monotonic() - started)


def _step(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Unavailable(
            f"{what} did not finish in {INSTALL_TIMEOUT_S} s: the tflite converter's environment is not "
            f"made (or set {ENV_PYTHON} to a Python that has onnx2tf=={ONNX2TF})"
        ) from None
    if done.returncode != 0:
        raise Unavailable(
            f"{what} failed ({last_line(done.stdout + done.stderr)}): the tflite converter's environment "
            f"is not made (or set {ENV_PYTHON} to a Python that has onnx2tf=={ONNX2TF})"
        )


def last_line(output: str) -> str:
    """The last line of a tool's output that says something: pip's and onnx2tf's errors, not the
    logging of TensorFlow's C++ core ("W0000 00:00:...") nor a traceback's frames."""
    lines = [_plain(line) for line in output.splitlines()]
    lines = [line for line in lines if line and not _noise(line)]
    errors = [line for line in lines if line.startswith(("ERROR:", "error:"))]
    found = (errors or lines or ["no output"])[-1]
    return found.removeprefix("ERROR:").removeprefix("error:").strip()


def _plain(line: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", line).strip()


def _noise(line: str) -> bool:
    import re

    return bool(
        re.match(r"[IWEF]\d{4} \d\d:\d\d:", line)  # absl logging from TensorFlow's C++ core
        or line.startswith(
            ("File ", "Traceback ", "^", "~", "WARNING: All log messages", "WARNING: Location")
        )
        or line.startswith(("warnings.warn", "Hint:", "note:"))
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One process makes the environment; another waits for it."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock (two first exports at once would both build it)
        yield
        return
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m shipyard.edge.onnx2tf_env",
        description="Make the environment the tflite target converts in (once), and print its Python.",
    )
    parser.add_argument(
        "--root", type=Path, help="The folder to make it under (default $SHIPYARD_HOME/tools)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(ensure(args.root or default_root()))
    except Unavailable as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
