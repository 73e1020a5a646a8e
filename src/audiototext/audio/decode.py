"""Decode audio files and bytes to mono float32 at 16 kHz.

PyAV (FFmpeg) decodes whatever container and codec it knows: WAV (8-bit unsigned, 16/24/32-bit
integer, 32/64-bit float), FLAC, MP3, Ogg Vorbis/Opus, M4A/AAC, WebM, and the audio track of
video files. Each decoded frame is converted to float32 and its channels are averaged, and the
mono signal is then resampled exactly once with soxr ('HQ'); audio already at the target rate is
passed through untouched.

Damaged input is handled as follows, always with an :class:`~audiototext.errors.AudioError`
when nothing usable remains:

* missing, empty (0-byte) or non-media files, files without an audio stream, and files that
  decode to 0 samples raise ``AudioError``;
* packets that fail to decode (corrupt MP3 frames, for instance) are skipped, a container that
  breaks off stops decoding there, and a file that decodes well short of the duration its header
  declares (a truncated MP3, FLAC or WebM) is reported; each logs one warning and the audio
  decoded so far is kept;
* NaN and ±Inf samples (float WAV can hold them) are replaced with 0 and logged as one warning
  per input: one bad sample should not cost a whole recording, and a downstream FFT would turn
  it into a spectrogram of NaN.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, TypeAlias

import numpy as np
import soxr
from numpy.typing import NDArray

if TYPE_CHECKING:  # PyAV costs ~18 MB of memory to import: only files that need it load it
    import av

from audiototext.audio.features import SAMPLE_RATE_HZ
from audiototext.errors import AudioError

__all__ = [
    "SAMPLE_RATE_HZ",
    "AudioSource",
    "declared_duration_s",
    "iter_audio_chunks",
    "load_audio",
    "resample",
]

logger = logging.getLogger(__name__)

AudioSource: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
"""A path, the encoded bytes of a file, or a readable binary file object."""

FloatArray: TypeAlias = NDArray[np.float32]

_RESAMPLE_QUALITY = "HQ"
# Native-rate audio is handed to the resampler in blocks of about this length: larger blocks
# amortise per-call overhead, smaller ones bound memory. Half a second is plenty for both.
_BLOCK_S = 0.5
# Full-scale value of each integer sample format (PyAV names; "p" suffix = planar).
_INT_FULL_SCALE = {"s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}
# Warn about truncation when decoding falls this far short of the declared duration; the slack
# absorbs encoder padding and FFmpeg's bitrate-based estimates for files without an index.
_SHORTFALL_S = 1.0
_SHORTFALL_RATIO = 0.05
_FLOAT_FORMATS = frozenset({"flt", "fltp", "dbl", "dblp"})
_EMPTY = np.zeros(0, dtype=np.float32)


def load_audio(source: AudioSource, *, sample_rate_hz: int = SAMPLE_RATE_HZ) -> FloatArray:
    """Decode ``source`` completely to mono float32 at ``sample_rate_hz``.

    Raises:
        AudioError: the input is missing, empty, not audio, or yields no samples.
    """
    _check_rate(sample_rate_hz)
    decoder = _Decoder(source)
    blocks = [block for block in decoder.resampled(sample_rate_hz) if block.size]
    decoder.report()
    if not blocks:
        raise AudioError(f"{decoder.name}: the audio stream contains no samples")
    return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]


def iter_audio_chunks(
    source: AudioSource, chunk_s: float = 30.0, *, sample_rate_hz: int = SAMPLE_RATE_HZ
) -> Iterator[FloatArray]:
    """Decode ``source`` incrementally, yielding mono float32 chunks at ``sample_rate_hz``.

    Every chunk holds exactly ``round(chunk_s * sample_rate_hz)`` samples except the last,
    which holds the remainder. Memory stays bounded by about one chunk however long the input
    is. This is a generator: errors (see :func:`load_audio`) are raised when iteration starts,
    or, for "no samples", at its end.
    """
    _check_rate(sample_rate_hz)
    chunk_samples = round(chunk_s * sample_rate_hz)
    if chunk_samples <= 0:
        raise ValueError(f"chunk_s must give at least one sample, got {chunk_s}")
    return _iter_chunks(source, chunk_samples, sample_rate_hz)


def resample(audio: NDArray[np.floating], from_hz: int, to_hz: int) -> FloatArray:
    """Resample 1-D ``audio`` from ``from_hz`` to ``to_hz`` with soxr ('HQ'), as float32."""
    _check_rate(from_hz)
    _check_rate(to_hz)
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono), got shape {samples.shape}")
    if from_hz == to_hz or samples.size == 0:
        return samples.copy()
    out = soxr.resample(samples, from_hz, to_hz, quality=_RESAMPLE_QUALITY)
    return np.asarray(out, dtype=np.float32)


def _check_rate(rate_hz: int) -> None:
    if rate_hz <= 0:
        raise ValueError(f"sample rate must be a positive number of Hz, got {rate_hz}")


def _iter_chunks(source: AudioSource, chunk_samples: int, rate_hz: int) -> Iterator[FloatArray]:
    decoder = _Decoder(source)
    pending: list[FloatArray] = []
    pending_samples = 0
    total = 0
    for block in decoder.resampled(rate_hz):
        pending.append(block)
        pending_samples += block.size
        while pending_samples >= chunk_samples:
            joined = np.concatenate(pending)
            yield joined[:chunk_samples]
            total += chunk_samples
            rest = joined[chunk_samples:]
            pending = [rest]
            pending_samples = rest.size
    decoder.report()
    if pending_samples:
        total += pending_samples
        yield np.concatenate(pending)
    if total == 0:
        raise AudioError(f"{decoder.name}: the audio stream contains no samples")


class _Decoder:
    """One pass over one input: demux, decode, downmix, resample; remembers what went wrong."""

    def __init__(self, source: AudioSource) -> None:
        self.name = _describe(source)
        self._source = source
        self.skipped_packets = 0
        self.stopped_early: str | None = None
        self.nonfinite_samples = 0
        self.declared_s: float | None = None
        self.decoded_s = 0.0

    def resampled(self, rate_hz: int) -> Iterator[FloatArray]:
        """Mono float32 blocks at ``rate_hz``, resampled in one streaming pass per input rate."""
        resampler: soxr.ResampleStream | None = None
        current_rate = 0
        for block, block_rate in self._native_blocks():
            if block_rate != current_rate:
                # Only chained streams (rare) change rate mid-file: flush and start afresh.
                if resampler is not None:
                    yield _resample_chunk(resampler, _EMPTY, last=True)
                current_rate = block_rate
                resampler = None
                if block_rate != rate_hz:
                    resampler = soxr.ResampleStream(
                        block_rate, rate_hz, 1, dtype="float32", quality=_RESAMPLE_QUALITY
                    )
            yield block if resampler is None else _resample_chunk(resampler, block, last=False)
        if resampler is not None:
            yield _resample_chunk(resampler, _EMPTY, last=True)

    def report(self) -> None:
        """Log one warning per kind of damage met, once decoding has finished."""
        if self.skipped_packets:
            logger.warning(
                "%s: skipped %d packet(s) that failed to decode; the audio has gaps there",
                self.name,
                self.skipped_packets,
            )
        if self.stopped_early:
            logger.warning(
                "%s: the file ends abruptly or is corrupt (%s); using the audio decoded so far",
                self.name,
                self.stopped_early,
            )
        if (
            not self.stopped_early
            and self.declared_s is not None
            and self.decoded_s
            < self.declared_s - max(_SHORTFALL_S, _SHORTFALL_RATIO * self.declared_s)
        ):
            logger.warning(
                "%s: decoded %.1f s of the %.1f s its header declares; the file looks truncated",
                self.name,
                self.decoded_s,
                self.declared_s,
            )
        if self.nonfinite_samples:
            logger.warning(
                "%s: replaced %d NaN/Inf sample(s) with silence",
                self.name,
                self.nonfinite_samples,
            )

    def _native_blocks(self) -> Iterator[tuple[FloatArray, int]]:
        """Mono float32 blocks at the file's own rate, grouped to about ``_BLOCK_S``."""
        pending: list[FloatArray] = []
        pending_samples = 0
        pending_rate = 0
        for mono, rate in self._mono_frames():
            if pending and (rate != pending_rate or pending_samples >= _BLOCK_S * pending_rate):
                yield _join(pending), pending_rate
                pending = []
                pending_samples = 0
            pending.append(mono)
            pending_samples += mono.size
            pending_rate = rate
        if pending:
            yield _join(pending), pending_rate

    def _mono_frames(self) -> Iterator[tuple[FloatArray, int]]:
        wav = _WavFile.probe(self._source)
        if wav is not None:
            yield from self._wav_frames(wav)
            return
        with _open(self._source, self.name) as container:
            stream = _audio_stream(container, self.name)
            self.declared_s = _declared_duration_s(container, stream)
            for frame in self._frames(container, stream):
                if frame.samples == 0:
                    continue
                self.decoded_s += frame.samples / frame.sample_rate
                mono = _to_mono_float(frame)
                if frame.format.name in _FLOAT_FORMATS:  # integers cannot be NaN
                    self._sanitize(mono)
                yield mono, frame.sample_rate

    def _wav_frames(self, wav: _WavFile) -> Iterator[tuple[FloatArray, int]]:
        """As :meth:`_mono_frames` for a plain PCM or float WAV, read with numpy (no PyAV)."""
        self.declared_s = wav.frames / wav.rate_hz
        frames_per_read = 8192
        with open(wav.path, "rb") as file:
            file.seek(wav.data_offset)
            left = wav.frames
            while left > 0:
                n = min(frames_per_read, left)
                raw = file.read(n * wav.block_align)
                n = len(raw) // wav.block_align
                if n == 0:
                    break
                left -= n
                self.decoded_s += n / wav.rate_hz
                mono = wav.to_mono_float(raw[: n * wav.block_align])
                if wav.is_float:
                    self._sanitize(mono)
                yield mono, wav.rate_hz

    def _frames(
        self, container: av.container.InputContainer, stream: av.AudioStream
    ) -> Iterator[av.AudioFrame]:
        import av

        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as exc:
                self.stopped_early = str(exc)
                return
            try:
                frames: Iterable[av.AudioFrame] = packet.decode()
            except av.FFmpegError:
                self.skipped_packets += 1
                continue
            yield from frames

    def _sanitize(self, samples: FloatArray) -> None:
        finite = np.isfinite(samples)
        if not finite.all():
            self.nonfinite_samples += int(samples.size - np.count_nonzero(finite))
            samples[~finite] = 0.0


