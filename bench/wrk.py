"""wrk as a load generator for thousands of connections (a Python client cannot hold them on one core),
with a Lua script that counts answers by status: under overload, a 503 is not a served request."""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

# Counters live in each wrk thread's own Lua state; done() runs in the main state and collects them
# through the thread objects that setup() kept. One JSON line, so nothing has to parse wrk's text.
LUA = """
wrk.method = "POST"
local f = assert(io.open(%(body)s, "rb"))
wrk.body = f:read("*a")
f:close()
%(headers)s
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {}; bare_503 = 0 end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and not (headers["retry-after"] or headers["Retry-After"]) then bare_503 = bare_503 + 1 end
end
function done(summary, latency, requests)
  local counts, bare = {}, 0
  for _, t in ipairs(threads) do
    bare = bare + t:get("bare_503")
    for status, n in pairs(t:get("statuses")) do counts[status] = (counts[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(counts) do table.insert(parts, string.format('"%%d": %%d', status, n)) end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"duration_us": %%d, "requests": %%d, "statuses": {%%s}, "bare_503": %%d, "connect": %%d, "read": %%d, '
    .. '"write": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.duration, summary.requests, table.concat(parts, ", "), bare, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass
class WrkResult:
    """One wrk run. Latency percentiles are over every answer, whatever its status."""

    connections: int
    seconds: float
    requests: int
    statuses: dict[int, int] = field(default_factory=dict)
    busy_without_retry_after: int = 0  # a 503 should say when to come back
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    p50_ms: float = math.nan
    p90_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan

    @property
    def ok_per_s(self) -> float:
        return self.statuses.get(200, 0) / self.seconds

    @property
    def busy_per_s(self) -> float:
        return self.statuses.get(503, 0) / self.seconds

    @property
    def other_statuses(self) -> dict[int, int]:
        return {s: n for s, n in self.statuses.items() if s not in (200, 503)}

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["statuses"] = {str(k): v for k, v in self.statuses.items()}
        return {**d, "ok_per_s": self.ok_per_s, "busy_per_s": self.busy_per_s}


def available() -> bool:
    return shutil.which("wrk") is not None


def script(body: bytes, headers: dict[str, str], folder: Path) -> Path:
    """A wrk Lua script that POSTs `body` with `headers` and counts statuses."""
    body_file = folder / "body.bin"
    body_file.write_bytes(body)
    lines = "\n".join(f"wrk.headers[{_lua(k)}] = {_lua(v)}" for k, v in headers.items())
    path = folder / "post.lua"
    path.write_text(LUA % {"body": _lua(str(body_file)), "headers": lines})
    return path


def _lua(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def run(
    url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float, timeout_s: float
) -> WrkResult:
    """`wrk -t1`: one thread, so the other core stays with the server. Answers slower than `timeout_s`
    are counted as timeouts (wrk keeps them out of its latency histogram)."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        lua = script(body, headers, Path(tmp))
        command = [
            "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", f"--timeout={timeout_s:g}s", "--latency",
            "-s", str(lua), url,
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await process.communicate()
    return parse(out.decode(errors="replace"), process.returncode, connections)


def parse(text: str, returncode: int | None, connections: int) -> WrkResult:
    """The run's result from wrk's output (the line LUA's done() writes)."""
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({returncode}):\n{text[-2000:]}")
    doc = orjson.loads(line.removeprefix("WRK_RESULT "))
    return WrkResult(
        connections=connections,
        seconds=doc["duration_us"] / 1e6,
        requests=doc["requests"],
        statuses={int(k): v for k, v in doc["statuses"].items()},
        busy_without_retry_after=doc["bare_503"],
        connect_errors=doc["connect"],
        read_errors=doc["read"],
        write_errors=doc["write"],
        timeouts=doc["timeout"],
        **(
            {f"{p}_ms": doc[f"{p}_us"] / 1000 for p in ("p50", "p90", "p99", "max")}
            if doc["requests"]
            else {}
        ),
    )
