"""The HTTP socket `shipyard serve` takes before loading models: connections accepted on it must get
TCP_NODELAY from asyncio, or every answer written in two parts waits ~40 ms for a delayed ACK."""

from __future__ import annotations

import asyncio
import socket

import pytest

from shipyard.cli.serve import _bind
from shipyard.errors import Unavailable


def test_connections_on_the_served_socket_have_tcp_nodelay() -> None:
    async def main() -> int:
        sock = _bind("127.0.0.1", 0, "--port")
        sock.listen(8)
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server_side = writer.get_extra_info("socket")
            accepted.set_result(server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=sock)
        _reader, writer = await asyncio.open_connection(*sock.getsockname())
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) != 0


def test_a_taken_port_is_one_line_naming_the_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(Unavailable, match=r"cannot listen on 127\.0\.0\.1:\d+ .*choose another --port"):
            _bind("127.0.0.1", taken.getsockname()[1], "--port")
