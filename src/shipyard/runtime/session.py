"""The runner: one ONNX Runtime session and the thread its runs happen on.

The contract is three steps, as small as it can be:

1. ``load()`` builds the session from verified bytes (providers in an explicit order, threads set);
2. ``await run(inputs, outputs)`` runs it on the runner's own thread, off the event loop (ORT releases
   the GIL, so the loop keeps serving while a run computes), or, for a model whose measured run is
   shorter than the hop to a thread and back (``choose_execution``), on the loop itself;
3. ``unload()`` drops the session and stops the thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from shipyard import customops
from shipyard.errors import InvalidInput, ShipyardError, Unavailable
from shipyard.runtime.memory import release_free_memory

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
INLINE_BELOW_S = 200e-6
"""A run measured shorter than this runs on the event loop: handing it to a thread and its answer back
costs about as much (two thread wake-ups, a future), and ~40% of the requests a second on the digits
MLP at one connection (bench/floor.py)."""


@dataclass(frozen=True)
class RunnerOptions:
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    providers: Sequence[str] | None = None
    instances: int = 1
    """Threads that run the one session concurrently (ORT's run is thread-safe)."""
    execution: str = "auto"
    """Where runs happen: "loop" (the event loop), "threads", or "auto" (by the measured run time)."""
    spinning: bool = True
    """Whether ORT's threads spin between runs (its default). Off for a version that decodes pictures:
    its decoding threads need the cores those would spin on (a third more images a second on 2 cores,
    bench/BENCHMARKS.md "Images")."""


def choose_providers(wanted: Sequence[str] | None) -> list[str]:
    """The wanted providers this onnxruntime build has, in order; CPU is always the last resort."""
    available = set(ort.get_available_providers())
    chosen = [p for p in (wanted or DEFAULT_PROVIDERS) if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class Runner:
    def __init__(self, name: str, model_bytes: bytes, options: RunnerOptions) -> None:
        self.name = name
        self._model_bytes: bytes | None = model_bytes
        self._options = options
        self._session: ort.InferenceSession | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.providers: list[str] = []
        self.inline = False
        """Runs happen on the event loop (choose_execution)."""
        self.run_s: float | None = None
        """The measured time of one run of the warm-up batch."""

    def load(self) -> None:
        # One thread until choose_execution has timed a run: a model that runs on the loop keeps it
        self._session = self._open(1 if self._threads_to_choose else self._options.intra_op_threads)
        if not self._threads_to_choose:
            self._model_bytes = None  # the session holds its own copy
        self._executor = ThreadPoolExecutor(
            max_workers=self._options.instances, thread_name_prefix=f"ort-{self.name}"
        )

    @property
    def threads(self) -> int:
        """ORT's threads inside an operator, as the session runs with them (0: ORT's choice, every core)."""
        if self._session is None:
            raise Unavailable(f"{self.name} is not loaded")
        return int(self._session.get_session_options().intra_op_num_threads)

    @property
    def _threads_to_choose(self) -> bool:
        """Whether the thread count is the runner's to choose (choose_execution): none was set, and runs
        may happen on the loop. The model's bytes are kept till then, for a session with more."""
        return self._options.intra_op_threads == 0 and self._options.execution != "threads"

    def _open(self, intra_op_threads: int) -> ort.InferenceSession:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = self._options.inter_op_threads
        opts.log_severity_level = 3
        if not self._options.spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        customops.register(opts, self._model_bytes or b"", self.name)
        wanted = choose_providers(self._options.providers)
        try:
            session = ort.InferenceSession(self._model_bytes, opts, providers=wanted)
        except Exception as exc:  # ORT raises its own exception types for bad graphs
            raise Unavailable(f"{self.name}: ONNX Runtime cannot load the model: {exc}") from exc
        self.providers = list(session.get_providers())
        if wanted[0] != self.providers[0]:
            log.warning("%s: wanted %s, running on %s", self.name, wanted[0], self.providers[0])
        return session

    async def run(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        if self.inline:
            return self.run_sync(inputs, outputs)
        if self._session is None or self._executor is None:
            raise Unavailable(f"{self.name} is not loaded")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, inputs, outputs)

    def run_sync(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """One blocking run: for warm-up, batch jobs and the executor thread."""
        if self._session is None:
            raise Unavailable(f"{self.name} is not loaded")
        try:
            feeds = {k: _as_ort(k, v) for k, v in inputs.items()}
            result: list[np.ndarray] = self._session.run(list(outputs) if outputs else None, feeds)
        except ShipyardError:
            raise
        except (ort.capi.onnxruntime_pybind11_state.InvalidArgument, ValueError) as exc:
            # Inputs passed validation against the signature but the graph still refused them
            # (e.g. a fixed inner dimension): the caller's data, so a 400 with ORT's reason.
            raise InvalidInput(f"{self.name}: the model refused the input: {exc}") from exc
        return result

    def choose_execution(self, warm: dict[str, np.ndarray], repeat: int = 20) -> None:
        """Time `repeat` runs of `warm` (the warm-up batch) and choose where runs happen: on the
        event loop when one is short (INLINE_BELOW_S) and a single instance serves, unless the
        options say otherwise. Unless a thread count was set, a model that runs on the loop keeps the one
        ORT thread it was timed on, and one that runs on threads gets ORT's own choice (every core)."""
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            self.run_sync(warm)
            times.append(time.perf_counter() - started)
        self.run_s = sorted(times)[len(times) // 2]
        execution = self._options.execution
        if execution == "auto":
            execution = "loop" if self.run_s < INLINE_BELOW_S and self._options.instances == 1 else "threads"
        self.inline = execution == "loop"
        if self._threads_to_choose and not self.inline:
            # Timed on one thread; one that runs on ORT's threads gets ORT's choice (every core). One
            # that runs on the loop keeps its one thread: a pool's threads spin after each run on the
            # core the loop needs (the digits MLP answered ~25% more requests a second at 64
            # connections with one thread than with the pool).
            self._session = None  # gone before the new one opens, its memory given back: loading is
            release_free_memory()  # measured by how much the process grew (runtime/loading.py)
            self._session = self._open(0)
            self.run_sync(warm)
        self._model_bytes = None

    def unload(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._executor = None
        self._session = None
        self._model_bytes = None


def _as_ort(name: str, array: np.ndarray) -> np.ndarray:
    """ORT string tensors take Python str; the wire gives bytes, so decode them (UTF-8) here."""
    if array.dtype != object:
        return array
    try:
        out = np.empty(array.shape, dtype=object)
        out.flat[:] = [item.decode() if isinstance(item, bytes) else item for item in array.flat]
        return out
    except UnicodeDecodeError:
        raise InvalidInput(f"input {name!r}: BYTES data is not UTF-8 text, which this model needs") from None
