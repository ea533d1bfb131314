"""Every `$` command of README.md and then docs/*.md, run verbatim and in order from one fresh shell,
in a fresh folder and SHIPYARD_HOME, with its output checked against the text the page shows.

What may differ between runs is masked on both sides: times, hashes, ids and token secrets, the
user's name, the ports (a page says 8000 and 8001; the test serves on free ones), the figures of
lines that report speed, and the width of tables. Other numbers must match: integers exactly,
measured decimals (accuracy, confidence, differences) to 2%. A command may fail only where the page
shows its `error:` line.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DONE = "@@shipyard-docs-step-done@@"
STEP_TIMEOUT_S = 300


@dataclass
class Step:
    """One `$` command of a page and the output shown under it."""

    where: str
    command: str
    expected: list[str]

    @property
    def background(self) -> bool:
        return re.search(r"&\s*(#.*)?$", self.command) is not None


def steps(page: Path) -> list[Step]:
    """The commands of a page's ```console blocks, continuation lines joined as the shell joins them."""
    found: list[Step] = []
    in_console = False
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("```"):
            in_console = line.strip() == "```console"
            continue
        if not in_console:
            continue
        if line.startswith("$ "):
            where = f"{page.name}:{i}"
            command = line[2:]
            while command.endswith("\\") and i < len(lines):
                command += "\n" + lines[i]
                i += 1
            found.append(Step(where, command, []))
        elif found:
            found[-1].expected.append(line)
    return found


class Shell:
    """One bash process the steps are typed into, as a user types them into a terminal."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # background jobs share its process group: one kill ends all
        )
        self.pending = b""

    def run(self, command: str) -> tuple[list[str], int]:
        assert self.proc.stdin is not None
        # the blank echo puts the marker on a line of its own after output without a final newline
        self.proc.stdin.write(f"{command}\nstatus=$?; echo; echo {DONE} $status\n".encode())
        self.proc.stdin.flush()
        lines: list[str] = []
        while True:
            line = self.readline(time.monotonic() + STEP_TIMEOUT_S)
            if line is None:
                raise AssertionError(f"no end of {command!r} within {STEP_TIMEOUT_S} s: {lines}")
            if line.startswith(DONE):
                while lines and not lines[-1].strip():
                    lines.pop()
                return lines, int(line.split()[1])
            lines.append(line)

    def read(self, count: int) -> list[str]:
        """Lines a background job prints after its command returned (a server's start lines)."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        lines: list[str] = []
        while len(lines) < count:
            line = self.readline(deadline)
            if line is None:
                break
            if line.strip():
                lines.append(line)
        return lines

    def readline(self, deadline: float) -> str | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode(errors="replace")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


MASKS = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}"), "<time>"),
    (re.compile(r"shp_[\w-]+"), "<token>"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<hex>"),
]
TIMED = re.compile(r"latency|samples/s|rows/s|\bms\b|faster|slower|threads")
VARIES = re.compile(r"sparsity|logits diff")
"""Figures of a model trained by the tour: its weights differ in their last bits from one CPU to
another (torch's kernels), and so does what int8 makes of them; accuracy does not."""
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def normalize(line: str, ports: dict[str, str]) -> str:
    for page_port, port in ports.items():
        line = re.sub(rf"(?<=[:=\s]){page_port}\b", port, line)
    for pattern, mask in MASKS:
        line = pattern.sub(mask, line)
    if TIMED.search(line) or VARIES.search(line):
        line = re.sub(r"\d[\d.,]*x (faster|slower)|same speed", "<ratio>", line)
        line = NUMBER.sub("<n>", line)
    line = re.sub(r"([━─═])\1+", r"\1", line)  # table rules as wide as their columns
    return re.sub(r"\s+", " ", line).strip()


def same(shown: str, got: str) -> bool:
    """Text equal, integers equal, decimals within 2% (or 1e-4 for tiny differences)."""
    a, b = NUMBER.split(shown), NUMBER.split(got)
    na, nb = NUMBER.findall(shown), NUMBER.findall(got)
    if a != b or len(na) != len(nb):
        return False
    for x, y in zip(na, nb, strict=True):
        if x == y:
            continue
        if not re.search(r"[.e]", x + y):
            return False
        fx, fy = float(x.replace(",", "")), float(y.replace(",", ""))
        if abs(fx - fy) > max(0.02 * max(abs(fx), abs(fy)), 1e-4):
            return False
    return True


def check(step: Step, got: list[str], ports: dict[str, str]) -> None:
    user = getpass.getuser()
    shown = [normalize(line, ports) for line in step.expected if line.strip()]
    actual = [normalize(line.replace(user, "root"), ports) for line in got if line.strip()]
    ok = len(shown) == len(actual) and all(same(s, a) for s, a in zip(shown, actual, strict=True))
    if not ok:
        raise AssertionError(
            f"{step.where}: $ {step.command}\n--- the page shows:\n"
            + "\n".join(step.expected)
            + "\n--- it printed:\n"
            + "\n".join(got)
        )


@pytest.mark.slow
def test_pages_run_verbatim(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").exists():
        pytest.skip("the docs' commands run in the project's virtual environment (make test makes it)")
    folder = tmp_path / "work"
    folder.mkdir()
    # what a fresh clone holds, where the pages expect it: the examples and the virtual environment
    (folder / "examples").symlink_to(ROOT / "examples")
    (folder / ".venv").symlink_to(venv)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SHIPYARD_", "VIRTUAL_ENV", "PYTHON"))
    }
    ports = {"8000": str(free_port()), "8001": str(free_port())}
    env.update(
        SHIPYARD_HOME=str(tmp_path / "home"),
        SHIPYARD_PORT=ports["8000"],
        SHIPYARD_GRPC_PORT=ports["8001"],
        COLUMNS="120",
        PYTHONUNBUFFERED="1",
    )
    shell = Shell(folder, env)
    try:
        for step in [step for page in PAGES for step in steps(page)]:
            command = step.command
            for page_port, port in ports.items():
                command = re.sub(rf"(?<=[:=\s]){page_port}\b", port, command)
            got, status = shell.run(command)
            if step.background:
                got += shell.read(len([line for line in step.expected if line.strip()]) - len(got))
            failing = bool(step.expected) and step.expected[0].startswith("error:")
            assert (status != 0) == failing, f"{step.where}: $ {step.command} exited {status}:\n" + "\n".join(
                got
            )
            check(step, got, ports)
    finally:
        shell.close()
