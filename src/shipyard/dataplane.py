"""The data plane: every operation of the serving API, implemented once, free of any transport.

HTTP routes (and later gRPC servicers) convert wire types, call a method here and convert back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import numpy as np

from shipyard._version import __version__
from shipyard.errors import InvalidInput, NotFound, Overloaded
from shipyard.monitor.feedback import decode_feedback
from shipyard.monitor.live import Monitor
from shipyard.protocol import predict as friendly
from shipyard.protocol.v2 import InferenceRequest, InferenceResponse, OutputTensor, classify
from shipyard.registry import VersionRecord
from shipyard.rollout.changes import Changes
from shipyard.runtime.manager import ModelManager
from shipyard.signature import TensorSpec, check_inputs

REFUSALS_PER_S = 100
READING = 4  # requests still sending their bodies, per request the in-flight limit admits at work
MAX_ID = 256  # request ids are kept (log, feedback index): a bound on what a client can make us hold
log = logging.getLogger(__name__)

EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "model_repository"]
PLATFORM = "onnxruntime_onnx"
CONFIG_TYPES = {"BYTES": "STRING"}  # Triton's config names every other type as v2 does, after "TYPE_"


class Backoff:
    """How long refused clients are told to wait (Retry-After). Last second's refusals times the wait
    each was given is about how many clients are waiting to come back; spreading them over
    `per_second` keeps refusals at about that rate however large the flood, which leaves the CPU to
    the requests that were admitted (over HTTP, a connection that ignores it has its next request read
    only then). One second when refusals are rare."""

    def __init__(self, per_second: int = REFUSALS_PER_S, longest_s: int = 30) -> None:
        self.per_second, self.longest_s = per_second, longest_s
        self._window, self._count, self._current = 0, 0, 1

    def retry_after(self) -> int:
        window = int(time.monotonic())
        if window != self._window:
            waiting = self._count * self._current if window == self._window + 1 else 0
            self._current = min(self.longest_s, max(1, math.ceil(waiting / self.per_second)))
            self._window, self._count = window, 0
        self._count += 1
        return self._current


class DataPlane:
    def __init__(self, manager: ModelManager, monitor: Monitor | None = None) -> None:
        self.manager = manager
        self.changes = Changes(manager)
        self.monitor = monitor
        self._reading: dict[str, int] = {}
        self._working: dict[str, int] = {}
        self._backoff = Backoff()

    # -- health and metadata ---------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.manager.ready()

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """True once the version has answered its warm-up (404 when this server does not serve it)."""
        return self.manager.resident(name, version)

    def down(self) -> dict[str, str]:
        """Versions this server should serve but cannot, and why (readiness says so)."""
        return self.manager.down()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "shipyard", "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        signature = self.manager.record(name, version).signature
        served = self.manager.served(name)
        return {
            "name": name,
            "versions": [str(v) for v in sorted(served.records)],
            "platform": PLATFORM,
            "inputs": [spec.to_dict() for spec in signature.inputs],
            "outputs": [spec.to_dict() for spec in signature.outputs],
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Triton's model configuration (what perf_analyzer reads), from the signature and settings.

        With a dynamic batch axis, `max_batch_size` > 0 and dims leave the batch axis out, as in Triton.
        """
        signature = self.manager.record(name, version).signature
        serving = self.manager.served(name).serving
        batched = all(spec.batched for spec in signature.inputs + signature.outputs)
        max_batch = serving.max_batch_size if batched else 0

        def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
            return [
                {
                    "name": spec.name,
                    "data_type": "TYPE_" + CONFIG_TYPES.get(spec.datatype, spec.datatype),
                    "dims": list(spec.shape[1:] if batched else spec.shape),
                }
                for spec in specs
            ]

        config: dict[str, Any] = {
            "name": name,
            "platform": PLATFORM,
            "backend": "onnxruntime",
            "max_batch_size": max_batch,
            "input": tensors(signature.inputs),
            "output": tensors(signature.outputs),
            "instance_group": [{"count": serving.instances, "kind": "KIND_CPU"}],
            "version_policy": {"all": {}},
        }
        if batched and serving.batching:
            config["dynamic_batching"] = {"max_queue_delay_microseconds": serving.max_queue_delay_us}
        return config

    # -- admission ---------------------------------------------------------------------------

    def admit(self, name: str, version: str | None = None) -> None:
        """Called when a request arrives, before its body is read: 404 for what is not served here,
        503 + Retry-After once the model has its limit of requests at work. Refusing here costs a
        dictionary lookup, so overload cannot make refusals as dear as answers. Requests still sending
        their bodies count apart (up to READING x the limit), so slow senders cannot take the places
        of requests at work. Then body_read(), and release() in every case."""
        self.manager.record(name, version)  # 404 for a model or version not served here
        refused = self.overloaded(name)
        if refused is not None:
            raise refused
        self._reading[name] = self._reading.get(name, 0) + 1

    def overloaded(self, name: str) -> Overloaded | None:
        """The refusal a request of `name` gets now, or None while the model has room (or is not
        served: admit() says so). Also what the transport asks before a request object exists."""
        served = self.manager.models.get(name)
        if served is None:
            return None
        limit = served.serving.in_flight_limit
        working, reading = self._working.get(name, 0), self._reading.get(name, 0)
        if working < limit and reading < READING * limit:
            return None
        return Overloaded(
            f"{name} is overloaded: {working + reading} requests are in flight; retry later",
            self._backoff.retry_after(),
        )

    def body_read(self, name: str) -> None:
        """An admitted request's body is in: it is at work now."""
        self._reading[name] -= 1
        self._working[name] = self._working.get(name, 0) + 1

    def release(self, name: str, body_read: bool) -> None:
        if body_read:
            self._working[name] -= 1
        else:
            self._reading[name] -= 1

    def in_flight(self, name: str) -> int:
        return self._working.get(name, 0) + self._reading.get(name, 0)

    # -- repository extension ----------------------------------------------------------------

    async def repository_index(self) -> list[dict[str, str]]:
        """Every registered version with its state here: READY, LOADING, or UNAVAILABLE and why."""
        out = []
        for summary in await asyncio.to_thread(self.manager.registry.models):
            for number in summary.versions:
                state, reason = self.manager.state(summary.name, number)
                out.append({"name": summary.name, "version": str(number), "state": state, "reason": reason})
        return out

    async def repository_load(self, name: str) -> None:
        await self.changes.load_model(name)

    async def repository_unload(self, name: str) -> None:
        await self.changes.unload_model(name)

    async def deploy(
        self, name: str, version: int | None, *, force: bool, reason: str, actor: str
    ) -> dict[str, Any]:
        before, after = await self.changes.deploy(name, version, force=force, reason=reason, actor=actor)
        return {"name": name, "alias": self.manager.alias, "version": after, "previous": before}

    async def rollback(self, name: str, *, reason: str, actor: str) -> dict[str, Any]:
        before, after = await self.changes.rollback(name, reason=reason, actor=actor)
        return {"name": name, "alias": self.manager.alias, "version": after, "previous": before}

    def models(self) -> list[dict[str, Any]]:
        out = []
        for name in self.manager.names:
            served = self.manager.served(name)
            out.append(
                {
                    "name": name,
                    "default_version": served.default,
                    "versions": sorted(served.records),
                    "resident": sorted(served.versions),
                }
            )
        return out

    # -- inference --------------------------------------------------------------------------

    async def infer(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest,
        protocol: str = "rest",
        started: float | None = None,
    ) -> InferenceResponse:
        """Run a v2 request; `started` (perf_counter) is when the transport received it."""
        started = time.perf_counter() if started is None else started
        if request.id is not None and len(request.id) > MAX_ID:
            raise InvalidInput(f"the request id is {len(request.id)} characters; at most {MAX_ID} are kept")
        async with self.manager.use(name, version) as loaded:
            signature = loaded.signature
            check_inputs(signature, request.inputs)
            wanted = request.outputs
            if wanted is None:
                names = [spec.name for spec in signature.outputs]
            else:
                names = []
                for out in wanted:
                    if signature.output(out.name) is None:
                        known = ", ".join(repr(s.name) for s in signature.outputs)
                        raise InvalidInput(f"unknown output {out.name!r}: the model's outputs are {known}")
                    names.append(out.name)
            results = await loaded.infer(request.inputs, names)
        outputs = []
        for i, (output_name, data) in enumerate(zip(names, results, strict=True)):
            requested = wanted[i] if wanted is not None else None
            binary = request.binary_output
            if requested is not None and requested.binary is not None:
                binary = requested.binary
            if requested is not None and requested.classification:
                if data.dtype.kind not in "fiu":
                    raise InvalidInput(f"output {output_name!r} holds no scores to classify")
                data = classify(data, requested.classification, loaded.record.labels)
            outputs.append(OutputTensor(output_name, data, binary))
        if self.monitor is not None:
            scores = signature.scores
            raw = results[names.index(scores.output)] if scores and scores.output in names else None
            ids = self._watch(loaded.record, protocol, started, request.inputs, raw)
            if ids:
                return InferenceResponse(
                    name, str(loaded.number), outputs, request.id, {"prediction_id": ids[0].partition("-")[0]}
                )
        return InferenceResponse(name, str(loaded.number), outputs, request.id)

    def _watch(
        self,
        record: VersionRecord,
        protocol: str,
        started: float,
        inputs: dict[str, np.ndarray],
        scores: np.ndarray | None,
    ) -> list[str]:
        """Tell the monitor about an answer; a failure to watch never fails the answer itself. The
        prediction ids are the monitor's own, never a client's request id: feedback must not be able to
        name someone else's prediction."""
        assert self.monitor is not None
        try:
            return self.monitor.answered(record, protocol, started, inputs, scores)
        except Exception:
            log.exception("%s: monitoring this answer failed", record.ref)
            return []

    async def predict(
        self,
        name: str | None,
        version: str | None,
        body: bytes,
        top_k: int = 0,
        started: float | None = None,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Friendly prediction; `name` None means the only model served. Each answer carries the id
        that feedback (POST /v1/models/{name}/feedback) refers to."""
        started = time.perf_counter() if started is None else started
        async with self.manager.use(self.only_model() if name is None else name, version) as loaded:
            signature = loaded.signature
            inputs, single = friendly.decode_predict(body, signature)
            scores = signature.scores
            output = scores.output if scores else signature.outputs[0].name
            (result,) = await loaded.infer(inputs, [output])
        items = friendly.predictions(
            result,
            kind=scores.kind if scores else None,
            labels=loaded.record.labels,
            top_k=top_k,
        )
        ids: list[str] = []
        if self.monitor is not None:
            raw = result if scores else None
            ids = self._watch(loaded.record, "predict", started, inputs, raw)
        for i, item in enumerate(items):
            item["model"], item["version"] = loaded.name, loaded.number
            if i < len(ids):
                item["id"] = ids[i]
        return items[0] if single else items

    def failed(
        self, name: str | None, version: str | None, protocol: str, status: int, started: float
    ) -> None:
        """Count a request that got an error (the transport calls this, whatever went wrong)."""
        if self.monitor is None:
            return
        record, label = None, "(unknown)"  # never a name from the URL that is not served: cardinality
        if name is not None and name in self.manager.models:  # no sorted list per failure
            label = name
            with contextlib.suppress(NotFound):
                record = self.manager.record(name, version)
        self.monitor.failed(label, record, protocol, status, started)

    # -- monitoring -------------------------------------------------------------------------

    async def feedback(self, name: str, body: bytes) -> dict[str, Any]:
        """Labels for earlier predictions: {"id": ..., "label": ...} or a list of them. Joined in a
        thread: an id that has left memory is looked up in the prediction log's files."""
        records = self.manager.served(name).records
        monitor = self.monitor
        if monitor is None:
            raise NotFound("this server keeps no monitor: feedback has nothing to join")
        items = decode_feedback(body)
        return await asyncio.to_thread(monitor.feedback, name, items, dict(records))

    def statistics(self, name: str | None, version: str | None) -> dict[str, Any]:
        """Triton's statistics extension: every version this server has monitored (of `name`)."""
        if self.monitor is None:
            return {"model_stats": []}
        names = [name] if name else self.manager.names
        if name:
            self.manager.served(name)
        stats = []
        for model in names:
            for monitor in self.monitor.known(model):
                if version in (None, "") or str(monitor.record.number) == str(version):
                    stats.append(monitor.triton_stats())
        return {"model_stats": stats}

    async def snapshot(self, name: str) -> dict[str, Any]:
        """How a model is doing: per version, the figures of the dashboard and `monitor status`.
        Built on the event loop (the figures change there); only the drift scores run in a thread."""
        served = self.manager.served(name)
        monitor = self.monitor
        if monitor is None:
            raise NotFound("this server keeps no monitor")
        watched = [
            (number, monitor.version(record))
            for number, record in sorted(served.records.items(), key=lambda kv: kv[0] != served.default)
        ]
        drift = await asyncio.to_thread(lambda: [m.drift_report() for _, m in watched])
        versions = [
            m.summary(self.manager.state(name, number)[0], number == served.default, report)
            for (number, m), report in zip(watched, drift, strict=True)
        ]
        return {"model": name, "default_version": served.default, "versions": versions}

    def only_model(self) -> str:
        names = self.manager.names
        if len(names) != 1:
            raise NotFound(
                f"POST /predict needs exactly one served model, this server has {len(names)}: "
                "use /v1/models/{name}/predict"
            )
        return names[0]
