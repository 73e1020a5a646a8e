"""The chunks a reconnect may resend: unacknowledged ones, and with a shared session store
(``SessionStarted.session_store``) every chunk after the last one the store holds.

Chunks are numbered from 1 (``seq``) in the order they are made. The server acknowledges by
``seq``; an acknowledged chunk is dropped unless the session is kept in a shared store and the
chunk is newer than ``Ack.stored_seq``: another server resuming from the store restarts after
that chunk, so those are kept (acknowledged, not in flight, not counted against the unacked
budget) until the store has them. ``send_seq`` is the next chunk to write on the current
connection: after a reconnect it restarts where the server says it stopped, so exactly the
chunks it has not got are sent again.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from audiototext.wire.codec import Encoding

__all__ = ["Chunk", "UnackedAudio"]

log = logging.getLogger(__name__)


@dataclass
class Chunk:
    seq: int
    data: bytes
    encoding: Encoding
    ms: float
    sent_at: float = 0.0  # time.monotonic() of the last write; 0: never sent


class UnackedAudio:
    def __init__(self, max_kept_ms: float = 300_000.0) -> None:
        self._ring: deque[Chunk] = deque()  # in seq order
        self.ms = 0.0  # of unacknowledged audio held
        self.kept_ms = 0.0  # of acknowledged audio kept for a resume from the store
        self.next_seq = 1  # of the next chunk made
        self.send_seq = 1  # next chunk to write on the current connection
        self.acked = 0  # the highest seq acknowledged
        self.keep_after: int | None = None  # with a session store: its stored_seq
        self.max_kept_ms = max_kept_ms
        self._warned = False

    def add(self, data: bytes, encoding: Encoding, ms: float) -> None:
        self._ring.append(Chunk(self.next_seq, data, encoding, ms))
        self.ms += ms
        self.next_seq += 1

    def acknowledge(self, seq: int) -> Chunk | None:
        """Mark the chunks up to ``seq`` acknowledged; the chunk ``seq`` itself if it was
        held and sent (its round trip measures the link), else None."""
        acked = None
        if seq > self.acked:
            first = self._ring[0].seq if self._ring else 0
            for i in range(max(0, self.acked + 1 - first), len(self._ring)):
                chunk = self._ring[i]
                if chunk.seq > seq:
                    break
                self.ms -= chunk.ms
                self.kept_ms += chunk.ms
                if chunk.seq == seq and chunk.sent_at:
                    acked = chunk
            self.acked = seq
        self._drop()
        return acked

    def stored(self, seq: int) -> None:
        """The session store holds the chunks up to ``seq`` (``Ack.stored_seq``)."""
        if self.keep_after is None or seq > self.keep_after:
            self.keep_after = seq
        self._drop()

    def _drop(self) -> None:
        floor = self.acked if self.keep_after is None else min(self.acked, self.keep_after)
        while self._ring and self._ring[0].seq <= floor:
            self.kept_ms -= self._ring.popleft().ms
        while self.kept_ms > self.max_kept_ms and self._ring and self._ring[0].seq <= self.acked:
            # Bounded: past this, a resume on another server may find audio missing.
            self.kept_ms -= self._ring.popleft().ms
            if not self._warned:
                log.warning(
                    "more than %.0f s since the session store's last state: older audio "
                    "is dropped (a resume on another server may fail)",
                    self.max_kept_ms / 1000,
                )
                self._warned = True

    def inflight_ms(self) -> float:
        """Audio written on this connection and not acknowledged yet."""
        return sum(c.ms for c in self._ring if self.acked < c.seq < self.send_seq)

    def next_unsent(self) -> Chunk | None:
        if self.send_seq >= self.next_seq or not self._ring:
            return None
        index = self.send_seq - self._ring[0].seq
        if index < 0:
            # The server has chunks we have not had an Ack for yet; skip ahead.
            self.send_seq = self._ring[0].seq
            index = 0
        return self._ring[index] if index < len(self._ring) else None
