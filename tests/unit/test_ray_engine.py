"""`shipyard serve --engine ray` without a cluster: its options, and the autoscaling policy's arithmetic
(Ray calls the policy with a context object; here one with the same fields). The replicas themselves
run in tests/integration/test_ray_serve.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from shipyard.errors import InvalidInput

ray_serve = pytest.importorskip("shipyard.engines.ray_serve", exc_type=ImportError)


@pytest.mark.parametrize(
    ("replicas", "autoscale", "expected"),
    [
        (None, None, ray_serve.Scaling(1)),
        (3, None, ray_serve.Scaling(3)),
        (None, "1:4", ray_serve.Scaling(1, (1, 4, 32.0))),
        (None, "2:8:16", ray_serve.Scaling(2, (2, 8, 16.0))),
    ],
)
def test_scaling_options(replicas: int | None, autoscale: str | None, expected: object) -> None:
    assert ray_serve.Scaling.parse(replicas, autoscale) == expected


@pytest.mark.parametrize("autoscale", ["4", "4:1", "0:2", "a:b", "1:2:0", "1:2:3:4"])
def test_bad_autoscale_is_refused(autoscale: str) -> None:
    with pytest.raises(InvalidInput, match="--autoscale"):
        ray_serve.Scaling.parse(None, autoscale)


def test_replicas_and_autoscale_do_not_mix() -> None:
    with pytest.raises(InvalidInput, match="not both"):
        ray_serve.Scaling.parse(2, "1:4")


def context(in_flight: list[float]) -> object:
    """What Ray passes the policy, with the fields it reads (Ray applies bounds and delays)."""
    return SimpleNamespace(
        aggregated_metrics={"in_flight": dict(enumerate(in_flight))},
        config=SimpleNamespace(target_ongoing_requests=10.0),
        policy_state={"kept": True},
    )


def test_the_policy_asks_for_the_replicas_the_requests_in_flight_need() -> None:
    assert ray_serve.in_flight_policy(context([18, 15])) == (4, {"kept": True})  # 33 in flight, 10 each
    assert ray_serve.in_flight_policy(context([3, 2]))[0] == 1
    assert ray_serve.in_flight_policy(context([]))[0] == 0  # no reports yet: Ray holds MIN


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "nope"], "--engine 'nope': choose local or ray"),
        (["--replicas", "2"], "--replicas, --autoscale and --address go with --engine ray"),
        (["--engine", "ray", "--autoscale", "3:1"], "--autoscale '3:1': needs 1 <= MIN <= MAX"),
        (["--engine", "ray", "--workers", "2"], "--workers is for --engine local; on Ray, say --replicas"),
    ],
)
def test_bad_engine_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shipyard", "--home", str(tmp_path), "serve", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SHIPYARD_HOME": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and done.stderr.startswith(f"error: {message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
