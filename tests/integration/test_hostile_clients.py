"""Clients that are slow, idle, many or gone, against a real server with short transport limits: each is
cut off or refused cheaply, none is counted as a server error, and health checks keep answering."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from shipyard.config import Settings
from shipyard.registry import Registry
from tests.conftest import register_digits
from tests.integration.conftest import Server, start_server, stop_server

LIMITS = {
    "SHIPYARD_TRANSPORT__HEADER_TIMEOUT_S": "1",
    "SHIPYARD_TRANSPORT__BODY_TIMEOUT_S": "1",
    "SHIPYARD_TRANSPORT__MAX_CONNECTIONS": "40",
}
PREDICT = orjson.dumps({"input": [0.0] * 64})


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("limited")
    registry = Registry.open(Settings(home=home))
    register_digits(registry)
    registry.close()
    server = start_server(home, env=LIMITS)
    yield server
    stop_server(server)


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket timeout bounds it)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def healthy(server: Server) -> bool:
    return httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200


def test_an_idle_connection_is_closed_with_408(limited: Server) -> None:
    with connect(limited) as sock:
        started = time.monotonic()
        answer = read_all(sock)
        assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 408")
    assert healthy(limited)


def test_a_request_head_sent_a_byte_at_a_time_is_cut_off(limited: Server) -> None:
    head = b"POST /v1/models/digits/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    with connect(limited) as sock:
        started = time.monotonic()
        closed = False
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)  # the slow client under test, not a synchronisation
            if time.monotonic() - started > 5:
                break
        answer = b"" if closed else read_all(sock)
    assert closed or answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 5
    assert healthy(limited)


def test_a_body_that_stops_arriving_is_cut_off(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(b"POST /v1/models/digits/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        started = time.monotonic()
        assert read_all(sock) == b""  # closed, not answered
        assert time.monotonic() - started < 5
    assert healthy(limited)


def test_past_the_cap_new_connections_take_the_place_of_idle_ones(limited: Server) -> None:
    socks = [connect(limited) for _ in range(60)]  # the cap is 40: twenty more than fit
    try:
        assert healthy(limited)  # a new client gets in: the oldest idle connection made room
        closed = 0
        for sock in socks[:25]:
            sock.settimeout(2)
            with contextlib.suppress(TimeoutError):
                closed += sock.recv(100) == b""
        assert closed >= 20, closed  # the oldest ones, closed by the server
        with connect(limited) as fresh:  # and the newest still work
            fresh.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert fresh.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        for sock in socks:
            sock.close()
    assert healthy(limited)


def test_clients_that_vanish_mid_body_are_not_server_errors(limited: Server) -> None:
    head = b"POST /v1/models/digits/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
    for _ in range(30):
        with connect(limited) as sock:
            sock.sendall(head + b'{"input": [1, 2, 3')
    deadline = time.monotonic() + 10
    metrics = ""
    while time.monotonic() < deadline:  # the server notices each disconnect on its own loop
        metrics = httpx.get(f"{limited.url}/metrics", timeout=5).text
        if 'status="499"' in metrics:
            break
    assert 'status="499"' in metrics
    assert 'status="500"' not in metrics
    assert limited.log is not None
    log = limited.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
    assert healthy(limited)


def test_a_4xx_keeps_the_keep_alive_connection(limited: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=10)
    try:
        for body, path, status in [
            (b"{not json", "/v1/models/digits/predict", 400),
            (b'{"input": [1]}', "/v1/models/nope/predict", 404),
            (
                orjson.dumps(
                    {"inputs": [{"name": "input", "shape": [0, 2**62], "datatype": "FP32", "data": []}]}
                ),
                "/v2/models/digits/infer",
                400,
            ),
            (b"{}", "/v2/models/digits/infer?x=1", 400),
        ]:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            sock = conn.sock
            response = conn.getresponse()
            assert response.status == status
            assert "error" in orjson.loads(response.read())
            conn.request("POST", "/v1/models/digits/predict", body=PREDICT)
            assert conn.sock is sock  # the same connection, still open
            ok = conn.getresponse()
            assert ok.status == 200
            ok.read()
    finally:
        conn.close()


def test_a_connection_answered_before_its_body_still_closes_when_idle(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(b"POST /v1/models/nope/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 404")  # answered before the body came
        sock.sendall(b"x" * 2000)  # the body arrives after the answer, then nothing more
        started = time.monotonic()
        read_all(sock)  # the server closes it: no connection is kept for ever
        assert time.monotonic() - started < 9
