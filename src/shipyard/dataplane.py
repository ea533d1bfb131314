"""The data plane: every operation of the serving API, implemented once, free of any transport.

A transport (server/http.py, server/grpc.py) decodes, calls one method here and encodes. An inference
request is owned here from its arrival to its answer: its caller is checked (`Inbound.allow`), the
version that answers is resolved once, the request is admitted (admission.py) before its body is read
(`Inbound.read`), then run, timed and told to the monitor (`Tap`); a failure is counted with the
status errors.status_of gives it and raised for the transport to answer (server/failures.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from shipyard import scoring
from shipyard._version import __version__
from shipyard.admission import Admission
from shipyard.controlplane import ControlPlane
from shipyard.errors import InvalidInput, NotFound, Overloaded, status_of
from shipyard.monitor.answers import prediction_ids
from shipyard.monitor.feedback import decode_feedback
from shipyard.protocol import predict as friendly
from shipyard.protocol import triton, v2
from shipyard.protocol.v2 import InferenceRequest, InferenceResponse
from shipyard.registry import VersionRecord
from shipyard.rollout.shadow import Shadow
from shipyard.runtime import LoadedVersion, tensors
from shipyard.runtime.manager import ModelManager
from shipyard.signature import check_inputs, check_outputs

if TYPE_CHECKING:
    from shipyard.monitor.live import Monitor

MAX_ID = 256  # request ids are kept (log, feedback index): a bound on what a client can make us hold
UNKNOWN = "(unknown)"  # the model label of a failure for a name not served: never a name from a URL
log = logging.getLogger(__name__)

EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "model_repository"]

Source = TypeVar("Source", contravariant=True)
Body = TypeVar("Body", covariant=True)
Predict = tuple[bytes, int | None, str]
"""A friendly prediction as its transport reads it: the body, how many top classes to add (None: as
the version declares), and the body's content-type ("" when not said)."""


class Inbound(Protocol[Source, Body]):
    """How a transport hands over one kind of request: made once, so a request costs no object.

    `allow` raises Unauthorized, Forbidden or RateLimited when the caller may not ask `model`;
    `key` is the request's routing key (X-Shipyard-Key), read only when a traffic split needs one;
    `read` reads and decodes the body (a 413, a 400, or errors.ClientGone), and is called only once
    the request has been admitted."""

    def allow(self, request: Source, model: str) -> None: ...

    def key(self, request: Source) -> str | None: ...

    async def read(self, request: Source) -> Body: ...


class Tap(Protocol):
    """What the monitor hears of each request (monitor.live.Monitor is one). Each is quick and never
    blocks. A request is noted as it goes to its batcher, which reports the note with its run (what
    was predicted is read from there), and marked once answered."""

    def note(self, protocol: str, started: float) -> list[Any]:
        """A new note; its first item is the request's prediction id, which feedback names."""
        ...

    def answered(self, note: list[Any]) -> None: ...

    def unanswered(self, note: list[Any]) -> None:
        """The request will not be answered (it failed, or was given up): its run need not wait."""
        ...

    def failed(
        self, model: str, version: VersionRecord | None, protocol: str, status: int, started: float
    ) -> None: ...


