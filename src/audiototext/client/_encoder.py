"""Encodes a stream's blocks of audio at the level :class:`AdaptiveEncoding` picks.

An Opus run is flushed whenever the level changes (to PCM or to another bit rate), so the
server's decoder sees each run end cleanly.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from audiototext.client._adaptive import Level
from audiototext.client._settings import StreamSettings
from audiototext.wire.codec import OPUS_RATES_HZ, Encoding, OpusEncoder, encode_pcm16

__all__ = ["ChunkEncoder", "ladder_for"]


def ladder_for(settings: StreamSettings) -> tuple[Level, ...]:
    """The levels a stream may use: the whole ladder for ``compression="auto"`` (PCM16 alone
    when Opus cannot carry the audio), else the one encoding asked for."""
    opus_ok = settings.sample_rate_hz in OPUS_RATES_HZ and settings.channels <= 2
    if settings.compression == "auto":
        return settings.ladder if opus_ok else (Level("PCM16"),)
    if settings.compression == "opus":
        if not opus_ok:
            raise ValueError(f"Opus cannot carry {settings.sample_rate_hz} Hz audio")
        return (Level("OPUS", settings.opus_bit_rate),)
    return (Level(settings.compression.upper()),)


class ChunkEncoder:
    def __init__(self, sample_rate_hz: int, channels: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self._opus: OpusEncoder | None = None

    def encode(self, block: NDArray[np.float32], level: Level) -> list[tuple[bytes, Encoding]]:
        """The payloads for ``block`` at ``level``, in order: the tail of an Opus run that
        ends here (if any), then the block's own (possibly empty, as Opus buffers)."""
        out: list[tuple[bytes, Encoding]] = []
        if level.encoding != "OPUS" and self._opus is not None:
            tail = self._opus.flush()  # end the Opus run cleanly before PCM resumes
            self._opus = None
            if tail:
                out.append((tail, Encoding.OPUS))
        if level.encoding == "OPUS":
            if self._opus is None or self._opus.bit_rate != level.bit_rate:
                if self._opus is not None:
                    tail = self._opus.flush()
                    if tail:
                        out.append((tail, Encoding.OPUS))
                self._opus = OpusEncoder(self.sample_rate_hz, self.channels, level.bit_rate)
            out.append((self._opus.encode(block), Encoding.OPUS))
        elif level.encoding == "FLOAT32":
            out.append((block.astype("<f4").tobytes(), Encoding.FLOAT32))
        else:
            out.append((encode_pcm16(block), Encoding.PCM16))
        return out

    def flush(self) -> bytes:
        """The tail of the current Opus run (b"" when there is none): the end of the stream."""
        if self._opus is None:
            return b""
        tail, self._opus = self._opus.flush(), None
        return tail
