"""One serving process: a registry's models behind one data plane, and HTTP and gRPC beside each other.

`Server` builds it all, loading and warming up the models (errors surface there, before serving), and
owns its life: `running()` starts what runs beside the transports (the model manager and its registry
watch, the monitor and its tick, the rollout controller, the following of the registry's tokens) and
stops it in reverse;
`serve()` runs gRPC and HTTP as siblings inside it until SIGINT or SIGTERM. `shipyard serve` runs one
in its own process, or one in each of `--workers N` processes (server/workers.py); tests run
`running()` and call the ASGI app in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import uvicorn
from pydantic import BaseModel

from shipyard.config import Settings
from shipyard.dataplane import DataPlane
from shipyard.errors import InvalidInput
from shipyard.monitor.live import Monitor
from shipyard.registry import Registry
from shipyard.rollout.controller import Controller
from shipyard.runtime import ModelManager, RunnerOptions
from shipyard.server.auth import Auth, is_loopback
from shipyard.server.handlers import overload_refusal
from shipyard.server.http import create_app
from shipyard.server.transport import protocol_for

log = logging.getLogger("shipyard.server")
TICK_S = 1.0
DRIFT_EVERY_S = 10.0
"""The drift gauges are scored at most this often (a scrape every 15 s or more is the norm). Scoring a
version's window takes ~2 ms in a thread, made of many small numpy calls, each of which takes the GIL
back from the event loop under load. Pages and `monitor status` score drift when they are asked."""


class ServeSpec(BaseModel):
    """Everything a server process needs to build itself; travels to `--workers` as JSON."""

    settings: Settings
    names: list[str] | None = None
    grpc: bool = True
    workers: int = 1
    log_level: str = "warning"
    access_log: bool = False


class Server:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        names: list[str] | None = None,
        grpc: bool = True,
        reuse_port: bool = False,
        auth: Auth | None = None,
        monitor: Monitor | None = None,
        tick_s: float | None = TICK_S,
    ) -> None:
        """`names`: the models to serve (None: every one registered). `reuse_port` lets `--workers`
        processes share the gRPC port. `auth`: the caller's, kept up to date by them; by default the
        admin tokens of `settings` and the registry's tokens, followed while serving. `monitor`: by
        default one as `settings.monitor` says (or none); its gauges are updated every `tick_s` (None:
        only when tick() is called)."""
        self.settings, self.registry, self.tick_s = settings, registry, tick_s
        self._drift_scored = -math.inf  # when the drift gauges were last scored (time.monotonic)
        if monitor is None and settings.monitor.enabled:
            monitor = Monitor(settings.monitor, str(settings.predictions_dir))
        self.monitor = monitor
        self.manager = ModelManager(
            registry,
            RunnerOptions(settings.intra_op_threads, settings.inter_op_threads, settings.providers),
            settings.serving,
            watch_interval_s=settings.watch_interval_s,
            alias=settings.alias,
            memory_budget_mb=settings.memory_budget_mb,
            observer=self.monitor.observer if self.monitor else None,
        )
        self.manager.load(names or None)
        self.dataplane = DataPlane(self.manager, self.monitor)
        self._follow_tokens = auth is None
        self.auth = auth or Auth(settings.named_admin_tokens, loopback=is_loopback(settings.host))
        if self._follow_tokens:
            self.auth.update(registry.tokens())
        self.app = create_app(
            self.dataplane,
            self.auth,
            max_body_bytes=settings.max_body_bytes,
            edge_pages=settings.home_dir / "edge",
        )
        self.controller = Controller(registry, self.monitor)
        self.grpc_port = settings.grpc_port if grpc else None
        self.reuse_port = reuse_port
        self.tls = tls_pair(settings)

    @classmethod
    def from_spec(cls, spec: ServeSpec, *, shared_ports: bool = False) -> Server:
        """`shared_ports`: other processes serve the same ports (as `--workers` do when there are
        several, and Ray Serve's replicas always)."""
        server = cls(
            spec.settings,
            Registry.open(spec.settings),
            names=spec.names,
            grpc=spec.grpc,
            reuse_port=shared_ports or spec.workers > 1,
        )
        settle_garbage_collector()
        return server

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The models' batchers and registry watch, the monitor and its tick, the tokens followed."""
        async with contextlib.AsyncExitStack() as stack:
            if self.monitor is not None:
                self.monitor.start()
                stack.push_async_callback(asyncio.to_thread, self.monitor.close)  # the log, last
            await self.manager.start()
            stack.push_async_callback(self.manager.aclose)  # queued requests finish first
            if self.monitor is not None and self.tick_s is not None:
                await stack.enter_async_context(every(self.tick_s, self.tick, "the monitor's tick"))
            if self.tick_s is not None:
                await stack.enter_async_context(every(self.tick_s, self.roll_out, "the rollout controller"))
            if self._follow_tokens:
                interval = self.settings.watch_interval_s or 1.0  # revocations are followed regardless
                await stack.enter_async_context(every(interval, self._read_tokens, "reading the tokens"))
            settle_garbage_collector()
            yield

    async def serve(
        self, sockets: list[socket.socket], *, log_level: str = "warning", access_log: bool = False
    ) -> None:
        """gRPC and HTTP (on `sockets`, bound already), siblings, until SIGINT or SIGTERM. uvicorn's
        handling of those covers the whole: a signal stops HTTP, then everything else stops (queued
        requests answered, the prediction log written), and only then is it raised again."""
        http = uvicorn.Server(self._http_config(log_level, access_log))
        with http.capture_signals():
            async with self.running(), self._grpc():
                await http.serve(sockets=sockets)

    @contextlib.asynccontextmanager
    async def listening(
        self, sockets: list[socket.socket], *, headers: list[tuple[str, str]] | None = None
    ) -> AsyncIterator[None]:
        """HTTP (on `sockets`) and gRPC in the background of a loop that someone else owns, with its
        signals (a Ray Serve replica's); `running()` must be entered first. `headers` go on every
        HTTP answer, prebuilt by uvicorn (which replica answered)."""
        config = self._http_config("warning", access_log=False)
        config.headers = headers or []
        http = uvicorn.Server(config)  # off the main thread, it leaves the signals alone
        async with self._grpc():
            task = asyncio.create_task(http.serve(sockets=sockets), name="http")
            try:
                while not http.started and not task.done():
                    await asyncio.sleep(0.01)  # uvicorn says it has started only by this flag
                if task.done():
                    task.result()  # its start-up failure, raised here
                    raise RuntimeError("HTTP server stopped as it started")
                yield
            finally:
                http.should_exit = True
                await task

    def run(self, sockets: list[socket.socket], **options: Any) -> None:
        # uvloop, as uvicorn picks by default: against asyncio's loop it served ~15% more requests a
        # second on the digits MLP at 64 connections (bench/floor.py), and a fresh client still got
        # its answer in 0.2 s behind 1,920 connects left pending (asyncio's: the same)
        try:
            import uvloop
        except ImportError:  # not on Windows: asyncio's own
            factory = None
        else:
            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self.serve(sockets, **options))

    def _grpc(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.grpc_port is None:
            return contextlib.nullcontext()
        from shipyard.server.grpc import grpc_server

        settings = self.settings
        return grpc_server(
            self.dataplane,
            settings.host,
            self.grpc_port,
            settings.max_body_bytes,
            reuse_port=self.reuse_port,
            auth=self.auth,
            limits=settings.transport,
            tls=self.tls,
        )

    def _http_config(self, log_level: str, access_log: bool) -> uvicorn.Config:
        settings, limits = self.settings, self.settings.transport
        return uvicorn.Config(
            self.app,
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            access_log=access_log,
            lifespan="off",  # what runs beside the app is this server's
            # called per connection as uvicorn calls a protocol class
            http=cast(Any, protocol_for(limits, overload_refusal(self.dataplane, self.auth))),
            timeout_keep_alive=limits.keep_alive_s,
            ssl_certfile=settings.tls_cert,
            ssl_keyfile=settings.tls_key,
        )

    async def tick(self) -> None:
        """The monitor's gauges (state, accuracy, cost, and every DRIFT_EVERY_S drift), off the
        request path."""
        assert self.monitor is not None
        reports = None
        now = time.monotonic()
        if now - self._drift_scored >= DRIFT_EVERY_S:
            self._drift_scored = now
            reports = await asyncio.to_thread(self.monitor.drift_reports)
        else:  # the confidence histogram stays a second behind at most
            await asyncio.to_thread(self.monitor.windows)
        if self.dataplane.shadow is not None:
            self.dataplane.shadow.flush()
        self.monitor.tick(self.manager.gauges(), reports)

    async def roll_out(self) -> None:
        """Rollouts (rollout/controller.py): this process's evidence reported and, when it leads, each
        rollout judged and moved; what moved traffic is followed here at once."""
        moved = await asyncio.to_thread(self.controller.tick)
        for line in moved:
            log.info("rollout: %s", line)
        served = [name for name in self.manager.names if any(line.startswith(f"{name}: ") for line in moved)]
        if served:
            await self.manager.refresh(served)

    async def _read_tokens(self) -> None:
        """Tokens created or revoked in the registry take effect here within an interval."""
        self.auth.update(await asyncio.to_thread(lambda: list(self.registry.tokens())))


def settle_garbage_collector() -> None:
    """Take what is built so far out of the collector's sight, at start and once the models are loaded.

    Everything built before serving (imports, ORM, sessions, models, their monitors: ~135k objects)
    lives as long as the server. Left in the collector, each full collection rescanned it for ~70 ms
    with the loop stopped, which was the p99 tail at concurrency 64 (bench/, gc.callbacks timings);
    frozen, ~3 ms. The young generation collects 10,000 new objects at a time, not 700: a request
    leaves a few dozen behind for a moment, and collecting them that often cost ~15% of the requests a
    second on the digits MLP."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


@contextlib.asynccontextmanager
async def every(seconds: float, step: Callable[[], Awaitable[None]], what: str) -> AsyncIterator[None]:
    """`step` every `seconds` while the block runs; a step that fails is logged and tried again."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)  # a period, not a synchronisation
            try:
                await step()
            except Exception:
                log.exception("%s failed; trying again", what)

    task = asyncio.create_task(loop(), name=what)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def tls_pair(settings: Settings) -> tuple[bytes, bytes] | None:
    """(certificate, key) in PEM when TLS is on; unreadable files are one clear error."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    try:
        return settings.tls_cert.read_bytes(), settings.tls_key.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the TLS certificate or key: {exc.strerror}") from None
