"""`shipyard serve --workers N`: N processes, each a whole server (server/serving.py) with its own
sessions, serving the HTTP socket the parent bound and the gRPC port (shared with SO_REUSEPORT).

The parent only watches them: a worker that ends is started again, unless it failed to start (then
they all stop, and the parent exits with an error); SIGINT and SIGTERM stop them all.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from shipyard.errors import ShipyardError
from shipyard.server.serving import Server, ServeSpec

log = logging.getLogger("shipyard.server")
STARTUP_FAILURE = 3
WATCH_S = 0.5


def run_workers(spec: ServeSpec, sock: socket.socket) -> bool:
    """Serve with `spec.workers` processes until a signal; False when a worker failed to start."""
    multiprocessing.allow_connection_pickling()  # the socket travels to each worker
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no loop, threads or sessions
    stopping = False

    def stop(_signal: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    def start() -> BaseProcess:
        worker = context.Process(target=_worker, args=(spec.model_dump_json(), sock), name="shipyard-worker")
        worker.start()
        return worker

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = True
    workers = [start() for _ in range(spec.workers)]
    try:
        while not stopping:
            wait([worker.sentinel for worker in workers], timeout=WATCH_S)
            for i, worker in enumerate(workers):
                if worker.exitcode is None or stopping:
                    continue
                if worker.exitcode == STARTUP_FAILURE:
                    started, stopping = False, True
                    break
                log.warning("worker %s ended (exit status %s): starting another", worker.pid, worker.exitcode)
                workers[i] = start()
    finally:
        for worker in workers:
            if worker.exitcode is None:
                worker.terminate()  # SIGTERM: each stops as a single server does
        for worker in workers:
            worker.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return started


def _worker(spec_json: str, sock: socket.socket) -> None:
    spec = ServeSpec.model_validate_json(spec_json)
    try:
        server = Server.from_spec(spec)
    except ShipyardError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    try:
        server.run([sock], log_level=spec.log_level, access_log=spec.access_log)
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches every process of the terminal's group: the parent stops the rest
    finally:
        server.manager.unload_all()
