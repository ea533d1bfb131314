"""`make demo` as a user runs it in a terminal: on ports given by PORT and GRPC_PORT, twice, ended
with Ctrl-C each time. The curl line it prints must answer, Ctrl-C must end it with exit 0 and no
server left behind, and the second run must reuse the model the first one registered."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
READY = b"Ctrl-C stops the server"


def run_in_terminal(
    env: dict[str, str], timeout_s: float = 300, serving: Callable[[str], None] | None = None
) -> tuple[str, int]:
    """`make demo` in a pseudo-terminal; Ctrl-C typed once the demo says it is serving (and `serving`
    has run, given what the demo printed)."""
    main, terminal = os.openpty()
    make = subprocess.Popen(
        ["make", "--no-print-directory", "demo"],
        cwd=ROOT,
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        # the pty becomes make's controlling terminal, as a login shell's terminal is
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    # This end of the terminal stays open here until everything is read: were it closed, Linux could
    # report the terminal gone (EIO) before handing over the last lines written to it ("stopped").
    out = b""
    pressed = False
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and make.poll() is None:
            if select.select([main], [], [], 1)[0]:
                out += os.read(main, 65536)
            if not pressed and READY in out:
                if serving is not None:
                    serving(out.decode(errors="replace"))
                os.write(main, b"\x03")
                pressed = True
        status = make.wait(timeout=60)
        while select.select([main], [], [], 1)[0]:  # what is still on its way, until a quiet second
            out += os.read(main, 65536)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        os.close(terminal)
        os.close(main)
    return out.decode(errors="replace").replace("\r\n", "\n"), status


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_make_demo_twice_ends_with_ctrl_c(tmp_path: Path) -> None:
    if shutil.which("make") is None or not (ROOT / ".venv" / "bin" / ".installed").exists():
        pytest.skip("make demo runs in the project's .venv (make test makes it)")
    port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "MAKE", "MFLAGS"))}
    env.update(SHIPYARD_HOME=str(tmp_path / "home"), PORT=str(port), GRPC_PORT=str(grpc_port))
    pages: list[tuple[str, int, str]] = []

    def open_page(printed: str) -> None:  # the browser page it prints (tests/integration/test_edge_web.py)
        url = re.findall(r"http://127\.0\.0\.1:\d+/edge/[\w-]+/", printed)[-1]
        page, model = httpx.get(url, timeout=60), httpx.get(url + "model.json", timeout=60)
        pages.append((url, page.status_code, model.json()["model"]))

    for run in (1, 2):
        out, status = run_in_terminal(env, serving=open_page)
        assert status == 0, out
        assert f"gRPC on 127.0.0.1:{grpc_port}" in out and "stopped" in out
        url = f"http://127.0.0.1:{port}/edge/digits-pictures/"
        assert pages == [(url, 200, "digits-pictures")] * run, out  # the page it printed, served
        answers = [json.loads(found) for found in re.findall(r"-> (\{.*\})", out)]
        assert [a["model"] for a in answers] == ["digits", "digits-pictures"], out  # numbers, then a PNG
        assert [a["class"] for a in answers] == ["7", "7"], out
        assert not listening(port) and not listening(grpc_port), "Ctrl-C left the server running"
        if run == 2:
            assert "digits:1 already holds this model" in out, out
            assert "digits-pictures:1 already holds this model" in out, out
    shown = subprocess.run(
        [sys.executable, "-m", "shipyard", "model", "show", "digits:latest", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shown.stdout)["version"] == 1
