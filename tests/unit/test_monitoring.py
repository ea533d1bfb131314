"""Monitoring through the server: drift against the reference, accuracy from feedback, the prediction
log never slowing answers down, Prometheus metrics and Triton's statistics."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.config import MonitorSettings, Settings
from shipyard.errors import InvalidInput
from shipyard.monitor.live import Monitor
from shipyard.monitor.predlog import PredictionRecord
from shipyard.monitor.reference import profile_version
from shipyard.registry import Registry
from tests.asgi import ASGIClient
from tests.conftest import LABELS, register_digits
from tests.models import digits_data, digits_linear
from tests.unit.conftest import serving, unit_settings

WINDOW = 500
SPLIT = np.random.default_rng(7).permutation(1797)  # digits rows: the first 1,000 are the reference
ROOT = Path(__file__).resolve().parents[2]


def serve(registry: Registry, settings: Settings, monitor: Monitor) -> Any:
    """The server watching with `monitor` (the test's own: its settings, its log)."""
    return serving(registry, unit_settings(settings), monitor=monitor)


@pytest.fixture
def referenced(registry: Registry, tmp_path: Path) -> Registry:
    """digits with a reference profile of 1,000 random rows (the other 797 are 'live' data)."""
    record = register_digits(registry)
    X, y = digits_data()
    np.savez(tmp_path / "reference.npz", X=X[SPLIT[:1000]], y=y[SPLIT[:1000]])
    registry.set_reference("digits", 1, profile_version(registry, record, tmp_path / "reference.npz"), "ref")
    return registry


@pytest.fixture
def server(referenced: Registry, settings: Settings, tmp_path: Path) -> Iterator[tuple[ASGIClient, Monitor]]:
    watching = MonitorSettings(drift_window=WINDOW, drift_min_rows=WINDOW)
    monitor = Monitor(watching, str(tmp_path / "predictions"))
    with serve(referenced, settings, monitor) as (client, _):
        yield client, monitor


def infer(
    client: ASGIClient, rows: np.ndarray, model: str = "digits", outputs: list[str] | None = None
) -> None:
    body: dict[str, object] = {
        "inputs": [
            {"name": "input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}
        ]
    }
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    assert client.post(f"/v2/models/{model}/infer", json=body).status_code == 200


def drift(client: ASGIClient) -> dict[str, object]:
    return client.get("/v1/models/digits/monitor").json()["versions"][0]["drift"]


def test_drift_is_flagged_within_one_window_and_not_without_a_shift(
    server: tuple[ASGIClient, Monitor],
) -> None:
    client, _ = server
    X = digits_data()[0][SPLIT[1000:]]  # never seen by the reference
    rng = np.random.default_rng(0)
    windows, false_alarms = 20, 0
    for _ in range(windows):  # disjoint windows of unshifted live traffic, 20 rows a request
        for _ in range(WINDOW // 20):
            infer(client, X[rng.integers(0, len(X), 20)])
        report = drift(client)
        assert report["judged"]
        false_alarms += bool(report["flagged"])
    delay = 0
    while not drift(client)["flagged"]:  # the same traffic, brighter by 3 of 16 grey levels
        infer(client, np.clip(X[rng.integers(0, len(X), 20)] + 3, 0, 16))
        delay += 20
        assert delay <= WINDOW, "drift was not flagged within one window"
    print(f"unshifted: {false_alarms} of {windows} windows flagged; shifted: flagged after {delay} rows")
    assert false_alarms <= 1
    metrics = client.get("/metrics").text
    assert 'shipyard_drift_flagged{model="digits",version="1"}' in metrics or "drift" in metrics


def test_live_accuracy_equals_the_true_accuracy_of_labelled_predictions(
    server: tuple[ASGIClient, Monitor],
) -> None:
    client, _ = server
    X, y = digits_data()
    picked = np.random.default_rng(1).choice(len(X), 200, replace=False)
    answers = [client.post("/v1/models/digits/predict", json={"input": X[i].tolist()}).json() for i in picked]
    truth = [str(y[i]) for i in picked]
    expected = np.mean([a["class"] == t for a, t in zip(answers, truth, strict=True)])
    assert 0.5 < expected < 1.0  # a real mix of right and wrong answers

    unknown = client.post("/v1/models/digits/feedback", json=[{"id": "nope", "label": "1"}])
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["error"]
    for body, problem in [(b"{", "not JSON"), (b"[]", "empty"), (b'{"id": 3, "label": "1"}', "id")]:
        bad = client.post("/v1/models/digits/feedback", content=body)
        assert bad.status_code == 400 and problem in bad.json()["error"]
    half = len(answers) // 2
    first = [{"id": a["id"], "label": t} for a, t in zip(answers[:half], truth[:half], strict=True)]
    assert client.post("/v1/models/digits/feedback", json=first).json() == {"accepted": half}
    for a, t in zip(answers[half:], truth[half:], strict=True):  # and one at a time
        assert client.post("/v1/models/digits/feedback", json={"id": a["id"], "label": t}).status_code == 200
    accuracy = client.get("/v1/models/digits/monitor").json()["versions"][0]["accuracy"]
    assert accuracy["labelled"] == len(answers)
    assert accuracy["value"] == pytest.approx(expected)

    again = [{"id": a["id"], "label": t} for a, t in zip(answers[:10], truth[:10], strict=True)]
    assert client.post("/v1/models/digits/feedback", json=again).json() == {"accepted": 10}  # replaced
    bad = client.post("/v1/models/digits/feedback", json=[*again, {"id": answers[0]["id"], "label": "cat"}])
    assert bad.status_code == 400 and "'cat'" in bad.json()["error"] and "'0', '1'" in bad.json()["error"]
    accuracy = client.get("/v1/models/digits/monitor").json()["versions"][0]["accuracy"]
    assert accuracy["labelled"] == len(answers) and accuracy["replaced"] == 10
    assert accuracy["value"] == pytest.approx(expected)


class BlockedSink:
    """A log destination that holds the writer thread until released: the log's queue fills up."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.written: list[PredictionRecord] = []

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.release.wait(timeout=60)
        self.written.extend(records)

    def poll(self) -> float | None:
        return None

    def close(self) -> None:
        pass


def test_a_full_prediction_log_drops_and_counts_without_slowing_answers(
    referenced: Registry, settings: Settings
) -> None:
    sink = BlockedSink()
    monitor = Monitor(MonitorSettings(log_queue=20), sink)
    X = digits_data()[0]
    with serve(referenced, settings, monitor) as (client, server), contextlib.ExitStack() as done:
        done.callback(sink.release.set)  # before the server stops: its log is written as it stops
        timings = []
        for i in range(300):
            start = time.perf_counter()
            assert client.post("/v1/models/digits/predict", json={"input": X[i].tolist()}).status_code == 200
            timings.append(time.perf_counter() - start)
        assert monitor.log is not None
        monitor.flush()  # the answers noted so far, offered to the log
        counters = monitor.log.counters()
        assert counters.offered == 300 and counters.written == 0
        in_writer = 300 - counters.queued - counters.dropped_full  # taken by the writer, now blocked
        assert counters.queued == 20 and 1 <= in_writer <= 20
        assert counters.dropped_full >= 250
        before, after = np.median(timings[:15]), np.median(timings[-100:])
        print(f"median answer: {before * 1e3:.2f} ms with room in the log, {after * 1e3:.2f} ms when full")
        assert after < 10 * before  # the same order of magnitude
        client.run(server.tick())
        metrics = client.get("/metrics").text
        assert (
            f'shipyard_prediction_log_records_total{{outcome="dropped_full"}} {counters.dropped_full}.0'
            in metrics
        )
    assert len(sink.written) == 300 - counters.dropped_full  # every record accepted was written


def test_metrics_statistics_and_the_grafana_dashboard_agree(server: tuple[ASGIClient, Monitor]) -> None:
    client, monitor = server
    X = digits_data()[0]
    for i in range(5):
        infer(client, X[i * 4 : i * 4 + 4])
    assert client.post("/v2/models/digits/infer", json={"inputs": []}).status_code == 400
    assert client.post("/v2/models/nope/infer", json={"inputs": []}).status_code == 404
    assert [s["name"] for s in client.get("/v2/models/stats").json()["model_stats"]] == ["digits"]
    too_long = {
        "id": "x" * 300,
        "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}],
    }
    assert "request id" in client.post("/v2/models/digits/infer", json=too_long).json()["error"]
    stats = client.get("/v2/models/digits/stats").json()["model_stats"]
    assert len(stats) == 1 and stats[0]["inference_count"] == 20 and stats[0]["execution_count"] == 5
    assert stats[0]["inference_stats"]["success"]["count"] == 5
    assert stats[0]["inference_stats"]["fail"]["count"] == 2
    assert sum(b["compute_infer"]["count"] for b in stats[0]["batch_stats"]) == 5
    monitor.tick({("digits", 1): (True, 1234, 0, 0)}, monitor.drift_reports())  # as the server each second
    text = client.get("/metrics").text
    for line in [
        'shipyard_requests_total{model="digits",protocol="rest",status="200",version="1"} 5.0',
        'shipyard_requests_total{model="digits",protocol="rest",status="400",version="1"} 2.0',
        'shipyard_requests_total{model="(unknown)",protocol="rest",status="404",version=""} 1.0',
        'shipyard_batch_size_count{model="digits",version="1"} 5.0',
        'shipyard_model_memory_bytes{model="digits",version="1"} 1234.0',
        'shipyard_prediction_confidence_count{model="digits",version="1"} 20.0',
    ]:
        assert line in text, line
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    grafana = json.loads((ROOT / "deploy/grafana/shipyard.json").read_text())
    used = set()
    for panel in grafana["panels"]:
        for target in panel["targets"]:
            used.update(re.findall(r"shipyard_[a-z0-9_]+", target["expr"]))
    missing = {u for u in used if not any(u == f or u.startswith(f + "_") for f in families)}
    assert not missing, f"the Grafana dashboard queries metrics the server does not export: {missing}"


def test_a_reference_can_come_from_parquet_or_csv(registry: Registry, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    record = register_digits(registry)
    X, y = digits_data()
    columns = {f"p{i}": X[:500, i] for i in range(64)}
    pq.write_table(pa.table({**columns, "label": y[:500]}), tmp_path / "ref.parquet")
    np.savetxt(
        tmp_path / "ref.csv",
        np.column_stack([X[:500], y[:500]]),
        delimiter=",",
        fmt="%g",
        header=",".join([*columns, "label"]),
        comments="",
    )
    np.savez(tmp_path / "ref.npz", X=X[:500])
    profiles = [
        profile_version(registry, record, tmp_path / f"ref.{kind}") for kind in ("parquet", "csv", "npz")
    ]
    for profile in profiles:
        profile.pop("source")
    assert profiles[0] == profiles[1] == profiles[2] and profiles[0]["rows"] == 500
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidInput, match=r"bad\.parquet"):
        profile_version(registry, record, tmp_path / "bad.parquet")


def test_a_model_without_a_batch_axis_is_watched_as_one_sample(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    from onnx import TensorProto, helper, numpy_helper

    from shipyard.signature import Scores, Signature, TensorSpec

    W = np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "unbatched",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [10])],
        [numpy_helper.from_array(W, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    signature = Signature(
        (TensorSpec("x", "FP32", (64,)),), (TensorSpec("y", "FP32", (10,)),), Scores("y", "logits")
    )
    registry.register("flat", model.SerializeToString(), signature=signature, framework="onnx", check={})
    monitor = Monitor(MonitorSettings(), str(tmp_path / "predictions"))
    with serve(registry, settings, monitor) as (client, _):
        x = digits_data()[0][0]
        body = {"inputs": [{"name": "x", "shape": [64], "datatype": "FP32", "data": x.tolist()}]}
        assert client.post("/v2/models/flat/infer", json=body).status_code == 200
        doc = client.post("/v1/models/flat/predict", json={"input": x.tolist()}).json()
        assert doc["class"] == str(int(np.argmax(x @ W))) and "id" in doc
        version = client.get("/v1/models/flat/monitor").json()["versions"][0]
        assert version["requests"] == 2 and sum(version["confidence"]["counts"]) == 2


def test_an_optimized_version_is_watched_against_its_parents_reference(
    referenced: Registry, tmp_path: Path
) -> None:
    from shipyard.optimize import optimize

    X, y = digits_data()
    np.savez(tmp_path / "eval.npz", X=X[:300], y=y[:300])
    outcome = optimize(referenced, "digits:1", "dynamic-int8", tmp_path / "eval.npz", force=True)
    assert outcome.record is not None and outcome.record.number == 2
    assert outcome.record.reference == referenced.version("digits", 1).reference
    assert referenced.history("digits")[-1].detail == "from digits:1"


def register_labelled(registry: Registry, tmp_path: Path) -> None:
    """digits with two outputs, as a converted sklearn classifier has: class scores and the label."""
    from onnx import TensorProto, helper, numpy_helper

    from shipyard.signature import Scores, Signature, TensorSpec

    linear = digits_linear()
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "W", "b"], ["logits"]),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "labelled",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        [numpy_helper.from_array(linear.W, "W"), numpy_helper.from_array(linear.b, "b")],
    )
    signature = Signature(
        (TensorSpec("input", "FP32", (-1, 64)),),
        (TensorSpec("logits", "FP32", (-1, 10)), TensorSpec("label", "INT64", (-1,))),
        Scores("logits", "logits"),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    record = registry.register(
        "labelled", model.SerializeToString(), signature=signature, framework="onnx", check={}, labels=LABELS
    )
    X, y = digits_data()
    np.savez(tmp_path / "reference.npz", X=X[SPLIT[:1000]], y=y[SPLIT[:1000]])
    registry.set_reference(
        "labelled", 1, profile_version(registry, record, tmp_path / "reference.npz"), "ref"
    )


def test_requests_without_scores_never_switch_drift_off(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    """Asking only for the label output feeds drift its inputs; the requests with scores keep theirs."""
    register_labelled(registry, tmp_path)
    monitor = Monitor(MonitorSettings(drift_window=WINDOW, drift_min_rows=300), str(tmp_path / "log"))
    X = digits_data()[0][SPLIT[1000:]]
    rng = np.random.default_rng(3)
    with serve(registry, settings, monitor) as (client, _):
        scored = 0
        for i in range(WINDOW // 20):  # mixed traffic, gathered into the same flushes
            infer(client, X[rng.integers(0, len(X), 20)], "labelled", ["label"] if i % 2 else None)
            scored += 0 if i % 2 else 20
        version = client.get("/v1/models/labelled/monitor").json()["versions"][0]
        report = version["drift"]
        assert report["status"] == "judged" and report["rows"] == WINDOW and not report["flagged"]
        assert report["scored_rows"] == scored and report["problem"] == ""
        assert report["predictions"] is not None and report["confidence"] is not None
        assert sum(version["confidence"]["counts"]) == scored

        for _ in range(WINDOW // 20):  # the window filled by label-only requests, then a real shift
            infer(client, X[rng.integers(0, len(X), 20)], "labelled", ["label"])
        assert drift_of(client, "labelled")["scored_rows"] == 0
        sent = 0
        while not drift_of(client, "labelled")["flagged"]:
            infer(client, np.clip(X[rng.integers(0, len(X), 20)] + 3, 0, 16), "labelled")
            sent += 20
            assert sent <= WINDOW, "drift was not flagged within one window"


def drift_of(client: ASGIClient, model: str) -> dict[str, object]:
    return client.get(f"/v1/models/{model}/monitor").json()["versions"][0]["drift"]


def test_every_tick_brings_the_confidence_histogram_up_to_date_while_drift_waits_its_turn(
    referenced: Registry, settings: Settings
) -> None:
    """Drift is scored every DRIFT_EVERY_S, but each tick works the batches gathered since into the
    confidence histogram, so a scrape trails the request counts by a second at most."""
    monitor = Monitor(MonitorSettings())
    X = digits_data()[0]

    def confidences(text: str) -> float:
        found = re.search(r'shipyard_prediction_confidence_count\{model="digits",version="1"\} (\S+)', text)
        return float(found.group(1)) if found else 0.0

    with serve(referenced, settings, monitor) as (client, server):
        client.run(server.tick())  # the first tick scores drift
        infer(client, X[:3])
        infer(client, X[3:5])
        client.run(server.tick())  # drift is not due: the histogram is brought up to date all the same
        assert confidences(client.get("/metrics").text) == 5
