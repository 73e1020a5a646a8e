"""A WebRTC audio track → 100-ms PCM16 chunks of 16-kHz mono, the stream layer's input.

aiortc's Opus decoder gives 48-kHz stereo s16 frames of 960 samples, stamped with the RTP
clock (``pts`` in ``time_base``). :class:`FrameConverter` mixes them to mono, resamples with
one stateful soxr stream (no clicks at frame edges) and fills the time of frames that never
came (lost packets) with silence, so the recogniser's clock stays the speaker's.
:func:`consume_track` reads a track for as long as it lives; a reader that falls behind drops
the backlog aiortc queued (its queue is unbounded) instead of lagging further, and counts it.
:func:`release_promptly` makes aiortc hand each packet on as soon as the next one arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import soxr
from numpy.typing import NDArray

__all__ = [
    "CHUNK_SAMPLES",
    "RATE_HZ",
    "FrameConverter",
    "RtcAudioStats",
    "Track",
    "consume_track",
    "release_promptly",
]

log = logging.getLogger(__name__)

RATE_HZ = 16_000  # what the stream config declares: PCM16, 16 kHz, mono
CHUNK_SAMPLES = RATE_HZ // 10  # 100 ms, as the page's WebSocket chunks
MAX_GAP_S = 5.0  # a longer jump of the RTP clock is a restart, not lost audio
MAX_BACKLOG_S = 0.5  # queued beyond this, the reader drops to the newest frames
KEEP_AFTER_DROP_S = 0.1

# aiortc's audio jitter buffer keeps four complete frames before it releases the oldest, a
# playout cushion that adds 80 ms to every final. Nothing is played here; one frame is the
# least it can hold, and reordering is still repaired (a frame waits for the packets before it).
PREFETCH_FRAMES = 1
_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"  # aiortc 1.16's private field

FloatArray = NDArray[np.float32]


@dataclass
class RtcAudioStats:
    """What happened to a track's audio; sent to the page with the metrics."""

    frames: int = 0
    audio_ms: int = 0  # received and passed on (resampled time, fills included)
    lost_ms: int = 0  # never arrived (lost packets): filled with silence
    late_frames: int = 0  # arrived after newer audio: dropped
    dropped_frames: int = 0  # the reader fell behind: the oldest queued frames dropped
    dropped_ms: int = 0  # ... that much audio (also the stream layer's refusals, no credit)
    prefix_ms: int = 0  # captured before the track connected, sent on the data channel
    held_ms: int = 0  # the longest track audio waited for the prefix's end (wall clock)

    def to_json(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "audio_ms": self.audio_ms,
            "lost_ms": self.lost_ms,
            "late_frames": self.late_frames,
            "dropped_frames": self.dropped_frames,
            "dropped_ms": self.dropped_ms,
            "prefix_ms": self.prefix_ms,
            "held_ms": self.held_ms,
        }


def _mono(frame: Any) -> FloatArray:
    """One float32 channel in [-1, 1] from an s16/flt frame, packed or planar."""
    arr = np.asarray(frame.to_ndarray())
    channels = max(1, len(frame.layout.channels))
    if arr.dtype == np.int16:
        samples = arr.astype(np.float32) / np.float32(32768.0)
    else:
        samples = arr.astype(np.float32)
    if frame.format.is_planar:
        mixed = samples.reshape(channels, -1).mean(axis=0)
    else:
        mixed = samples.reshape(-1, channels).mean(axis=1)
    return np.ascontiguousarray(mixed, dtype=np.float32)


