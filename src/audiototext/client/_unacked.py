"""The chunks the server has not acknowledged: what a reconnect resends, and what is in flight.

Chunks are numbered from 1 (``seq``) in the order they are made. The server acknowledges by
``seq``; everything up to an acknowledged ``seq`` is dropped. ``send_seq`` is the next chunk
to write on the current connection: after a reconnect it restarts where the server says it
stopped, so exactly the chunks it has not got are sent again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from audiototext.wire.codec import Encoding

__all__ = ["Chunk", "UnackedAudio"]


@dataclass
class Chunk:
    seq: int
    data: bytes
    encoding: Encoding
    ms: float
    sent_at: float = 0.0  # time.monotonic() of the last write; 0: never sent


class UnackedAudio:
    def __init__(self) -> None:
        self._ring: deque[Chunk] = deque()  # in seq order
        self.ms = 0.0  # of audio held
        self.next_seq = 1  # of the next chunk made
        self.send_seq = 1  # next chunk to write on the current connection

    def add(self, data: bytes, encoding: Encoding, ms: float) -> None:
        self._ring.append(Chunk(self.next_seq, data, encoding, ms))
        self.ms += ms
        self.next_seq += 1

    def acknowledge(self, seq: int) -> Chunk | None:
        """Drop the chunks up to ``seq``; the chunk ``seq`` itself if it was held and sent
        (its round trip measures the link), else None."""
        acked = None
        while self._ring and self._ring[0].seq <= seq:
            chunk = self._ring.popleft()
            self.ms -= chunk.ms
            if chunk.seq == seq and chunk.sent_at:
                acked = chunk
        return acked

    def inflight_ms(self) -> float:
        """Audio written on this connection and not acknowledged yet."""
        return sum(c.ms for c in self._ring if c.seq < self.send_seq)

    def next_unsent(self) -> Chunk | None:
        if self.send_seq >= self.next_seq or not self._ring:
            return None
        index = self.send_seq - self._ring[0].seq
        if index < 0:
            # The server has chunks we have not had an Ack for yet; skip ahead.
            self.send_seq = self._ring[0].seq
            index = 0
        return self._ring[index] if index < len(self._ring) else None
