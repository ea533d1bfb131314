"""h2load (Debian: nghttp2-client) as a load generator for gRPC: a native client, so the Python server
is what is measured, not a Python client beside it. gRPC is HTTP/2 POSTs of length-prefixed messages
with `te: trailers`; h2load also speaks HTTP/1.1 (`--h1`), so HTTP is measured by the same client.

h2load counts HTTP statuses only (a gRPC error still comes with 200): check one call by a real gRPC
client before a run, as floor.py does.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass


@dataclass
class H2Result:
    requests_per_s: float
    succeeded: int
    failed: int
    mean_ms: float


def available() -> bool:
    return shutil.which("h2load") is not None


def grpc_frame(message: bytes) -> bytes:
    """A gRPC message on the wire: uncompressed flag, big-endian length, the bytes."""
    return b"\0" + struct.pack(">I", len(message)) + message


async def run(
    url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float, *, h1: bool = False
) -> H2Result:
    """Closed loop of `connections` clients, one request in flight each, for `seconds`."""
    with tempfile.NamedTemporaryFile(suffix=".body") as f:
        f.write(body)
        f.flush()
        args = ["-D", f"{seconds:g}", "-c", str(connections), "-m", "1", "-t", "1", "-d", f.name]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        process = await asyncio.create_subprocess_exec(
            "h2load", *(["--h1"] if h1 else []), *args, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out = (await process.communicate())[0].decode()
    return parse(out)


def parse(out: str) -> H2Result:
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    if rate is None or done is None:
        raise RuntimeError(f"h2load gave no result:\n{out[-2000:]}")
    mean_ms = _ms(mean.group(1)) if mean else 0.0
    return H2Result(float(rate.group(1)), int(done.group(1)), int(done.group(2)), mean_ms)


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    """h2load's durations ("812us", "1.35ms", "2.1s") in milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(found.group(1)) * UNITS_MS[found.group(2)] if found else 0.0