class FrameConverter:
    """Audio frames in, 100-ms PCM16 chunks (16 kHz mono) out; one per track."""

    def __init__(self, stats: RtcAudioStats | None = None) -> None:
        self.stats = stats or RtcAudioStats()
        self._rate = 0
        self._resampler: soxr.ResampleStream | None = None
        self._next_pts: int | None = None  # where the next frame should start
        self._time_base: Fraction | None = None
        self._pending = np.zeros(0, dtype=np.float32)

    def resync(self) -> None:
        """Forget where the next frame should start (after frames were dropped on purpose)."""
        self._next_pts = None

    def push(self, frame: Any) -> list[bytes]:
        self.stats.frames += 1
        rate = int(frame.sample_rate)
        mono = _mono(frame)
        if rate != self._rate or self._resampler is None:
            if self._resampler is not None:
                self._append(np.asarray(self._resampler.resample_chunk(np.zeros(0), last=True)))
            self._rate = rate
            self._resampler = soxr.ResampleStream(rate, RATE_HZ, 1, dtype="float32")
            self._next_pts = None
        blocks: list[FloatArray] = []
        pts, time_base = frame.pts, frame.time_base
        if pts is not None and time_base is not None:
            time_base = Fraction(time_base)
            if self._next_pts is not None and time_base == self._time_base:
                gap_s = float((pts - self._next_pts) * time_base)
                if gap_s <= -mono.shape[0] / rate:
                    self.stats.late_frames += 1
                    return []  # wholly older than what was passed on: a late duplicate
                if 0 < gap_s <= MAX_GAP_S:
                    missing = round(gap_s * rate)
                    if missing:
                        blocks.append(np.zeros(missing, dtype=np.float32))
                        self.stats.lost_ms += round(1000 * missing / rate)
            self._time_base = time_base
            self._next_pts = pts + round(mono.shape[0] / (rate * time_base))
        blocks.append(mono)
        joined = np.concatenate(blocks) if len(blocks) > 1 else mono
        self._append(np.asarray(self._resampler.resample_chunk(joined), dtype=np.float32))
        return self._take(final=False)

    def flush(self) -> list[bytes]:
        """Whatever remains, the last chunk short (the end of the audio)."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._append(np.asarray(tail, dtype=np.float32))
            self._resampler = None
            self._rate = 0
        return self._take(final=True)

    def _append(self, samples: FloatArray) -> None:
        if samples.size:
            self._pending = np.concatenate([self._pending, samples.reshape(-1)])

    def _take(self, *, final: bool) -> list[bytes]:
        n = self._pending.shape[0]
        whole = n if final else n - n % CHUNK_SAMPLES
        chunks = []
        for start in range(0, whole, CHUNK_SAMPLES):
            block = self._pending[start : min(whole, start + CHUNK_SAMPLES)]
            pcm = np.clip(np.round(block * 32768.0), -32768, 32767).astype("<i2")
            chunks.append(pcm.tobytes())
            self.stats.audio_ms += round(1000 * block.shape[0] / RATE_HZ)
        self._pending = self._pending[whole:]
        return chunks


class Track(Protocol):
    async def recv(self) -> Any: ...


def _backlog(track: Track) -> asyncio.Queue[Any] | None:
    """aiortc's RemoteStreamTrack queue (unbounded) when there is one to inspect."""
    queue = getattr(track, "_queue", None)
    return queue if isinstance(queue, asyncio.Queue) else None


def _frame_s(frame: Any) -> float:
    try:
        return float(frame.samples) / float(frame.sample_rate)
    except (AttributeError, TypeError, ZeroDivisionError):
        return 0.02


async def consume_track(
    track: Track,
    converter: FrameConverter,
    emit: Callable[[bytes], None],
    *,
    max_backlog_s: float = MAX_BACKLOG_S,
) -> None:
    """Pass every frame of ``track`` to ``converter`` and its chunks to ``emit`` until the
    track ends (aiortc raises ``MediaStreamError``) or this task is cancelled.

    When more than ``max_backlog_s`` of frames waits in the track's queue (the event loop
    was busy), the oldest are dropped, keeping the newest ~100 ms: late audio is worth less
    to a live transcript than staying live. The drop is counted, not filled with silence.
    """
    stats = converter.stats
    while True:
        try:
            frame = await track.recv()
        except asyncio.CancelledError:
            raise
        except Exception:  # MediaStreamError: the track ended (peer closed)
            return
        queue = _backlog(track)
        if queue is not None:
            frame_s = _frame_s(frame)
            if frame_s > 0 and queue.qsize() * frame_s > max_backlog_s:
                keep = max(1, round(KEEP_AFTER_DROP_S / frame_s))
                dropped = 0
                while queue.qsize() > keep:
                    older = queue.get_nowait()
                    if older is None:  # the end of the track: keep it for recv()
                        queue.put_nowait(None)
                        break
                    dropped += 1
                    stats.dropped_ms += round(1000 * _frame_s(older))
                # ``frame`` itself is older than every frame kept: drop it too.
                dropped += 1
                stats.dropped_ms += round(1000 * frame_s)
                stats.dropped_frames += dropped
                converter.resync()
                log.info("webrtc: the reader fell behind; dropped %d queued frames", dropped)
                continue
        try:
            chunks = converter.push(frame)
        except Exception:  # a frame PyAV cannot read: skip it, keep the stream
            log.warning("webrtc: skipped an audio frame that cannot be read", exc_info=True)
            converter.resync()
            continue
        for chunk in chunks:
            emit(chunk)


def release_promptly(receiver: Any) -> bool:
    """Give an audio receiver a jitter buffer that holds one frame instead of four.

    Called before any packet arrives (on the peer's "track" event). False, with a warning,
    when aiortc's receiver no longer has the field (a newer aiortc): the stream still works,
    80 ms later.
    """
    from aiortc.jitterbuffer import JitterBuffer

    current = getattr(receiver, _JITTER_ATTR, None)
    if not isinstance(current, JitterBuffer):
        log.warning("aiortc's receiver has no jitter buffer to shorten; finals come 80 ms later")
        return False
    setattr(
        receiver, _JITTER_ATTR, JitterBuffer(capacity=current.capacity, prefetch=PREFETCH_FRAMES)
    )
    return True
