"""Chooses the wire encoding of the next chunk from measured acknowledgement delay.

A congested link shows up as a growing delay between sending a chunk and its Ack (the
server acknowledges as soon as it has the chunk, so the delay is mostly network queueing).
Levels go from PCM16 (exact, about 256 kbit/s at 16 kHz) down through Opus bit rates; the
controller steps down when chunks of the current level take longer than ``degrade_rtt_ms``
to be acknowledged, and steps back up after a quiet period that doubles each time a step up
proved too much for the link. The server may also cap the bit rate (``Ack.max_bitrate_bps``,
its controller's reading of the link): levels above the cap are skipped until it is lifted.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LADDER", "AdaptiveEncoding", "Level"]


@dataclass(frozen=True)
class Level:
    encoding: str  # "PCM16", "FLOAT32" or "OPUS"
    bit_rate: int = 0

    def __str__(self) -> str:
        return self.encoding if not self.bit_rate else f"{self.encoding}@{self.bit_rate // 1000}k"

    def bits_per_s(self, sample_rate_hz: int, channels: int = 1) -> int:
        """What this level puts on the wire (Opus: its bit rate; PCM: the raw samples)."""
        if self.bit_rate:
            return self.bit_rate
        return sample_rate_hz * channels * (32 if self.encoding == "FLOAT32" else 16)


DEFAULT_LADDER = (
    Level("PCM16"),
    Level("OPUS", 32_000),
    Level("OPUS", 16_000),
    Level("OPUS", 12_000),
)


class AdaptiveEncoding:
    def __init__(
        self,
        ladder: tuple[Level, ...] = DEFAULT_LADDER,
        *,
        degrade_rtt_ms: float = 400.0,
        upgrade_rtt_ms: float = 120.0,
        quiet_s: float = 5.0,
        enabled: bool = True,
        sample_rate_hz: int = 16_000,
        channels: int = 1,
    ) -> None:
        if not ladder:
            raise ValueError("the encoding ladder is empty")
        self.ladder = ladder
        self.index = 0
        self.enabled = enabled and len(ladder) > 1
        self.degrade_rtt_ms = degrade_rtt_ms
        self.upgrade_rtt_ms = upgrade_rtt_ms
        self._quiet_s = quiet_s
        self._level_since_seq = 0  # chunks from this seq on use the current level
        self._rtt_ms: float | None = None
        self._good_since: float | None = None
        self._last_upgrade: float | None = None
        self.switches: list[tuple[float, Level]] = []
        self._rate = (sample_rate_hz, channels)
        self.max_bps = 0  # the server's cap (0: none)

    def _fits(self, index: int) -> bool:
        return not self.max_bps or self.ladder[index].bits_per_s(*self._rate) <= self.max_bps

    def cap(self, max_bps: int, now: float, next_seq: int) -> bool:
        """The server asks for at most ``max_bps`` (0: no limit); True when the level changed.

        The cheapest level is kept when none fits (the server asks, it cannot make the
        encoder go lower); a lifted cap lets the link measurements step back up.
        """
        self.max_bps = max(0, max_bps)
        if not self.enabled or self._fits(self.index):
            return False
        index = next(
            (i for i in range(self.index, len(self.ladder)) if self._fits(i)),
            len(self.ladder) - 1,
        )
        if index == self.index:
            return False
        self._change(index, now, next_seq)
        return True

    @property
    def level(self) -> Level:
        return self.ladder[self.index]

    @property
    def rtt_ms(self) -> float | None:
        return self._rtt_ms

    def on_ack(self, seq: int, rtt_ms: float, now: float, next_seq: int) -> bool:
        """Record the Ack of chunk ``seq``; True when the level changed.

        ``next_seq`` is the seq the next new chunk will get (the first of a new level).
        """
        if seq < self._level_since_seq:
            return False  # a chunk of the previous level says nothing about this one
        self._rtt_ms = rtt_ms if self._rtt_ms is None else 0.7 * self._rtt_ms + 0.3 * rtt_ms
        if not self.enabled:
            return False
        if self._rtt_ms > self.degrade_rtt_ms and self.index + 1 < len(self.ladder):
            if self._last_upgrade is not None and now - self._last_upgrade < 2 * self._quiet_s:
                self._quiet_s *= 2  # the step up did not hold: wait longer before the next
            self._change(self.index + 1, now, next_seq)
            return True
        if self._rtt_ms < self.upgrade_rtt_ms:
            if self._good_since is None:
                self._good_since = now
            elif (
                self.index > 0
                and self._fits(self.index - 1)
                and now - self._good_since >= self._quiet_s
            ):
                self._change(self.index - 1, now, next_seq)
                self._last_upgrade = now
                return True
        else:
            self._good_since = None
        return False

    def _change(self, index: int, now: float, next_seq: int) -> None:
        self.index = index
        self._level_since_seq = next_seq
        self._rtt_ms = None
        self._good_since = None
        self.switches.append((now, self.level))
