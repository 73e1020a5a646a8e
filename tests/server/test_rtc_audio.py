"""WebRTC audio frames → the stream layer's chunks: mono mix, one stateful resampler, lost
frames filled with silence, late duplicates dropped, and a reader that falls behind dropping
the backlog (counted) instead of lagging. aiortc's Opus decoder gives 48-kHz stereo s16
frames of 960 samples stamped with the RTP clock; these tests make the same frames."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import av
import numpy as np
import soxr
from numpy.typing import NDArray

from audiototext.server.http.rtc_audio import (
    CHUNK_SAMPLES,
    FrameConverter,
    consume_track,
    release_promptly,
)
from server.grpc_harness import run

RATE = 48_000
FRAME = 960


def _frame(samples: NDArray[np.float32], index: int, *, stereo: bool = True) -> av.AudioFrame:
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    if stereo:  # packed s16 stereo: L R L R ...
        pcm = np.stack([pcm, pcm], axis=1).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(
        pcm.reshape(1, -1), format="s16", layout="stereo" if stereo else "mono"
    )
    frame.sample_rate = RATE
    frame.pts = index * FRAME
    frame.time_base = Fraction(1, RATE)
    return frame


def _signal(seconds: float) -> NDArray[np.float32]:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1234 * t)).astype(
        np.float32
    )


def _frames(signal: NDArray[np.float32], skip: frozenset[int] = frozenset()) -> list[av.AudioFrame]:
    n = signal.shape[0] // FRAME
    return [_frame(signal[i * FRAME : (i + 1) * FRAME], i) for i in range(n) if i not in skip]


def _samples(chunks: list[bytes]) -> NDArray[np.float32]:
    pcm = np.frombuffer(b"".join(chunks), dtype="<i2")
    return (pcm.astype(np.float32) / np.float32(32768)).astype(np.float32)


def _convert(frames: list[Any], converter: FrameConverter | None = None) -> NDArray[np.float32]:
    conv = converter or FrameConverter()
    chunks: list[bytes] = []
    for frame in frames:
        chunks += conv.push(frame)
    chunks += conv.flush()
    return _samples(chunks)


def test_stereo_48k_frames_become_the_same_audio_as_one_resampling_of_the_whole() -> None:
    signal = _signal(2.0)
    conv = FrameConverter()
    chunks: list[bytes] = []
    for frame in _frames(signal):
        chunks += conv.push(frame)
    # Whole 100-ms chunks while streaming; the rest at the end.
    assert all(len(c) == 2 * CHUNK_SAMPLES for c in chunks)
    chunks += conv.flush()
    got = _samples(chunks)
    want = soxr.resample(signal, RATE, 16_000)
    assert abs(got.shape[0] - want.shape[0]) <= 2
    n = min(got.shape[0], want.shape[0])
    # Frame edges leave no trace: the stateful stream equals one resampling of the whole.
    assert float(np.max(np.abs(got[:n] - want[:n]))) < 2e-3
    assert conv.stats.frames == 100 and conv.stats.lost_ms == 0
    assert conv.stats.audio_ms == 2000


def test_lost_frames_are_filled_with_silence_so_time_is_kept() -> None:
    signal = _signal(2.0)
    lost = frozenset({10, 11, 12, 50})
    conv = FrameConverter()
    got = _convert(_frames(signal, skip=lost), conv)
    assert conv.stats.lost_ms == 20 * len(lost)
    assert abs(got.shape[0] - 32_000) <= 2  # 2 s at 16 kHz, as if nothing was lost
    # Where frames 10-12 were: silence (away from the resampler's edges).
    quiet = got[10 * 320 + 40 : 13 * 320 - 40]
    assert float(np.max(np.abs(quiet))) < 0.02
    loud = got[20 * 320 : 21 * 320]
    assert float(np.max(np.abs(loud))) > 0.3


def test_a_late_duplicate_frame_is_dropped_and_a_mono_track_works_too() -> None:
    signal = _signal(0.4)
    frames = [_frame(signal[i * FRAME : (i + 1) * FRAME], i, stereo=False) for i in range(20)]
    frames.insert(12, frames[5])  # a repeat of old audio
    conv = FrameConverter()
    got = _convert(frames, conv)
    assert conv.stats.late_frames == 1 and conv.stats.lost_ms == 0
    assert abs(got.shape[0] - 6400) <= 2


class _Track:
    """A RemoteStreamTrack as aiortc has it: an unbounded queue that recv() reads, None at
    the end (then recv raises)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()

    async def recv(self) -> Any:
        frame = await self._queue.get()
        if frame is None:
            raise RuntimeError("MediaStreamError")
        return frame


