"""Read a joblib file's pickle opcodes without unpickling it, so a scanner can judge all of them.

joblib writes numpy arrays as raw bytes in the middle of the pickle stream (after each
`NumpyArrayWrapper`), and a plain pickle disassembler stops at the first array: whatever the file
references after it goes unseen. This module walks the opcodes with `pickletools.genops` (which
only parses), follows the stack far enough to read each wrapper's shape and dtype (pickle_ops.py),
skips the array bytes exactly as `joblib.load` reads them, and returns the opcodes as pickle streams
a scanner can read end to end. Nothing from the file is imported or called; anything it cannot
follow is refused.
"""

from __future__ import annotations

import bz2
import lzma
import math
import pickletools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from shipyard.convert.pickle_ops import UNKNOWN, Global, Machine, Made, Unscannable

_CHUNK = 1 << 20
_WRAPPER_NAMES = frozenset({"NumpyArrayWrapper", "NDArrayWrapper", "ZNDArrayWrapper"})
_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_REFCOUNT_FLAG = 1  # numpy's NPY_ITEM_REFCOUNT: the dtype holds Python objects

# joblib's own test, in its order (numpy_pickle_utils._detect_compressor): the file's first bytes
# name the compressor, so the scan reads exactly the bytes joblib.load would unpickle.
_OLD_PREFIX = b"ZF"  # joblib < 0.9.3
_PREFIXES = {
    "zlib": b"\x78",
    "gzip": b"\x1f\x8b",
    "bz2": b"BZ",
    "lzma": b"\x5d\x00",
    "xz": b"\xfd\x37\x7a\x58\x5a",
    "lz4": b"\x04\x22\x4d\x18",
}


def _decompressors() -> dict[str, Callable[[IO[bytes]], IO[bytes]]]:
    from joblib.compressor import BinaryGzipFile, BinaryZlibFile

    return {
        "zlib": lambda f: BinaryZlibFile(f, "rb"),
        "gzip": lambda f: BinaryGzipFile(f, "rb"),
        "bz2": lambda f: bz2.BZ2File(f, "rb"),
        "lzma": lambda f: lzma.LZMAFile(f, "rb"),
        "xz": lambda f: lzma.LZMAFile(f, "rb"),
    }


@contextmanager
def open_pickle(path: Path) -> Iterator[IO[bytes]]:
    """The pickle stream of a joblib or pickle file, decompressed as joblib.load would."""
    with path.open("rb") as raw:
        first = raw.read(max(len(p) for p in _PREFIXES.values()))
        raw.seek(0)
        if first.startswith(_OLD_PREFIX):
            raise Unscannable("it was written by joblib older than 0.9.3, a format shipyard cannot scan")
        kind = next((name for name, prefix in _PREFIXES.items() if first.startswith(prefix)), None)
        if kind is None:
            yield raw
            return
        opener = _decompressors().get(kind)
        if opener is None:
            raise Unscannable(f"it is compressed with {kind}, which shipyard cannot read to scan it")
        with opener(raw) as inner:
            yield inner


