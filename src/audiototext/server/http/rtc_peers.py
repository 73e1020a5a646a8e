"""The open WebRTC peers of the HTTP listener, for shutdown.

The composition root closes them after the sessions were finalised, so each client got its
last results first. (Apart from :mod:`.rtc_peer` so that :class:`~.context.HttpContext` can
hold them without importing the stream adapter.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

__all__ = ["Peer", "RtcPeers"]


class Peer(Protocol):
    closed: asyncio.Event  # set once the peer connection is closed
    on_closed: list[Callable[[], None]]

    async def close(self) -> None: ...


class RtcPeers:
    """The open peers; ``closing`` once shutdown began (new offers are refused)."""

    def __init__(self) -> None:
        self._peers: set[Peer] = set()
        self.closing = False

    def add(self, peer: Peer) -> None:
        if peer.closed.is_set():
            return
        self._peers.add(peer)
        peer.on_closed.append(lambda: self._peers.discard(peer))

    def __len__(self) -> int:
        return len(self._peers)

    async def close_all(self, wait_s: float = 1.0) -> None:
        """Close every peer; those still sending their last events get ``wait_s`` first."""
        self.closing = True
        peers = list(self._peers)
        if peers:
            waiters = [asyncio.ensure_future(p.closed.wait()) for p in peers]
            await asyncio.wait(waiters, timeout=wait_s)
            for waiter in waiters:
                waiter.cancel()
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        self._peers.clear()
