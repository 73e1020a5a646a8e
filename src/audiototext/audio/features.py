"""Whisper's log-mel spectrogram in plain numpy.

The method is exactly OpenAI Whisper's (and so faster-whisper's and transformers'
``WhisperFeatureExtractor``): a 400-point STFT with a periodic Hann window, hop 160, reflect
padding of 200 samples at each side (``center=True``), the power spectrum with the last frame
dropped, a Slaney-style mel filterbank (Slaney mel scale and Slaney area normalisation, as
``librosa.filters.mel``), ``log10`` clamped at 1e-10, a floor 8 below the maximum (an 80 dB
dynamic range) and finally ``(x + 4) / 4``.

The work is done in float32, frames are strided views of the padded signal, and the STFT and the
mel projection run on blocks of frames so that long inputs stay cache friendly and never
materialise a full frames-by-400 matrix. The padded signal itself is never built either: each
block reads its samples (from one array, or from a list of pieces that are never joined) and
pads the two edges on the fly, so the only full-size array is the result.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from audiototext._blas import single_threaded_blas

__all__ = [
    "CHUNK_LENGTH_S",
    "CHUNK_SAMPLES",
    "FRAMES_PER_CHUNK",
    "FRAME_S",
    "HOP_LENGTH_SAMPLES",
    "N_FFT",
    "SAMPLE_RATE_HZ",
    "LogMelBuilder",
    "frames_for_samples",
    "log_mel_spectrogram",
    "log_mel_spectrogram_of_pieces",
    "mel_filters",
    "pad_or_trim",
]

SAMPLE_RATE_HZ = 16_000
N_FFT = 400
HOP_LENGTH_SAMPLES = 160
FRAME_S = HOP_LENGTH_SAMPLES / SAMPLE_RATE_HZ  # 10 ms per mel frame
CHUNK_LENGTH_S = 30
CHUNK_SAMPLES = CHUNK_LENGTH_S * SAMPLE_RATE_HZ  # 480 000 samples: one Whisper window
FRAMES_PER_CHUNK = CHUNK_SAMPLES // HOP_LENGTH_SAMPLES  # 3 000 mel frames

_SUPPORTED_N_MELS = (80, 128)
_LOG_FLOOR = 1e-10
_DYNAMIC_RANGE_LOG10 = 8.0
# 256 frames x 400 float32 is 400 kB: big enough to amortise numpy's per-call overhead, small
# enough for the FFT working set to stay in cache (measured fastest among 128..2048).
_BLOCK_FRAMES = 256


def frames_for_samples(num_samples: int) -> int:
    """Number of mel frames :func:`log_mel_spectrogram` returns for ``num_samples`` samples."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    return num_samples // HOP_LENGTH_SAMPLES


def _hz_to_mel_slaney(freqs_hz: NDArray[np.float64]) -> NDArray[np.float64]:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = freqs_hz / f_sp
    log_region = freqs_hz >= min_log_hz
    mels[log_region] = min_log_mel + np.log(freqs_hz[log_region] / min_log_hz) / logstep
    return mels


def _mel_to_hz_slaney(mels: NDArray[np.float64]) -> NDArray[np.float64]:
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    freqs = f_sp * mels
    log_region = mels >= min_log_mel
    freqs[log_region] = min_log_hz * np.exp(logstep * (mels[log_region] - min_log_mel))
    return freqs


