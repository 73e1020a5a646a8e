"""An input's speech packed into chunks of up to 28 s (one window, 2 s to spare), for batched
transcription.

Silero VAD finds the speech block by block (:func:`~audiototext.audio.speech_only.blocks`), so
memory stays bounded whatever the input's length. Consecutive speech spans go into one chunk
while they fit a window; the silence between them is left out, and each chunk's
:class:`~audiototext.audio.speech_only.TimeMap` turns its times back into the input's. A span
longer than a window (only with VAD options that do not cap speech) is cut into windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from audiototext.audio.features import SAMPLE_RATE_HZ
from audiototext.audio.speech_only import TRANSCRIBE_VAD, TimeMap, blocks
from audiototext.audio.vad import SileroVad, VadOptions, get_speech_timestamps

__all__ = ["BATCH_CHUNK_S", "BATCH_VAD", "SpeechChunk", "SpeechChunker"]

FloatArray = NDArray[np.float32]

# Chunks fill a 30-s window only up to here: speech that runs to the window's end makes tiny.en
# leave its last sentence "for the next window" (a rest, decoded again in a window of its own);
# 2 s of silence after it mostly stop that (bench/NOTES.md, batched2: 31 -> 26 windows).
BATCH_CHUNK_S = 28.0
# faster-whisper's settings for its batched pipeline: cut at pauses of 160 ms so that chunks
# can be filled close to a chunk's length, and never let one stretch of speech outgrow it.
BATCH_VAD = VadOptions(
    min_speech_duration_ms=TRANSCRIBE_VAD.min_speech_duration_ms,
    min_silence_duration_ms=160,
    speech_pad_ms=TRANSCRIBE_VAD.speech_pad_ms,
    max_speech_duration_s=BATCH_CHUNK_S,
)


@dataclass
class SpeechChunk:
    """Speech of an input, at most one window long, and the map back to the input's times."""

    audio: FloatArray
    time_map: TimeMap

    @property
    def start_s(self) -> float:
        """Where the chunk's first speech starts in the input."""
        return self.time_map.original_s(0.0)

    def rest(self, sample: int) -> SpeechChunk:
        """The chunk from ``sample`` on (what a decoder left for another pass)."""
        return SpeechChunk(self.audio[sample:], self.time_map.after(sample))

    @property
    def end_s(self) -> float:
        """Where the chunk's last speech ends in the input."""
        return self.time_map.original_s(self.audio.size / SAMPLE_RATE_HZ, is_end=True)


class SpeechChunker:
    """Iterates over the :class:`SpeechChunk` of an input, in order; ``samples`` counts the
    input's samples read so far (its length once iteration is over)."""

    def __init__(
        self,
        chunks: Iterator[FloatArray],
        vad: SileroVad,
        options: VadOptions = BATCH_VAD,
        max_samples: int = round(BATCH_CHUNK_S * SAMPLE_RATE_HZ),
    ) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self._chunks = chunks
        self._vad = vad
        self._options = options
        self._max = max_samples
        self.samples = 0

    def __iter__(self) -> Iterator[SpeechChunk]:
        pieces: list[FloatArray] = []
        time_map = TimeMap()
        filled = 0
        for original, block in blocks(self._chunks):
            for span in get_speech_timestamps(block, self._options, vad=self._vad):
                start = span.start_sample
                while start < span.end_sample:
                    length = min(span.end_sample - start, self._max)
                    if filled + length > self._max:  # the span starts the next chunk
                        yield _chunk(pieces, time_map, filled)
                        pieces, time_map, filled = [], TimeMap(), 0
                    time_map.add(filled, original + start, length)
                    pieces.append(block[start : start + length].copy())
                    filled += length
                    start += length
            self.samples = original + block.size
        if filled:
            yield _chunk(pieces, time_map, filled)


def _chunk(pieces: list[FloatArray], time_map: TimeMap, filled: int) -> SpeechChunk:
    audio = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    assert audio.size == filled
    return SpeechChunk(audio, time_map)
