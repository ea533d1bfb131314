"""`shipyard serve --engine ray --autoscale`: under load, Ray adds a replica (the replicas report the
requests they hold, which Ray's own count never sees). Apart from test_ray_serve.py, so that its
cluster is down before this one starts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_ray_serve import ROW, on_ray, replicas_answering

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_ray_at_a_time")]


def test_load_adds_a_replica(served_home: Path) -> None:
    with on_ray(served_home, "--autoscale", "1:2:2") as srv:
        assert len(replicas_answering(srv.url, tries=20)) == 1
        stop, statuses = threading.Event(), []

        def load() -> None:  # a client that keeps a request in flight, on one connection
            with httpx.Client(timeout=10) as http:
                while not stop.is_set():
                    statuses.append(http.post(f"{srv.url}/v2/models/digits/infer", json=ROW).status_code)

        clients = [threading.Thread(target=load) for _ in range(8)]
        for client in clients:
            client.start()
        try:
            deadline = time.monotonic() + 90  # metrics pushed, then the upscale delay (5 s)
            while len(replicas_answering(srv.url, tries=30)) < 2:
                assert time.monotonic() < deadline, "no second replica under load"
        finally:
            stop.set()
            for client in clients:
                client.join()
        assert statuses and set(statuses) == {200}
