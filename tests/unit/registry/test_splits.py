"""Traffic splits in the registry (migration 0008): an alias shares its traffic among versions, every
change recorded in the history; a deploy, a rollback or deleting a version in it ends the split."""

from __future__ import annotations

import pytest

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.registry import Registry
from shipyard.rollout.router import Split
from shipyard.signature import Signature, TensorSpec
from tests.conftest import migrated_down_and_up, register_digits, registry_on_every_engine
from tests.models import digits_linear

registry = registry_on_every_engine()


@pytest.fixture
def digits(registry: Registry) -> Registry:
    """digits 1 in production, 2 and 3 beside it."""
    for _ in range(3):
        register_digits(registry)
    registry.deploy("digits", 1)
    return registry


def split_events(registry: Registry) -> list[tuple[int | None, str, str]]:
    return [(e.version, e.detail, e.reason) for e in registry.history("digits") if e.kind == "split"]


def test_a_split_is_stored_shown_and_recorded(digits: Registry) -> None:
    before, after = digits.set_split("digits", {2: 20}, reason="canary")
    assert before is None and after == Split.of({1: 80, 2: 20})
    assert digits.model("digits").splits == {"production": {"1": 80.0, "2": 20.0}}
    assert digits.model("digits").default_version == 1  # the alias itself does not move
    before, after = digits.set_split("digits", {2: 50, 3: 10})
    assert before == Split.of({1: 80, 2: 20}) and after == Split.of({1: 40, 2: 50, 3: 10})
    digits.set_split("digits", None, reason="done")
    assert digits.model("digits").splits == {}
    assert split_events(digits) == [
        (1, "production: 1=80%, 2=20%", "canary"),
        (1, "production: 1=40%, 2=50%, 3=10%", ""),
        (1, "production: ended", "done"),
    ]


def test_setting_the_same_split_again_records_nothing(digits: Registry) -> None:
    digits.set_split("digits", {2: 20})
    digits.set_split("digits", {1: 80, 2: 20})
    digits.set_split("digits", {1: 100})  # all to production: no split, and there was one
    digits.set_split("digits", None)
    details = [detail for _, detail, _ in split_events(digits)]
    assert details == ["production: 1=80%, 2=20%", "production: ended"]


@pytest.mark.parametrize("move", ["deploy", "rollback"])
def test_moving_the_alias_ends_its_split(digits: Registry, move: str) -> None:
    digits.deploy("digits", 2)
    digits.set_split("digits", {3: 10})
    if move == "deploy":
        digits.deploy("digits", 3)
    else:
        digits.rollback("digits")
    now = 3 if move == "deploy" else 1
    assert digits.model("digits").splits == {}
    assert split_events(digits)[-1] == (now, "production: ended", f"ended by {move}")  # all to `now`
    assert digits.rollback_target("digits")[0] == now  # the alias's chain is whole


def test_deleting_a_version_in_a_split_ends_it(digits: Registry) -> None:
    digits.set_split("digits", {3: 10})
    digits.delete("digits", 3)
    assert digits.model("digits").splits == {}
    assert split_events(digits)[-1] == (1, "production: ended", "version 3 deleted")


def test_a_bad_split_changes_nothing(digits: Registry) -> None:
    digits.set_split("digits", {2: 20})
    with pytest.raises(NotFound, match="no version 9"):
        digits.set_split("digits", {9: 20})
    with pytest.raises(InvalidInput, match="add up to 130%"):
        digits.set_split("digits", {1: 100, 2: 30})
    with pytest.raises(Conflict, match="no staging version to split the traffic of"):
        digits.set_split("digits", {2: 20}, alias="staging")
    assert digits.model("digits").splits == {"production": {"1": 80.0, "2": 20.0}}
    assert len(split_events(digits)) == 1


def test_a_version_whose_inputs_differ_needs_force(digits: Registry) -> None:
    other = Signature(
        inputs=(TensorSpec("pixels", "FP32", (-1, 64)),), outputs=(TensorSpec("logits", "FP32", (-1, 10)),)
    )
    digits.register("digits", digits_linear().onnx_bytes, signature=other, framework="onnx", check={})
    with pytest.raises(Conflict, match="input 'input' is gone"):
        digits.set_split("digits", {4: 10})
    assert digits.set_split("digits", {4: 10}, force=True)[1] == Split.of({1: 90, 4: 10})


def test_a_split_survives_going_down_to_0007_as_its_alias_alone(digits: Registry) -> None:
    digits.set_split("digits", {2: 20})
    again = migrated_down_and_up(digits, "0007")
    try:
        assert again.model("digits").splits == {}
        assert again.model("digits").default_version == 1
        assert again.set_split("digits", {2: 30})[1] == Split.of({1: 70, 2: 30})
    finally:
        again.close()


def test_a_shadow_is_stored_recorded_and_ended_by_a_deploy(digits: Registry) -> None:
    assert digits.set_shadow("digits", 2, reason="a look") is None
    assert digits.model("digits").shadows == {"production": 2}
    with pytest.raises(Conflict, match="cannot shadow itself"):
        digits.set_shadow("digits", 1)
    with pytest.raises(NotFound, match="no version 9"):
        digits.set_shadow("digits", 9)
    digits.deploy("digits", 3)
    assert digits.model("digits").shadows == {}
    shadows = [(e.detail, e.reason) for e in digits.history("digits") if e.kind == "shadow"]
    assert shadows == [("production: shadow 2", "a look"), ("production: shadow ended", "ended by deploy")]
    digits.set_shadow("digits", 2)
    digits.delete("digits", 2)
    assert digits.model("digits").shadows == {}
