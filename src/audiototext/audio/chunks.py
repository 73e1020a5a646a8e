"""An input read 30 s at a time, whatever it is: a file, encoded bytes, or samples.

File transcription never holds a whole input: a path or bytes are decoded incrementally
(:func:`~audiototext.audio.decode.iter_audio_chunks`), an array is cut into views.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audiototext.audio.decode import AudioSource, iter_audio_chunks
from audiototext.audio.features import SAMPLE_RATE_HZ
from audiototext.errors import AudioError

__all__ = ["READ_CHUNK_S", "READ_CHUNK_SAMPLES", "chunks_between", "input_chunks"]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float32]
READ_CHUNK_S = 30.0
READ_CHUNK_SAMPLES = round(READ_CHUNK_S * SAMPLE_RATE_HZ)


def input_chunks(audio: AudioSource | NDArray[np.floating]) -> Iterator[FloatArray]:
    """``audio`` as float32 chunks of :data:`READ_CHUNK_S` (the last one shorter).

    Raises:
        AudioError: a path that does not exist, or samples that are not 1-D or are empty
            (other decoding errors come at the first ``next()``, as decoding is streamed).
    """
    if isinstance(audio, np.ndarray):
        return _array_chunks(_clean_array(audio))
    if isinstance(audio, str | os.PathLike) and not Path(audio).exists():
        raise AudioError(f"{os.fspath(audio)}: no such file")
    return iter_audio_chunks(audio, READ_CHUNK_S)


def chunks_between(
    chunks: Iterator[FloatArray], start: int, end: int | None
) -> Iterator[FloatArray]:
    """The samples ``[start, end)`` of ``chunks`` (``end`` None: to the end)."""
    position = 0
    for chunk in chunks:
        lo, hi = position, position + chunk.size
        position = hi
        if hi <= start:
            continue
        if end is not None and lo >= end:
            return
        yield chunk[max(0, start - lo) : chunk.size if end is None else min(chunk.size, end - lo)]


def _array_chunks(audio: FloatArray) -> Iterator[FloatArray]:
    step = READ_CHUNK_SAMPLES
    for i in range(0, audio.shape[0], step):
        yield audio[i : i + step]


def _clean_array(audio: NDArray[np.floating]) -> FloatArray:
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"audio must be 1-D mono samples at 16 kHz, got shape {samples.shape}")
    if samples.size == 0:
        raise AudioError("the audio is empty (0 samples)")
    finite = np.isfinite(samples)
    if not finite.all():
        log.warning("replaced %d NaN/Inf sample(s) with silence", int(samples.size - finite.sum()))
        samples = np.where(finite, samples, np.float32(0.0)).astype(np.float32)
    return samples
