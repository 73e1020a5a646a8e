"""The HTTP listener's connections: Nagle off, so a keep-alive answer is not held back."""

from __future__ import annotations

import asyncio
import http.client
import socket

from server.fake_engine import FakeRecognizer
from server.grpc_harness import run
from server.ws_harness import http_server


def test_accepted_connections_have_tcp_nodelay() -> None:
    """Without TCP_NODELAY each answer on a kept-alive connection (the page's polls, a
    client's REST calls) waited for the peer's delayed ACK, about 40 ms, before its body
    went out: asyncio sets it only on sockets created as IPPROTO_TCP."""

    async def main() -> list[int]:
        async with http_server(FakeRecognizer()) as srv:
            assert srv.http is not None
            port = srv.http.port

            def two_requests() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for _ in range(2):  # the second one on the same, kept-alive connection
                    conn.request("GET", "/api/v1/health")
                    assert conn.getresponse().read()
                flags.extend(_nodelay_of_open_connections(srv))
                conn.close()

            flags: list[int] = []
            await asyncio.to_thread(two_requests)
            return flags

    flags = run(main(), 60)
    assert flags and all(flags), flags


def _nodelay_of_open_connections(srv: object) -> list[int]:
    http_listener = srv.http  # type: ignore[attr-defined]
    out = []
    for conn in list(http_listener._server.server_state.connections):
        sock = conn.transport.get_extra_info("socket")
        out.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return out
