"""A command's own peak RSS, read by a small launcher process that starts it.

Linux carries a process's peak over exec (the forked copy's high-water mark), so a command started
straight from a bench, which holds torch and its inputs, would report the bench's peak; started from
this small launcher, the command's peak is its own.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

LAUNCHER = """\
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", flush=True)
sys.exit(code)
"""


def run(command: list[str], env: dict[str, str], log: Path) -> tuple[int, float, str]:
    """Run `command`, its output to `log`: its peak RSS in KiB, its wall time, and its output on one
    line (a console may wrap its lines). A failure raises with the output's end."""
    with log.open("wb") as out:
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-c", LAUNCHER, *command], env=env, stdout=out, stderr=out)
        wall = time.perf_counter() - started
    text = " ".join(log.read_text(errors="replace").split())
    if code:
        raise RuntimeError(f"{command[0]} exited {code}: {text[-2000:]}")
    peak = re.search(r"peak_rss_kib=(\d+)", text)
    if peak is None:
        raise RuntimeError(f"the launcher printed no peak: {text[-2000:]}")
    return int(peak.group(1)), wall, text
