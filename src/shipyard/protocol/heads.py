"""The JSON headers of binary requests, remembered: a client of the binary tensor extension sends the
same header with every request of one shape (the names, shapes, datatypes and sizes of its tensors,
the outputs it wants), and only the bytes after it change. A header seen before is not parsed and
validated again: its layout is looked up by its bytes, and the request is its tensors' views over the
new body. Bounded, and filled only by headers that decoded without a fault, so a client that sends a
new header each time only pays the usual decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from shipyard.protocol.v2 import InferenceRequest, RequestedOutput

KEEP = 256
"""Headers remembered (the oldest forgotten first): far more than the shapes a deployment sees."""
LONGEST = 4096
"""Longer headers are not remembered: the cache holds at most KEEP x LONGEST bytes of them."""


@dataclass(frozen=True, slots=True)
class Layout:
    """A header's tensors: each input's name, dtype (little-endian), shape and bytes, in order."""

    inputs: tuple[tuple[str, np.dtype, tuple[int, ...], int], ...]
    tail: int
    """Bytes of tensor data after the header, all inputs together."""
    id: str | None
    outputs: list[RequestedOutput] | None
    """Shared by every request decoded from this header, as nothing changes a request's outputs."""
    binary_output: bool

    def tensors(self, tail: memoryview) -> dict[str, np.ndarray]:
        """The inputs: views over the data after the header."""
        inputs, offset = {}, 0
        for name, dtype, shape, size in self.inputs:
            inputs[name] = np.frombuffer(tail[offset : offset + size], dtype=dtype).reshape(shape)
            offset += size
        return inputs


class Heads:
    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._layouts: dict[bytes, Layout] = {}

    def find(self, head: bytes, tail: int) -> Layout | None:
        """The layout of a header seen before, when `tail` bytes of data follow it as they did then."""
        layout = self._layouts.get(head)
        return layout if layout is not None and layout.tail == tail else None

    def remember(self, head: bytes, request: InferenceRequest, sizes: list[int]) -> None:
        """Remember a decoded request's header; `sizes`: the bytes of each input's binary data (0 for
        one given as JSON, which is then not remembered: its values are part of the header)."""
        arrays = request.inputs.values()
        if (
            len(head) > LONGEST
            or 0 in sizes
            or any(a.dtype == object for a in arrays)
            or head in self._layouts
        ):
            return
        if len(self._layouts) >= self._keep:
            del self._layouts[next(iter(self._layouts))]
        self._layouts[head] = Layout(
            tuple(
                (name, a.dtype, a.shape, size)
                for (name, a), size in zip(request.inputs.items(), sizes, strict=True)
            ),
            sum(sizes),
            request.id,
            request.outputs,
            request.binary_output,
        )
