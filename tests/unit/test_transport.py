"""The socket `shipyard serve` listens on, bound before the models load."""

from __future__ import annotations

import asyncio
import socket

from shipyard.server.transport import bind_tcp


async def _nodelay_of_a_connection() -> int:
    loop = asyncio.get_running_loop()
    sock = bind_tcp("127.0.0.1", 0)
    sock.listen()
    accepted: asyncio.Future[int] = loop.create_future()

    class Accept(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            conn = transport.get_extra_info("socket")
            accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await loop.create_server(Accept, sock=sock)
    _, writer = await asyncio.open_connection(*sock.getsockname())
    try:
        return await accepted
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


def test_its_connections_send_at_once() -> None:
    """TCP_NODELAY on every connection: an answer written as a head and a body does not wait for the
    client's delayed ACK (asyncio sets it only on a socket made as TCP by name)."""
    assert asyncio.run(_nodelay_of_a_connection()) != 0