def _describe(source: AudioSource) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes of audio>"
    return str(getattr(source, "name", "<audio stream>"))


def _open(source: AudioSource, name: str) -> av.container.InputContainer:
    file: str | BinaryIO
    if isinstance(source, str | os.PathLike):
        file = os.fspath(source)
        try:
            size = os.stat(file).st_size
        except FileNotFoundError as exc:
            raise AudioError(f"{name}: no such file") from exc
        except OSError as exc:
            raise AudioError(f"{name}: cannot read the file ({exc.strerror})") from exc
        if os.path.isdir(file):
            raise AudioError(f"{name}: is a directory, not an audio file")
        if size == 0:
            raise AudioError(f"{name}: the file is empty (0 bytes)")
    elif isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise AudioError("the audio data is empty (0 bytes)")
        file = io.BytesIO(source)
    else:
        file = source
    import av

    try:
        return av.open(file, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise AudioError(
            f"{name}: cannot be read as audio ({exc}); expected a complete audio or video "
            "file such as WAV, FLAC, MP3, Ogg/Opus, M4A/AAC or WebM"
        ) from exc


def _audio_stream(container: av.container.InputContainer, name: str) -> av.AudioStream:
    if not container.streams.audio:
        kinds = ", ".join(sorted({str(stream.type) for stream in container.streams}))
        raise AudioError(f"{name}: contains no audio stream (found: {kinds or 'no streams'})")
    return container.streams.audio[0]


def _declared_duration_s(
    container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    """The duration the file's headers announce (MP3 Xing, FLAC STREAMINFO, MP4, WebM...)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _to_mono_float(frame: av.AudioFrame) -> FloatArray:
    """Frame samples as float32 in [-1, 1], channels averaged."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T  # interleaved → (channels, samples)
    return _mono_float(data, frame.format.name.removesuffix("p"), channels)


def _mono_float(data: NDArray[np.generic], sample_format: str, channels: int) -> FloatArray:
    """``(channels, samples)`` in PyAV's ``sample_format`` as float32 in [-1, 1], averaged."""
    if sample_format == "u8":
        samples = (data.astype(np.float32) - 128.0) / 128.0
    elif sample_format in _INT_FULL_SCALE:
        samples = data.astype(np.float32) / np.float32(_INT_FULL_SCALE[sample_format])
    else:  # flt, dbl
        samples = data.astype(np.float32, copy=False)
    if channels == 1:
        return np.array(samples[0], dtype=np.float32)  # own the memory: the frame is reused
    return np.asarray(samples.mean(axis=0, dtype=np.float32), dtype=np.float32)


def _join(blocks: list[FloatArray]) -> FloatArray:
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _resample_chunk(resampler: soxr.ResampleStream, block: FloatArray, *, last: bool) -> FloatArray:
    return np.asarray(resampler.resample_chunk(block, last=last), dtype=np.float32)


# --------------------------------------------------------------------------- WAV without PyAV

_WAVE_PCM = 0x0001
_WAVE_FLOAT = 0x0003
_WAVE_EXTENSIBLE = 0xFFFE
# (format tag, bits) → (numpy dtype of one sample, PyAV's name for the decoded format)
_WAV_LAYOUTS = {
    (_WAVE_PCM, 8): ("u1", "u8"),
    (_WAVE_PCM, 16): ("<i2", "s16"),
    (_WAVE_PCM, 24): ("", "s32"),  # PyAV widens 24-bit samples to s32 (shifted left by 8)
    (_WAVE_PCM, 32): ("<i4", "s32"),
    (_WAVE_FLOAT, 32): ("<f4", "flt"),
    (_WAVE_FLOAT, 64): ("<f8", "dbl"),
}


@dataclass(frozen=True)
class _WavFile:
    """A complete, uncompressed WAV file that numpy reads exactly as PyAV would decode it.

    Anything unusual (another codec, a truncated data chunk, a malformed header) is left to
    PyAV, which also reports damage; this path only saves importing it for the common case.
    """

    path: str
    format_tag: int
    channels: int
    rate_hz: int
    bits: int
    block_align: int
    data_offset: int
    frames: int

    @property
    def is_float(self) -> bool:
        return self.format_tag == _WAVE_FLOAT

    @classmethod
    def probe(cls, source: AudioSource) -> _WavFile | None:
        if not isinstance(source, str | os.PathLike):
            return None
        path = os.fspath(source)
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                return cls._parse(path, file, size)
        except (OSError, struct.error, ValueError):
            return None

    @classmethod
    def _parse(cls, path: str, file: BinaryIO, size: int) -> _WavFile | None:
        head = file.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        fmt: tuple[int, ...] | None = None
        while True:
            header = file.read(8)
            if len(header) < 8:
                return None
            chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk_id == b"fmt ":
                body = file.read(chunk_size)
                if len(body) < 16:
                    return None
                tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == _WAVE_EXTENSIBLE:
                    if len(body) < 40:
                        return None
                    tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID's start
                fmt = (tag, channels, rate, align, bits)
                if chunk_size % 2:
                    file.seek(1, os.SEEK_CUR)
            elif chunk_id == b"data":
                if fmt is None:
                    return None
                tag, channels, rate, align, bits = fmt
                offset = file.tell()
                if (
                    (tag, bits) not in _WAV_LAYOUTS
                    or channels < 1
                    or rate < 1
                    or align != channels * bits // 8
                    or chunk_size % align
                    or offset + chunk_size > size  # truncated: PyAV reports it
                ):
                    return None
                return cls(path, tag, channels, rate, bits, align, offset, chunk_size // align)
            else:
                file.seek(chunk_size + chunk_size % 2, os.SEEK_CUR)

    def to_mono_float(self, raw: bytes) -> FloatArray:
        dtype, sample_format = _WAV_LAYOUTS[(self.format_tag, self.bits)]
        if self.bits == 24:
            triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            data: NDArray[np.generic] = (
                (triples[:, 0] << 8) | (triples[:, 1] << 16) | (triples[:, 2] << 24)
            )
        else:
            data = np.frombuffer(raw, dtype=np.dtype(dtype)).astype(
                np.dtype(dtype).newbyteorder("="), copy=False
            )
        return _mono_float(data.reshape(-1, self.channels).T, sample_format, self.channels)


def declared_duration_s(path: str | os.PathLike[str]) -> float | None:
    """The duration ``path`` declares in its header; None when unknown or unreadable."""
    wav = _WavFile.probe(path)
    if wav is not None:
        return wav.frames / wav.rate_hz
    try:
        import av

        with av.open(os.fspath(path), metadata_errors="ignore") as container:
            if container.duration is not None:
                return float(container.duration) / 1_000_000
            streams = container.streams.audio
            if streams and streams[0].duration is not None and streams[0].time_base is not None:
                return float(streams[0].duration * streams[0].time_base)
    except Exception:  # the real decode reports problems properly; this is only a hint
        return None
    return None
