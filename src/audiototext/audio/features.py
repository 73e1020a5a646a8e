"""Whisper's log-mel spectrogram in plain numpy.

The method is exactly OpenAI Whisper's (and so faster-whisper's and transformers'
``WhisperFeatureExtractor``): a 400-point STFT with a periodic Hann window, hop 160, reflect
padding of 200 samples at each side (``center=True``), the power spectrum with the last frame
dropped, a Slaney-style mel filterbank (Slaney mel scale and Slaney area normalisation, as
``librosa.filters.mel``), ``log10`` clamped at 1e-10, a floor 8 below the maximum (an 80 dB
dynamic range) and finally ``(x + 4) / 4``.

The work is done in float32, frames are strided views of the padded signal, and the STFT and the
mel projection run on blocks of frames so that long inputs stay cache friendly and never
materialise a full frames-by-400 matrix.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CHUNK_LENGTH_S",
    "CHUNK_SAMPLES",
    "FRAMES_PER_CHUNK",
    "HOP_LENGTH_SAMPLES",
    "N_FFT",
    "SAMPLE_RATE_HZ",
    "frames_for_samples",
    "log_mel_spectrogram",
    "mel_filters",
    "pad_or_trim",
]

SAMPLE_RATE_HZ = 16_000
N_FFT = 400
HOP_LENGTH_SAMPLES = 160
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
    if n_mels not in _SUPPORTED_N_MELS:
        raise ValueError(f"n_mels must be one of {_SUPPORTED_N_MELS}, got {n_mels}")
    if padding_samples < 0:
        raise ValueError(f"padding_samples must be >= 0, got {padding_samples}")
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono), got shape {samples.shape}")
    if padding_samples:
        samples = np.pad(samples, (0, padding_samples))

    num_frames = frames_for_samples(samples.shape[0])
    if num_frames == 0:
        return np.zeros((n_mels, 0), dtype=np.float32)

    half = N_FFT // 2
    padded = np.pad(samples, (half, half), mode="reflect")
    # Frame i starts at i * hop; the (num_frames + 1)-th frame that center=True makes is the
    # one Whisper drops, so it is never computed.
    frames = sliding_window_view(padded, N_FFT)[::HOP_LENGTH_SAMPLES][:num_frames]

    window = _hann_window()
    filters = mel_filters(n_mels)
    mel = np.empty((num_frames, n_mels), dtype=np.float32)
    for start in range(0, num_frames, _BLOCK_FRAMES):
        stop = min(start + _BLOCK_FRAMES, num_frames)
        spectrum = np.fft.rfft(frames[start:stop] * window, axis=-1)
        power = np.square(spectrum.real) + np.square(spectrum.imag)
        np.matmul(power, filters.T, out=mel[start:stop])

    log_spec = np.ascontiguousarray(mel.T)
    np.maximum(log_spec, _LOG_FLOOR, out=log_spec)
    np.log10(log_spec, out=log_spec)
    np.maximum(log_spec, log_spec.max() - _DYNAMIC_RANGE_LOG10, out=log_spec)
    log_spec += 4.0
    log_spec /= 4.0
    return log_spec


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