@functools.lru_cache(maxsize=8)
def mel_filters(
    n_mels: int = 80, *, sample_rate_hz: int = SAMPLE_RATE_HZ, n_fft: int = N_FFT
) -> NDArray[np.float32]:
    """The Slaney mel filterbank, shape ``(n_mels, n_fft // 2 + 1)``, as ``librosa.filters.mel``.

    Computed in float64 and rounded to float32 like Whisper's shipped ``mel_filters.npz``.
    The returned array is shared and read-only.
    """
    if n_mels <= 0:
        raise ValueError(f"n_mels must be positive, got {n_mels}")
    fft_freqs_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate_hz)
    mel_edges = np.linspace(
        _hz_to_mel_slaney(np.array([0.0]))[0],
        _hz_to_mel_slaney(np.array([sample_rate_hz / 2.0]))[0],
        n_mels + 2,
    )
    edges_hz = _mel_to_hz_slaney(mel_edges)
    widths_hz = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_freqs_hz[None, :]
    lower = -ramps[:-2] / widths_hz[:-1, None]
    upper = ramps[2:] / widths_hz[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    # Slaney normalisation: each triangle has (roughly) unit area.
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    filters = weights.astype(np.float32)
    filters.setflags(write=False)
    return filters


@functools.lru_cache(maxsize=1)
def _hann_window() -> NDArray[np.float32]:
    # Periodic Hann (torch.hann_window(400)), i.e. the symmetric 401-point window minus its end.
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    window.setflags(write=False)
    return window


def log_mel_spectrogram(
    audio: ArrayLike, n_mels: int = 80, padding_samples: int = 0
) -> NDArray[np.float32]:
    """Whisper's log-mel spectrogram of 16 kHz mono audio.

    Args:
        audio: 1-D samples at 16 kHz, nominally in [-1, 1]; converted to float32.
        n_mels: 80 (Whisper up to large-v2) or 128 (large-v3 and turbo).
        padding_samples: zeros appended before the STFT, as Whisper's ``padding``
            (faster-whisper appends 160; ``pad_or_trim`` to 30 s is the other common choice).

    Returns:
        float32 array of shape ``(n_mels, (len(audio) + padding_samples) // 160)``. The
        dynamic-range floor (max - 8) is taken over the whole returned spectrogram.
    """
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono), got shape {samples.shape}")
    return log_mel_spectrogram_of_pieces([samples], n_mels, padding_samples)


def log_mel_spectrogram_of_pieces(
    pieces: Sequence[NDArray[np.float32]], n_mels: int = 80, padding_samples: int = 0
) -> NDArray[np.float32]:
    """:func:`log_mel_spectrogram` of the concatenation of ``pieces`` (1-D float32 arrays).

    The pieces are never joined: each block of frames reads the few samples it needs, and the
    edges are padded on the fly. Apart from the result, memory stays at a few hundred kB
    however long the audio is, and the values are exactly those of the joined array.
    """
    total = sum(len(p) for p in pieces)
    builder = LogMelBuilder(n_mels, expected_samples=total + padding_samples)
    for piece in pieces:
        builder.add(piece)
    return builder.finish(padding_samples)


