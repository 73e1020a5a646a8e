"""Only the speech of an input (Silero VAD, block by block), and the map back to its times.

With ``vad`` on, file transcription decodes the speech alone: silence never reaches the
encoder, and :class:`TimeMap` turns times in the speech-only audio back into the input's.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from audiototext.audio.chunks import READ_CHUNK_SAMPLES
from audiototext.audio.feature_stream import BLOCK_S
from audiototext.audio.features import SAMPLE_RATE_HZ
from audiototext.audio.vad import SileroVad, VadOptions, get_speech_timestamps

__all__ = ["TRANSCRIBE_VAD", "TimeMap", "blocks", "speech_only"]

FloatArray = NDArray[np.float32]
# Loose settings for finding speech in files (faster-whisper's): keep pauses inside speech.
TRANSCRIBE_VAD = VadOptions(
    min_speech_duration_ms=0, min_silence_duration_ms=2000, speech_pad_ms=400
)


class TimeMap:
    """Maps times in VAD-filtered audio back to the original (speech spans kept in order)."""

    def __init__(self) -> None:
        self._spans: list[tuple[int, int, int]] = []  # (filtered start, original start, length)
        self.original_samples = 0  # of the input read so far, silence included

    def add(self, filtered_start: int, original_start: int, length: int) -> None:
        self._spans.append((filtered_start, original_start, length))

    def after(self, sample: int) -> TimeMap:
        """The map of this audio from ``sample`` (of the filtered audio) on, which becomes
        sample 0."""
        rest = TimeMap()
        for f0, o0, n in self._spans:
            skip = max(sample - f0, 0)
            if skip < n:
                rest.add(max(f0 - sample, 0), o0 + skip, n - skip)
        rest.original_samples = self.original_samples
        return rest

    def span_index(self, t_s: float, *, is_end: bool = False) -> int:
        sample = t_s * SAMPLE_RATE_HZ
        for index, (f0, _, n) in enumerate(self._spans):
            # An end exactly on a span boundary belongs to the span it closes.
            if sample < f0 + n or (is_end and sample <= f0 + n):
                return index
        return len(self._spans) - 1

    def original_s(self, t_s: float, *, is_end: bool = False, span: int | None = None) -> float:
        """Original time of ``t_s``; ``span`` pins the span (a word's ends map through the
        span holding its middle, so a word never straddles the silence that was cut)."""
        if not self._spans:
            return t_s
        f0, o0, _ = self._spans[self.span_index(t_s, is_end=is_end) if span is None else span]
        return (o0 + max(t_s * SAMPLE_RATE_HZ - f0, 0.0)) / SAMPLE_RATE_HZ


def speech_only(
    chunks: Iterator[FloatArray],
    vad: SileroVad,
    options: VadOptions,
    time_map: TimeMap,
    block_s: float | None = None,
) -> Iterator[FloatArray]:
    """Only the speech of ``chunks``, found block by block so memory stays bounded.

    Speech is yielded as copies of at most one chunk's length, so nothing downstream holds on
    to the block buffer (:func:`blocks`). Memory: the block's audio once (18 MB), one VAD run
    (~12 MB, mostly ONNX Runtime's activations), and the pieces not yet turned into features.
    """
    filtered = 0
    for original, block in blocks(chunks, block_s):
        for span in get_speech_timestamps(block, options, vad=vad):
            time_map.add(
                filtered, original + span.start_sample, span.end_sample - span.start_sample
            )
            filtered += span.end_sample - span.start_sample
            for at in range(span.start_sample, span.end_sample, READ_CHUNK_SAMPLES):
                yield block[at : min(at + READ_CHUNK_SAMPLES, span.end_sample)].copy()
        time_map.original_samples = original + block.size


def blocks(
    chunks: Iterator[FloatArray], block_s: float | None = None
) -> Iterator[tuple[int, FloatArray]]:
    """``chunks`` regrouped into blocks of ``block_s`` (default :data:`BLOCK_S`; the last one
    shorter), each with the input sample it starts at: the unit Silero VAD runs over in files.

    The chunks are copied into one buffer, reused from block to block: a block is valid only
    until the next one is asked for, so a consumer copies what it keeps.
    """
    block_samples = round((block_s or BLOCK_S) * SAMPLE_RATE_HZ)
    buffer = np.empty(block_samples, dtype=np.float32)
    filled = 0
    original = 0
    for chunk in chunks:
        if filled + chunk.size > buffer.size:  # chunks that do not divide a block (rare)
            grown = np.empty(filled + chunk.size, dtype=np.float32)
            grown[:filled] = buffer[:filled]
            buffer = grown
        buffer[filled : filled + chunk.size] = chunk
        filled += chunk.size
        if filled >= block_samples:
            yield original, buffer[:filled]
            original += filled
            filled = 0
    if filled:
        yield original, buffer[:filled]
