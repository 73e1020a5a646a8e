"""Audio chunk encodings of the wire protocol: PCM16, FLOAT32 and length-prefixed Opus.

Used by the server (decoding ``AudioChunk.data``) and by the client (encoding it), so it
lives in ``wire/``, which imports neither. Opus goes through PyAV's libopus; packets are
framed as ``[2-byte big-endian length][packet]``.
"""

from __future__ import annotations

import enum
import struct
from typing import Any

import av
import numpy as np
import soxr
from numpy.typing import NDArray

from audiototext.wire._proto import transcription_pb2 as _pb

__all__ = [
    "OPUS_RATES_HZ",
    "ChunkDecoder",
    "ChunkError",
    "Encoding",
    "OpusEncoder",
    "decode_pcm16",
    "encode_pcm16",
]

FloatArray = NDArray[np.float32]


class Encoding(enum.IntEnum):
    """The wire's ``audiototext.v1.AudioEncoding``: the one table of encodings that the
    server (validating and decoding chunks) and the client (making them) share.

    Values and names are the generated proto enum's; a message field takes ``.name``.
    """

    UNSPECIFIED = _pb.AUDIO_ENCODING_UNSPECIFIED
    PCM16 = _pb.PCM16
    FLOAT32 = _pb.FLOAT32
    OPUS = _pb.OPUS

    @classmethod
    def audio(cls) -> tuple[Encoding, ...]:
        """The encodings a stream may declare (all but UNSPECIFIED)."""
        return tuple(e for e in cls if e is not cls.UNSPECIFIED)


OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)
_OPUS_DECODE_RATE_HZ = 48000  # FFmpeg's libopus wrapper always decodes at 48 kHz
_OPUS_FRAME_MS = 20
_MAX_FLOAT_ABS = 2.0  # a little headroom over full scale; beyond it the bytes are not audio


class ChunkError(ValueError):
    """A chunk's bytes cannot be audio in the declared encoding; the message says why."""


def encode_pcm16(audio: NDArray[np.floating]) -> bytes:
    scaled = np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def decode_pcm16(data: bytes) -> FloatArray:
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0)).astype(
        np.float32
    )


