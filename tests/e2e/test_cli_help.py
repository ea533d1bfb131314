"""Every `--help` of the CLI as a user reads it, and the server the CLI talks to when none is named.

Each command and group is found by walking the command tree (so a new one is checked without being
listed here) and its help rendered as a wide terminal shows it: every argument and option described,
every value a placeholder in one style, switches shown as switches.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from shipyard.cli import app

# One style: upper-case words, as FILE, NAME[:VERSION], MICROSECONDS.
PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*(\[?:[A-Z_]+\]?)*")
# typer's own type display: `<bool>` beside a switch, `<path>`, `<list[str]>`, `<int range>`
TYPE_TAG = re.compile(r"<(bool|str|int|float|path|file|dir|list|choice|text|uuid|datetime)\b")
WIDE = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def _walk(
    command: typer.core.TyperGroup | typer.core.TyperCommand, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], typer.core.TyperGroup | typer.core.TyperCommand]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


COMMANDS = dict(_walk(typer.main.get_command(app), ()))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env=WIDE, prog_name="shipyard")
    assert result.exit_code == 0, result.output
    return result.output


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"", "serve", "deploy", "model", "model import", "monitor status", "token create"} <= names
    assert len(names) > 20


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "shipyard")
def test_every_parameter_is_described_with_a_placeholder_in_one_style(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    out = _help(path)
    assert "<bool>" not in out and "BOOLEAN" not in out
    assert not TYPE_TAG.search(out), TYPE_TAG.search(out)
    ctx = command.make_context("shipyard", [], resilient_parsing=True)
    for param in command.get_params(ctx):
        what = f"{' '.join(path)} {param.name}"
        if getattr(param, "hidden", False):  # plumbing between commands (batch run --schedule), not shown
            continue
        assert (param.help or "").strip(), f"{what} has no help"
        if param.param_type_name == "argument":
            assert param.metavar and PLACEHOLDER.fullmatch(param.metavar), what
            assert param.metavar in out, what
        elif param.is_flag:
            assert param.metavar is None, f"{what} is a switch: it takes no value"
            assert re.search(rf"{re.escape(param.opts[0])}\s{{2,}}", out), f"{what} shows a value"
        else:
            assert param.metavar and PLACEHOLDER.fullmatch(param.metavar), what
            assert re.search(rf"{re.escape(param.opts[0])}\s.*{re.escape(param.metavar)}", out), what


@pytest.mark.parametrize(
    "path",
    [p for p, c in COMMANDS.items() if hasattr(c, "commands")],
    ids=lambda p: " ".join(p) or "shipyard",
)
def test_every_group_lists_its_commands_with_one_line_each(path: tuple[str, ...]) -> None:
    out = _help(path)
    for name, sub in COMMANDS[path].commands.items():  # type: ignore[union-attr]
        first = (sub.help or "").strip().split("\n\n")[0]
        assert first and "\n" not in first, f"{name}: the listing shows the first paragraph, one line"
        assert re.search(rf"^\W*{name}\s+{re.escape(first[:40])}", out, re.M), f"{name} not listed"


def test_defaults_and_environment_variables_are_shown() -> None:
    serve = _help(("serve",))
    assert "[env var: SHIPYARD_PORT] [default: 8000]" in serve
    assert "[default: 32]" in serve and "--grpc" in serve and "--no-grpc" in serve
    assert "[env var: SHIPYARD_HOME] [default: ~/.shipyard]" in _help(())
    assert "[env var: SHIPYARD_SERVER]" in _help(("deploy",))
    status = _help(("monitor", "status"))
    assert "[env var: SHIPYARD_SERVER] [default: http://127.0.0.1:8000]" in status
    imported = _help(("model", "import"))
    assert "Usage: shipyard model import [OPTIONS] FILE" in imported
    framework = "--framework            FRAMEWORK  What the file holds: onnx, torchscript, sklearn, keras,"
    assert framework in imported


def _shipyard(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},  # tests/conftest.py leaves SHIPYARD_SERVER unset
    )


@pytest.fixture
def closed_url() -> Iterator[str]:
    """A loopback port bound but not listening: a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_shipyard_server_is_the_server_when_no_server_is_given(tmp_path: Path, closed_url: str) -> None:
    status = _shipyard(tmp_path, "monitor", "status", SHIPYARD_SERVER=closed_url)
    assert status.returncode == 1
    assert status.stderr.startswith(f"error: cannot reach the server at {closed_url}")

    deploy = _shipyard(tmp_path, "deploy", "digits:2", SHIPYARD_SERVER=closed_url)
    assert deploy.returncode == 1
    assert deploy.stderr.startswith(f"error: cannot reach the server at {closed_url}")
    registry = _shipyard(tmp_path, "deploy", "digits:2")  # without it: the registry
    assert registry.returncode == 1 and registry.stderr == "error: no model named 'digits'\n"

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        named = f"http://127.0.0.1:{other.getsockname()[1]}"
        given = _shipyard(tmp_path, "monitor", "status", "--server", named, SHIPYARD_SERVER=closed_url)
    assert given.stderr.startswith(f"error: cannot reach the server at {named}")
