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


def context(in_flight: list[float], current: int, now: float = 100.0, state: dict | None = None) -> object:
    """What Ray passes the policy, with the fields it reads."""
    return SimpleNamespace(
        aggregated_metrics={"in_flight": dict(enumerate(in_flight))},
        config=SimpleNamespace(target_ongoing_requests=10.0),
        capacity_adjusted_min_replicas=1,
        capacity_adjusted_max_replicas=4,
        current_num_replicas=current,
        policy_state=state or {},
        current_time=now,
    )


def test_the_policy_scales_up_at_once_to_the_load() -> None:
    assert ray_serve.in_flight_policy(context([18, 15], current=2))[0] == 4  # 33 in flight, 10 each
    assert ray_serve.in_flight_policy(context([80, 80], current=2))[0] == 4  # at most MAX
    assert ray_serve.in_flight_policy(context([], current=1))[0] == 1  # no reports yet: at least MIN


def test_the_policy_scales_down_only_once_the_load_stayed_low() -> None:
    wanted, state = ray_serve.in_flight_policy(context([2, 1], current=3, now=100.0))
    assert wanted == 3 and state["low_since"] == 100.0
    wanted, state = ray_serve.in_flight_policy(context([2, 1], current=3, now=130.0, state=state))
    assert wanted == 3
    after = 100.0 + ray_serve.DOWNSCALE_AFTER_S
    wanted, _ = ray_serve.in_flight_policy(context([2, 1], current=3, now=after, state=state))
    assert wanted == 1
    # load back in between: the wait starts again
    _, state = ray_serve.in_flight_policy(context([20, 20], current=3, now=140.0, state=state))
    assert "low_since" not in state


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
