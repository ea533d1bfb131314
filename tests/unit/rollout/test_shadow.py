"""A shadow as a server runs it (rollout/shadow.py): a copy of each request that names no version goes
to the shadow within its bounds, its answers are compared with production's and counted, and the
client only ever gets production's answer."""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np

from shipyard.config import MonitorSettings, Settings
from shipyard.registry import Registry
from shipyard.rollout import shadow as shadows
from shipyard.server.serving import Server
from shipyard.signature import Scores, Signature, TensorSpec
from tests.conftest import DIGITS_SIGNATURE, LABELS, register_digits
from tests.models import digits_confused, digits_data
from tests.unit.conftest import digits_request, serving, unit_settings


def test_a_shadow_answers_no_one_and_is_compared_with_production(
    registry: Registry, settings: Settings
) -> None:
    register_digits(registry)
    onnx = digits_confused().onnx_bytes
    registry.register("digits", onnx, signature=DIGITS_SIGNATURE, framework="onnx", check={}, labels=LABELS)
    registry.deploy("digits", 1)
    registry.set_shadow("digits", 2)
    X, _ = digits_data()
    with serving(registry, unit_settings(settings, monitor=MonitorSettings(log=False))) as (client, server):
        assert server.manager.served("digits").shadow == 2
        answered = Counter()
        for i in range(40):  # both endpoints; and one request that names its version gets no copy
            infer = client.post("/v2/models/digits/infer", json=digits_request(X[i : i + 2]))
            predict = client.post("/v1/models/digits/predict", json={"input": X[i].tolist()})
            answered.update([infer.json()["model_version"], str(predict.json()["version"])])
        client.post("/v2/models/digits/versions/1/infer", json=digits_request(X[:1]))
        client.run(_settled(server))
        watch = server.monitor.observer(registry.version("digits", 2))
        assert answered == {"1": 80}
        copies = watch.shadow
        assert copies["answered"] + copies["dropped"] == 80 and copies["failed"] == 0
        assert copies["answered"] <= copies["compared"] <= 2 * copies["answered"]  # 2 rows or 1 a request
        assert 0.2 < copies["agreed"] / copies["compared"] < 0.8  # it confuses half the classes
        metrics = client.get("/metrics").text
        assert 'shipyard_shadow_requests_total{model="digits",outcome="answered",version="2"}' in metrics

        registry.set_shadow("digits", None)
        client.run(server.manager.refresh())
        client.post("/v2/models/digits/infer", json=digits_request(X[:1]))
        client.run(_settled(server))
        assert watch.shadow["answered"] + watch.shadow["dropped"] == 80  # no copy once it ended


async def _settled(server: Server) -> None:
    """Until every copy under way has been answered (the shadow's own tasks)."""
    assert server.dataplane.shadow is not None
    await asyncio.gather(*list(server.dataplane.shadow._tasks))
    server.dataplane.shadow.flush()


def test_copies_past_the_rate_are_dropped_and_counted(registry: Registry, settings: Settings) -> None:
    register_digits(registry)
    register_digits(registry)
    registry.deploy("digits", 1)
    registry.set_shadow("digits", 2)
    X, _ = digits_data()
    with serving(registry, unit_settings(settings, monitor=MonitorSettings(log=False))) as (client, server):
        for i in range(120):  # far faster than 200 a second, in a burst of 20 allowed
            client.post("/v2/models/digits/infer", json=digits_request(X[i : i + 1]))
        client.run(_settled(server))
        copies = server.monitor.observer(registry.version("digits", 2)).shadow
        assert copies["dropped"] > 0 and copies["answered"] >= shadows.MAX_PER_S / 10
        assert copies["agreed"] == copies["compared"] == copies["answered"]  # the same model


def test_agreement_reads_the_class_scores_wherever_the_request_put_them() -> None:
    class Primary:
        signature = Signature(
            inputs=(TensorSpec("x", "FP32", (-1, 4)),),
            outputs=(TensorSpec("embedding", "FP32", (-1, 8)), TensorSpec("scores", "FP32", (-1, 3))),
            scores=Scores("scores", "probabilities"),
        )

    ours = np.array([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]], np.float32)
    theirs = np.array([[0.2, 0.7, 0.1], [0.1, 0.2, 0.7]], np.float32)
    other = np.zeros((2, 8), np.float32)
    primary = Primary()
    assert shadows.agreement(primary, ["scores"], [ours], [theirs]) == (2, 1)  # type: ignore[arg-type]
    assert shadows.agreement(primary, None, [other, ours], [other, theirs]) == (2, 1)  # type: ignore[arg-type]
    assert shadows.agreement(primary, ["embedding"], [other], [other]) == (0, 0)  # type: ignore[arg-type]
    assert shadows.agreement(primary, ["scores"], [ours], [theirs[:1]]) == (0, 0)  # type: ignore[arg-type]