class LogMelBuilder:
    """:func:`log_mel_spectrogram` of audio that arrives piece by piece.

    Frames are computed as soon as their samples have arrived, and the builder lets go of a
    piece once no frame still to come reads it. Fed a long input a chunk at a time, memory
    holds the spectrogram and about one chunk of audio, never the whole input; the values are
    exactly those of :func:`log_mel_spectrogram` on the joined audio (same blocks of frames,
    same floor over the whole result).

    ``expected_samples`` sizes the result up front (it grows if more arrives). When fewer
    samples arrive, :meth:`finish` returns a column slice of the larger array, as a
    non-contiguous view; rows that were never written are never touched.
    """

    def __init__(self, n_mels: int = 80, *, expected_samples: int = 0) -> None:
        if n_mels not in _SUPPORTED_N_MELS:
            raise ValueError(f"n_mels must be one of {_SUPPORTED_N_MELS}, got {n_mels}")
        if expected_samples < 0:
            raise ValueError(f"expected_samples must be >= 0, got {expected_samples}")
        self._n_mels = n_mels
        self._signal = _PaddedSignal()
        self._done = 0  # frames computed so far, a multiple of _BLOCK_FRAMES until finish
        self._out = np.empty((n_mels, frames_for_samples(expected_samples)), dtype=np.float32)
        self._mel: NDArray[np.float32] | None = None  # one block of frames, (frames, n_mels)
        self._finished = False

    @property
    def samples(self) -> int:
        """Samples added so far."""
        return self._signal.samples

    def add(self, piece: ArrayLike) -> None:
        """Append ``piece`` (1-D samples at 16 kHz) and compute every frame it completes."""
        if self._finished:
            raise RuntimeError("finish() was already called")
        samples = np.asarray(piece, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"audio must be 1-D (mono), got shape {samples.shape}")
        if samples.size == 0:
            return
        self._signal.append(samples)
        # A block is complete once its last frame's window (centred, N_FFT/2 either side) is
        # inside the audio received: nothing after it can change that block.
        half = N_FFT // 2
        complete = (self._signal.samples - half) // HOP_LENGTH_SAMPLES + 1
        self._compute((max(complete, 0) // _BLOCK_FRAMES) * _BLOCK_FRAMES)

    def finish(self, padding_samples: int = 0) -> NDArray[np.float32]:
        """Append ``padding_samples`` zeros (as Whisper's ``padding``), compute the remaining
        frames and return the spectrogram, shape ``(n_mels, frames)``."""
        if self._finished:
            raise RuntimeError("finish() was already called")
        if padding_samples < 0:
            raise ValueError(f"padding_samples must be >= 0, got {padding_samples}")
        self._finished = True
        self._signal.close(padding_samples)
        num_frames = frames_for_samples(self._signal.length)
        self._compute(num_frames)
        self._signal = _PaddedSignal()  # the audio is no longer needed
        self._mel = None
        if num_frames == 0:
            return np.zeros((self._n_mels, 0), dtype=np.float32)
        log_spec = self._out[:, :num_frames]  # the whole array when it was sized exactly
        np.maximum(log_spec, _LOG_FLOOR, out=log_spec)
        np.log10(log_spec, out=log_spec)
        np.maximum(log_spec, log_spec.max() - _DYNAMIC_RANGE_LOG10, out=log_spec)
        log_spec += 4.0
        log_spec /= 4.0
        return log_spec

    def _compute(self, until: int) -> None:
        """Compute frames [done, until), block by block, into the result (written transposed,
        block by block: the same values as computing (frames, n_mels) and transposing it,
        without the second full-size array)."""
        if until <= self._done:
            return
        if until > self._out.shape[1]:
            grown = np.empty((self._n_mels, max(until, 2 * self._out.shape[1])), dtype=np.float32)
            grown[:, : self._done] = self._out[:, : self._done]
            self._out = grown
        if self._mel is None:
            self._mel = np.empty((_BLOCK_FRAMES, self._n_mels), dtype=np.float32)
        window = _hann_window()
        filters = mel_filters(self._n_mels)
        mel = self._mel
        # numpy's OpenBLAS would split the filter-bank product over every core and leave its
        # workers spinning on the cores ONNX Runtime is about to use (same values either way).
        with single_threaded_blas():
            for start in range(self._done, until, _BLOCK_FRAMES):
                stop = min(start + _BLOCK_FRAMES, until)
                # Frame i starts at i * hop in the reflect-padded signal; the (num_frames + 1)-th
                # frame that center=True makes is the one Whisper drops, so it is never computed.
                segment = self._signal.padded(
                    start * HOP_LENGTH_SAMPLES, (stop - 1) * HOP_LENGTH_SAMPLES + N_FFT
                )
                frames = sliding_window_view(segment, N_FFT)[::HOP_LENGTH_SAMPLES]
                spectrum = np.fft.rfft(frames * window, axis=-1)
                power = np.square(spectrum.real) + np.square(spectrum.imag)
                np.matmul(power, filters.T, out=mel[: stop - start])
                self._out[:, start:stop] = mel[: stop - start].T
        self._done = until
        # Frames from `until` on read from (until * hop - N_FFT/2) on: earlier pieces can go.
        self._signal.release_before(until * HOP_LENGTH_SAMPLES - N_FFT // 2)


class _PaddedSignal:
    """Pieces of audio seen as one signal, followed by zeros and reflect-padded by N_FFT/2 at
    both ends (``np.pad(..., mode="reflect")``), read a segment at a time.

    Pieces are appended as they arrive and released once no segment still to be read needs
    them; the end is known (and reflected) only after :meth:`close`.
    """

    def __init__(self) -> None:
        self._pieces: list[NDArray[np.float32]] = []
        self._starts: list[int] = [0]  # sample index of each piece, and the end of the last
        self.samples = 0
        self.length = 0  # the samples, plus the appended zeros once closed
        self._small: NDArray[np.float32] | None = None

    def append(self, piece: NDArray[np.float32]) -> None:
        self._pieces.append(piece)
        self.samples += piece.shape[0]
        self.length = self.samples
        self._starts.append(self.samples)

    def release_before(self, sample: int) -> None:
        """Forget the pieces that end at or before ``sample``."""
        drop = 0
        while drop < len(self._pieces) and self._starts[drop + 1] <= sample:
            drop += 1
        if drop:
            del self._pieces[:drop]
            del self._starts[:drop]

    def close(self, padding_samples: int) -> None:
        self.length = self.samples + padding_samples
        if 0 < self.length <= N_FFT:
            # Too short for one reflection: build it as np.pad does (repeated reflection).
            joined = self._read(0, self.samples)
            self._small = np.pad(
                np.pad(joined, (0, padding_samples)), (N_FFT // 2, N_FFT // 2), mode="reflect"
            )

    def _read(self, lo: int, hi: int) -> NDArray[np.float32]:
        """Samples [lo, hi) of the joined pieces (held pieces only); a view if it can."""
        if lo >= hi:
            return np.zeros(0, dtype=np.float32)
        first = bisect.bisect_right(self._starts, lo) - 1
        if first < 0 or hi > self.samples:
            raise AssertionError(f"samples [{lo}, {hi}) were released or have not arrived")
        piece_lo = lo - self._starts[first]
        if hi <= self._starts[first + 1]:
            return self._pieces[first][piece_lo : piece_lo + hi - lo]
        parts = []
        i = first
        while lo < hi:
            start = self._starts[i]
            take = self._pieces[i][lo - start : min(hi, self._starts[i + 1]) - start]
            parts.append(take)
            lo += take.shape[0]
            i += 1
        return np.concatenate(parts)

    def padded(self, lo: int, hi: int) -> NDArray[np.float32]:
        """Samples [lo, hi) of the padded signal, whose sample j is the signal's j - N_FFT/2.

        Before :meth:`close`, only segments inside the audio received so far can be read.
        """
        if self._small is not None:
            return self._small[lo:hi]
        half = N_FFT // 2
        if lo >= half and hi - half <= self.samples:
            return self._read(lo - half, hi - half)
        index = np.arange(lo - half, hi - half)
        last = self.length - 1
        index = np.where(index < 0, -index, index)  # reflect at the start
        index = np.where(index > last, 2 * last - index, index)  # and at the end
        out = np.zeros(hi - lo, dtype=np.float32)  # the appended zeros stay 0
        inside = index < self.samples
        if inside.any():
            low = int(index[inside].min())
            span = self._read(low, int(index[inside].max()) + 1)
            out[inside] = span[index[inside] - low]
        return out


def pad_or_trim(
    array: NDArray[np.floating], length: int = CHUNK_SAMPLES, *, axis: int = -1
) -> NDArray[np.floating]:
    """Zero-pad or cut ``array`` along ``axis`` to exactly ``length`` entries.

    With the defaults this makes 30 s of 16 kHz audio (Whisper's window). For a spectrogram,
    pass ``length=FRAMES_PER_CHUNK``. Returns the input itself when it already fits, and a
    view of it when it is cut.
    """
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    current = array.shape[axis]
    if current > length:
        index = [slice(None)] * array.ndim
        index[axis] = slice(0, length)
        return array[tuple(index)]
    if current < length:
        pad_width = [(0, 0)] * array.ndim
        pad_width[axis] = (0, length - current)
        return np.pad(array, pad_width)
    return array