def test_a_reader_behind_by_more_than_the_bound_drops_the_oldest_frames_and_counts_them() -> None:
    signal = _signal(4.0)
    frames = _frames(signal)  # 200 frames

    async def main() -> tuple[FrameConverter, list[bytes], list[int]]:
        track = _Track()
        conv = FrameConverter()
        out: list[bytes] = []
        backlog: list[int] = []

        def emit(chunk: bytes) -> None:
            out.append(chunk)
            backlog.append(track._queue.qsize())

        for frame in frames[:20]:  # 0.4 s queued: within the bound, nothing dropped
            track._queue.put_nowait(frame)
        reader = asyncio.create_task(consume_track(track, conv, emit, max_backlog_s=0.5))
        await asyncio.sleep(0.05)
        assert conv.stats.dropped_frames == 0
        for frame in frames[20:]:  # 3.6 s at once: the reader is far behind
            track._queue.put_nowait(frame)
        track._queue.put_nowait(None)
        await asyncio.wait_for(reader, 10)
        out.extend(conv.flush())  # what FINISH passes on after the track ended
        return conv, out, backlog

    conv, out, backlog = run(main(), 30)
    stats = conv.stats
    assert stats.dropped_frames > 150
    assert stats.dropped_ms == 20 * stats.dropped_frames
    # What was passed on is what was not dropped; nothing was filled in for the drop.
    assert stats.lost_ms == 0
    passed_ms = 20 * (len(frames) - stats.dropped_frames)
    assert abs(stats.audio_ms - passed_ms) <= 40
    # The reader never worked through more than the bound of queued audio.
    assert max(backlog) * 20 <= 500
    assert out


def test_the_end_of_the_track_ends_the_reader_even_inside_a_drop() -> None:
    async def main() -> FrameConverter:
        track = _Track()
        conv = FrameConverter()
        for frame in _frames(_signal(2.0)):
            track._queue.put_nowait(frame)
        track._queue.put_nowait(None)
        await asyncio.wait_for(consume_track(track, conv, lambda _: None), 10)
        return conv

    conv = run(main(), 30)
    assert conv.stats.dropped_frames > 0


def _audio_receiver() -> Any:
    from aiortc import (
        RTCCertificate,
        RTCDtlsTransport,
        RTCIceGatherer,
        RTCIceTransport,
        RTCRtpReceiver,
    )

    ice = RTCIceTransport(RTCIceGatherer())
    return RTCRtpReceiver("audio", RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()]))


def _released(receiver: Any, order: list[int]) -> list[int | None]:
    """Feed one-packet Opus frames in this order; the timestamps of the frames handed on."""
    from aiortc.rtp import RtpPacket

    buffer = receiver._RTCRtpReceiver__jitter_buffer
    out: list[int | None] = []
    for n in order:
        packet = RtpPacket(payload_type=111, sequence_number=n, timestamp=n * FRAME)
        packet._data = b"opus"  # type: ignore[attr-defined]  # what the receiver depayloads
        frame = buffer.add(packet)[1]
        out.append(None if frame is None else frame.timestamp // FRAME)
    return out


def test_aiortc_holds_four_frames_and_release_promptly_only_one() -> None:
    """aiortc's own buffer hands frame 0 on once frame 4 arrives (80 ms); shortened, once
    frame 1 does. A packet that comes out of order still waits for the one before it."""
    stock = _audio_receiver()
    assert _released(stock, [0, 1, 2, 3, 4]) == [None, None, None, None, 0]
    prompt = _audio_receiver()
    assert release_promptly(prompt)
    assert _released(prompt, [0, 1, 2, 4, 3, 5]) == [None, 0, 1, None, 2, 3]


def test_release_promptly_declines_a_receiver_it_does_not_know() -> None:
    assert not release_promptly(object())