class DataPlane:
    def __init__(self, manager: ModelManager, monitor: Monitor | None = None) -> None:
        """`monitor` answers the monitoring endpoints; requests reach it only through its `Tap`."""
        self.manager = manager
        self.control = ControlPlane(manager)
        self.monitor = monitor
        self.tap: Tap | None = monitor
        self.admission = Admission()
        self.shadow = None if monitor is None else Shadow(monitor)

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
            "platform": triton.PLATFORM,
            "inputs": [spec.to_dict() for spec in signature.inputs],
            "outputs": [spec.to_dict() for spec in signature.outputs],
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Triton's model configuration (protocol/triton.py), from the signature and settings."""
        signature = self.manager.record(name, version).signature
        return triton.model_config(name, signature, self.manager.served(name).serving)

    # -- admission ---------------------------------------------------------------------------

    def overloaded(self, name: str) -> Overloaded | None:
        """The refusal a request of `name` gets now, or None while the model has room (or is not
        served: resolving it says so)."""
        served = self.manager.models.get(name)
        return None if served is None else self.admission.refusal(name, served.serving.in_flight_limit)

    def refused(self, name: str, protocol: str) -> Overloaded | None:
        """For the transport, which knows only the URL of a request yet: overloaded(), and a refusal
        counted as a failed request (server/transport.py)."""
        refusal = self.overloaded(name)
        if refusal is not None:
            self._failed(name, None, protocol, refusal, time.perf_counter())
        return refusal

    def in_flight(self, name: str) -> int:
        return self.admission.in_flight(name)

    def models(self) -> list[dict[str, Any]]:
        out = []
        for name in self.manager.names:
            served = self.manager.served(name)
            out.append(
                {
                    "name": name,
                    "default_version": served.default,
                    "split": None if served.split is None else served.split.to_dict(),
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
        request: Source,
        inbound: Inbound[Source, InferenceRequest],
        protocol: str,
    ) -> InferenceResponse:
        """One v2 inference request, from its arrival to its answer (see the module's docstring)."""
        started = time.perf_counter()
        record: VersionRecord | None = None
        note: list[Any] | None = None
        admission, stage = self.admission, 0  # 1: admitted, its body on its way; 2: at work
        try:
            inbound.allow(request, name)
            record = self._route(name, version, request, inbound)  # the version that answers, resolved once
            refusal = admission.admit(name, self.manager.models[name].serving.in_flight_limit)
            if refusal is not None:
                raise refusal
            stage = 1
            decoded = await inbound.read(request)
            admission.body_read(name)
            stage = 2
            if decoded.id is not None and len(decoded.id) > MAX_ID:
                raise InvalidInput(
                    f"the request id is {len(decoded.id)} characters; at most {MAX_ID} are kept"
                )
            wanted = decoded.outputs
            async with self._use(record, version) as loaded:
                signature = loaded.signature
                check_inputs(signature, decoded.inputs)
                names = check_outputs(signature, None if wanted is None else [out.name for out in wanted])
                note = None if self.tap is None else self.tap.note(protocol, started)
                results = await loaded.infer(decoded.inputs, names, note)
            outputs = v2.output_tensors(decoded, names, results, loaded.record.labels)
        except Exception as exc:
            self._unanswered(note)
            self._failed(name, record, protocol, exc, started)
            raise
        except asyncio.CancelledError:
            self._unanswered(note)
            raise
        finally:
            if stage:
                admission.release(name, stage == 2)
        self._copy(name, version, loaded, decoded.inputs, names, results)
        response = InferenceResponse(name, str(loaded.number), outputs, decoded.id)
        if note is not None:
            self._answered(note)
            response.parameters = {"prediction_id": note[0]}
        return response

    async def predict(
        self,
        name: str | None,
        version: str | None,
        request: Source,
        inbound: Inbound[Source, Predict],
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Friendly prediction; `name` None means the only model served. Owned as infer() owns a v2
        request; each answer carries the id that feedback (POST /v1/models/{name}/feedback) names."""
        started = time.perf_counter()
        record: VersionRecord | None = None
        note: list[Any] | None = None
        admission, stage, model = self.admission, 0, UNKNOWN
        try:
            model = self.only_model() if name is None else name
            inbound.allow(request, model)
            record = self._route(model, version, request, inbound)
            refusal = admission.admit(model, self.manager.models[model].serving.in_flight_limit)
            if refusal is not None:
                raise refusal
            stage = 1
            body, top_k, content_type = await inbound.read(request)
            admission.body_read(model)
            stage = 2
            async with self._use(record, version) as loaded:
                signature = loaded.signature
                inputs, single = friendly.decode_predict(body, signature, content_type)
                scores = signature.scores
                note = None if self.tap is None else self.tap.note("predict", started)
                asked = [scores.output if scores else signature.outputs[0].name]
                (result,) = await loaded.infer(inputs, asked, note)
        except Exception as exc:
            self._unanswered(note)
            self._failed(model, record, "predict", exc, started)
            raise
        except asyncio.CancelledError:
            self._unanswered(note)
            raise
        finally:
            if stage:
                admission.release(model, stage == 2)
        self._copy(model, version, loaded, inputs, asked, [result])
        scored = scoring.read(result.reshape(-1, result.shape[-1]), scores.kind) if scores else None
        items = friendly.predictions(
            result,
            kind=scores.kind if scores else None,
            labels=loaded.record.labels,
            top_k=(scores.top_k if scores else 0) if top_k is None else top_k,
            scored=scored,
            threshold=scores.threshold if scores else None,
            unit=signature.unit,
        )
        ids: list[str] = []
        if note is not None:
            self._answered(note)
            ids = prediction_ids(note[0], tensors.rows(inputs) if signature.batched else 1)
        for i, item in enumerate(items):
            item["model"], item["version"] = loaded.name, loaded.number
            if i < len(ids):
                item["id"] = ids[i]
        return items[0] if single else items

    def _route(
        self, name: str, version: str | None, request: Source, inbound: Inbound[Source, Any]
    ) -> VersionRecord:
        """The version that answers: the one named, else where the model's traffic split sends the
        request's key, else the default."""
        return self.manager.record(name, version, lambda: inbound.key(request))

    def _use(self, record: VersionRecord, version: str | None) -> AbstractAsyncContextManager[LoadedVersion]:
        """The version resolved as the request arrived, held while it runs; unless the request named
        none, and that one left while its body was read (its alias moved on): then the default now."""
        served = self.manager.models.get(record.model)
        if served is not None and (
            served.default == record.number or (version is None and record.number not in served.records)
        ):
            return self.manager.use(record.model)  # the default: by far the most asked for, read as such
        return self.manager.use(record.model, record.number)

    def _copy(self, name: str, version: str | None, loaded: LoadedVersion, *request: Any) -> None:
        """A copy of an answered request (inputs, outputs asked for, outputs) for the model's shadow,
        when it has one (rollout/shadow.py): only of requests that name no version."""
        if version or self.shadow is None:
            return
        served = self.manager.models.get(name)
        if served is not None and served.shadow is not None:
            self.shadow.offer(served, loaded, *request)

    def _answered(self, note: list[Any]) -> None:
        """Tell the monitor a request was answered; a failure to watch never fails the answer."""
        try:
            self.tap.answered(note)  # type: ignore[union-attr]
        except Exception:
            log.exception("monitoring an answer failed")

    def _unanswered(self, note: list[Any] | None) -> None:
        if note is not None and self.tap is not None:
            self.tap.unanswered(note)

    def _failed(
        self,
        name: str,
        record: VersionRecord | None,
        protocol: str,
        exc: BaseException,
        started: float,
    ) -> None:
        """Count a request that failed, whatever went wrong, with the status it is answered with."""
        if self.tap is None:
            return
        label = name if name in self.manager.models else UNKNOWN
        try:
            self.tap.failed(label, record, protocol, status_of(exc), started)
        except Exception:
            log.exception("%s: monitoring this failure failed", label)

    # -- monitoring -------------------------------------------------------------------------

    def metrics(self) -> tuple[bytes, str]:
        """Prometheus' text format and its media type (nothing without a monitor)."""
        return (b"", "text/plain") if self.monitor is None else self.monitor.exposition()

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
        rollout = await asyncio.to_thread(self.control.rollout_summary, name)
        versions = [
            m.summary(self.manager.state(name, number)[0], number == served.default, report)
            for (number, m), report in zip(watched, drift, strict=True)
        ]
        return {"model": name, "default_version": served.default, "versions": versions, "rollout": rollout}

    def only_model(self) -> str:
        names = self.manager.names
        if len(names) != 1:
            raise NotFound(
                f"POST /predict needs exactly one served model, this server has {len(names)}: "
                "use /v1/models/{name}/predict"
            )
        return names[0]