class ChunkDecoder:
    """Turns chunk bytes into interleaved float32 samples at the stream's declared rate.

    One per stream: Opus decoding keeps state between chunks.
    """

    def __init__(self, sample_rate_hz: int, channels: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self._opus: Any = None
        self._resampler: soxr.ResampleStream | None = None

    def decode(self, data: bytes, encoding: int, seq: int) -> FloatArray:
        if encoding == Encoding.PCM16:
            width = 2 * self.channels
            if len(data) % width:
                raise ChunkError(
                    f"chunk {seq}: {len(data)} bytes is not a whole number of PCM16 frames "
                    f"({width} bytes each for {self.channels} channel(s)); send whole samples"
                )
            return decode_pcm16(data)
        if encoding == Encoding.FLOAT32:
            width = 4 * self.channels
            if len(data) % width:
                raise ChunkError(
                    f"chunk {seq}: {len(data)} bytes is not a whole number of FLOAT32 frames "
                    f"({width} bytes each for {self.channels} channel(s))"
                )
            samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
            if samples.size and not np.isfinite(samples).all():
                raise ChunkError(
                    f"chunk {seq}: FLOAT32 data holds NaN or infinite values; "
                    "is it really little-endian float32 audio?"
                )
            peak = float(np.abs(samples).max()) if samples.size else 0.0
            if peak > _MAX_FLOAT_ABS:
                raise ChunkError(
                    f"chunk {seq}: FLOAT32 samples must lie in [-1, 1] (found {peak:.3g}); "
                    "is this PCM16 declared as FLOAT32?"
                )
            return np.clip(samples, -1.0, 1.0)
        if encoding == Encoding.OPUS:
            return self._decode_opus(data, seq)
        raise ChunkError(f"chunk {seq}: unknown audio encoding {encoding}")

    def _decode_opus(self, data: bytes, seq: int) -> FloatArray:
        if self.sample_rate_hz not in OPUS_RATES_HZ or self.channels > 2:
            raise ChunkError(
                f"chunk {seq}: OPUS needs 1 or 2 channels at one of "
                f"{', '.join(map(str, OPUS_RATES_HZ))} Hz; this stream declared "
                f"{self.channels} channel(s) at {self.sample_rate_hz} Hz"
            )
        if self._opus is None:
            ctx = av.CodecContext.create("libopus", "r")
            ctx.sample_rate = _OPUS_DECODE_RATE_HZ
            ctx.layout = "stereo" if self.channels == 2 else "mono"
            self._opus = ctx
            self._resampler = soxr.ResampleStream(
                _OPUS_DECODE_RATE_HZ, self.sample_rate_hz, self.channels, dtype="float32"
            )
        blocks: list[FloatArray] = []
        pos = 0
        while pos < len(data):
            if pos + 2 > len(data):
                raise ChunkError(f"chunk {seq}: OPUS data ends inside a packet length prefix")
            (size,) = struct.unpack_from(">H", data, pos)
            pos += 2
            if size == 0 or pos + size > len(data):
                raise ChunkError(
                    f"chunk {seq}: OPUS packet length {size} does not fit the chunk; packets "
                    "must be framed as [2-byte big-endian length][packet]"
                )
            packet = av.Packet(data[pos : pos + size])
            pos += size
            try:
                frames = self._opus.decode(packet)
            except av.error.FFmpegError as exc:
                raise ChunkError(
                    f"chunk {seq}: not a valid OPUS packet ({exc}); send libopus packets "
                    "framed as [2-byte big-endian length][packet]"
                ) from exc
            for frame in frames:
                blocks.append(_interleaved_float(frame, self.channels))
        if not blocks:
            return np.zeros(0, dtype=np.float32)
        joined = np.concatenate(blocks)
        assert self._resampler is not None
        frames_2d = joined.reshape(-1, self.channels)
        out = self._resampler.resample_chunk(frames_2d)
        return np.asarray(out, dtype=np.float32).reshape(-1)


def _interleaved_float(frame: Any, channels: int) -> FloatArray:
    arr = frame.to_ndarray()
    name = frame.format.name
    if name.startswith("s16"):
        arr = arr.astype(np.float32) / np.float32(32768.0)
    arr = np.asarray(arr, dtype=np.float32)
    if frame.format.is_planar:
        return np.ascontiguousarray(arr.T).reshape(-1)
    return arr.reshape(-1)


class OpusEncoder:
    """Encodes a stream of float32 samples to framed Opus packets at a given bit rate.

    Samples that do not fill a 20-ms frame wait for the next call (or ``flush``).
    """

    def __init__(self, sample_rate_hz: int, channels: int, bit_rate: int) -> None:
        if sample_rate_hz not in OPUS_RATES_HZ:
            raise ValueError(f"Opus cannot encode {sample_rate_hz} Hz audio")
        if channels not in (1, 2):
            raise ValueError("Opus encoding supports 1 or 2 channels here")
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self.bit_rate = bit_rate
        self._layout = "stereo" if channels == 2 else "mono"
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = sample_rate_hz
        ctx.layout = self._layout
        ctx.format = "s16"
        ctx.bit_rate = bit_rate
        ctx.open()
        self._ctx: Any = ctx
        self._frame = sample_rate_hz * _OPUS_FRAME_MS // 1000
        self._pending = np.zeros(0, dtype=np.int16)
        self._pts = 0

    def encode(self, audio: NDArray[np.floating]) -> bytes:
        pcm = np.frombuffer(encode_pcm16(audio), dtype="<i2")
        self._pending = np.concatenate([self._pending, pcm])
        step = self._frame * self.channels
        usable = (self._pending.shape[0] // step) * step
        out = self._encode_frames(self._pending[:usable])
        self._pending = self._pending[usable:]
        return out

    def flush(self) -> bytes:
        """Pad the last partial frame with silence and drain the encoder."""
        step = self._frame * self.channels
        out = b""
        if self._pending.shape[0]:
            padded = np.zeros(step, dtype=np.int16)
            padded[: self._pending.shape[0]] = self._pending
            out += self._encode_frames(padded)
            self._pending = np.zeros(0, dtype=np.int16)
        packets = self._ctx.encode(None)
        return out + _frame_packets(packets)

    def _encode_frames(self, pcm: NDArray[np.int16]) -> bytes:
        step = self._frame * self.channels
        parts: list[bytes] = []
        for start in range(0, pcm.shape[0], step):
            block = pcm[start : start + step].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout=self._layout)
            frame.sample_rate = self.sample_rate_hz
            frame.pts = self._pts
            self._pts += self._frame
            parts.append(_frame_packets(self._ctx.encode(frame)))
        return b"".join(parts)


def _frame_packets(packets: Any) -> bytes:
    out = []
    for packet in packets:
        raw = bytes(packet)
        out.append(struct.pack(">H", len(raw)) + raw)
    return b"".join(out)