class _Recorder:
    """The stream genops reads, keeping every byte it reads except the arrays skipped over."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._pos = 0
        self.out = bytearray()

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._pos += len(data)
        self.out += data
        return data

    def readline(self) -> bytes:
        data = self._raw.readline()
        self._pos += len(data)
        self.out += data
        return data

    def tell(self) -> int:
        return self._pos

    def skip(self, n: int) -> bytes:
        """Read `n` bytes of array data, keeping only the last chunk (for the padding byte)."""
        data = b""
        while n > 0:
            data = self._raw.read(min(n, _CHUNK))
            if not data:
                raise Unscannable("the file ends inside an array")
            self._pos += len(data)
            n -= len(data)
        return data


def pickle_streams(stream: IO[bytes]) -> list[bytes]:
    """The file's pickle opcodes as whole pickles: the main one with array bytes cut out, then one
    per array of Python objects (joblib writes those as a nested pickle)."""
    recorder = _Recorder(stream)
    nested: list[bytes] = []
    try:
        _walk(recorder, nested, arrays=True)
    except Unscannable:
        raise
    except Exception as exc:  # genops raises ValueError for bad opcodes and truncated data
        raise Unscannable(f"it is not a pickle shipyard can read ({exc})") from None
    return [bytes(recorder.out), *nested]


def _walk(rec: _Recorder, nested: list[bytes], *, arrays: bool) -> None:
    """Follow one pickle to its STOP, stepping over the arrays joblib writes after each wrapper."""

    def on_build(machine: Machine, state: Any) -> bool:
        wrapper = _wrapper_class(machine.stack[-1])
        if wrapper is None:
            return False
        if not arrays:
            raise Unscannable("an object array holds a joblib array, which joblib never writes")
        _skip_array(rec, wrapper, state, nested)
        machine.stack[-1] = UNKNOWN  # joblib.load puts the array in the wrapper's place
        return True

    machine = Machine(on_build)
    # genops needs only read, readline and tell, which the recorder has
    for op, arg, _ in pickletools.genops(cast(IO[bytes], rec)):
        machine.step(op.name, arg)


def _wrapper_class(value: Any) -> Global | None:
    """The class of a joblib array wrapper this value would be, if it is one."""
    if not isinstance(value, Made):
        return None
    cls = value.func
    # protocols 0 and 1 build objects with copyreg._reconstructor(cls, object, None)
    if cls in _RECONSTRUCTORS and isinstance(value.args, tuple) and value.args:
        cls = value.args[0]
    return cls if isinstance(cls, Global) and cls.name in _WRAPPER_NAMES else None


_RECONSTRUCTORS = (Global("copy_reg", "_reconstructor"), Global("copyreg", "_reconstructor"))


def _skip_array(rec: _Recorder, wrapper: Global, state: Any, nested: list[bytes]) -> None:
    """Step over one array exactly as NumpyArrayWrapper.read_array reads it."""
    if (wrapper.module, wrapper.name) != _WRAPPER:
        raise Unscannable(
            f"it holds arrays as {wrapper.module}.{wrapper.name} (joblib < 0.10), too old a format"
        )
    if not isinstance(state, dict):
        raise Unscannable("a joblib array comes without its shape and dtype")
    shape = state.get("shape")
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise Unscannable(f"a joblib array has the shape {shape!r}, which is not a tuple of sizes")
    itemsize, has_objects = _dtype_size(state.get("dtype"))
    if has_objects:
        # joblib pickles an array of Python objects as a separate pickle right here
        outer, rec.out = rec.out, bytearray()
        _walk(rec, nested, arrays=False)
        nested.append(bytes(rec.out))
        rec.out = outer
        return
    if state.get("numpy_array_alignment_bytes") is not None:
        padding = rec.skip(1)[0]
        rec.skip(padding)
    rec.skip(math.prod(shape) * itemsize)


def _dtype_size(dtype: Any) -> tuple[int, bool]:
    """Item size and whether items are Python objects, from the dtype's pickled arguments.

    numpy pickles a dtype as `numpy.dtype(code, False, True)` plus a state tuple whose 6th field is
    the item size (-1 when the code fixes it) and 8th the flags; only the code is parsed by numpy.
    """
    ok = (
        isinstance(dtype, Made)
        and dtype.func == Global("numpy", "dtype")
        and isinstance(dtype.args, tuple)
        and bool(dtype.args)
        and isinstance(dtype.args[0], str)
    )
    if not ok:
        raise Unscannable("a joblib array's dtype is not one numpy pickles")
    try:
        base = np.dtype(dtype.args[0])
    except TypeError:
        raise Unscannable(f"a joblib array has the unknown dtype {dtype.args[0]!r}") from None
    state = dtype.state
    elsize, flags = -1, 0
    if isinstance(state, tuple) and len(state) >= 8:
        elsize, flags = state[5], state[7]
    if type(elsize) is not int or type(flags) is not int or elsize not in (-1, base.itemsize):
        raise Unscannable(f"a joblib array's dtype {dtype.args[0]!r} has an inconsistent size")
    return base.itemsize, base.hasobject or bool(flags & _REFCOUNT_FLAG)
