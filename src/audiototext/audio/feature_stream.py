"""Log-mel frames of an input read chunk by chunk, one block (:data:`BLOCK_S`) at a time.

A 3-hour file never sits in memory: the seek loop asks for a window at a time, and a block
of features is computed from the chunks as they arrive. Within a block the spectrogram is
normalised as Whisper does over a whole file (to 8 below its maximum); inputs up to one block
long are therefore processed exactly as faster-whisper processes them, and longer ones differ
only in that this floor is set per block.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from audiototext._allocator import release_memory
from audiototext.audio.chunks import READ_CHUNK_SAMPLES
from audiototext.audio.features import HOP_LENGTH_SAMPLES, SAMPLE_RATE_HZ, LogMelBuilder

__all__ = ["BLOCK_S", "FeatureStream"]

FloatArray = NDArray[np.float32]
BLOCK_S = 300.0  # audio turned into features at once; bounds memory for long files
# A block of features is followed by a heap trim (release_memory) only from this much audio:
# a short file's chunks are small beside the encoder's working set, which the trim would make
# fault in again (bench/NOTES.md, round 10).
_TRIM_BLOCK_S = 60.0
_CONTEXT_FRAMES = 2  # frames of real audio kept before a block so its STFT needs no padding


class FeatureStream:
    """Log-mel frames of an input read chunk by chunk, computed one block at a time.

    Memory: the current block's spectrogram, the chunk being turned into frames (each chunk is
    let go once its frames are computed, so a block's audio is never held whole), and the last
    window of audio, which the next block starts from.
    """

    def __init__(
        self,
        chunks: Iterator[FloatArray],
        n_mels: int,
        window_frames: int,
        block_s: float | None = None,
    ) -> None:
        self._chunks = chunks
        self._n_mels = n_mels
        self._window = window_frames
        self._block_samples = max(
            round((block_s or BLOCK_S) * SAMPLE_RATE_HZ), 2 * window_frames * HOP_LENGTH_SAMPLES
        )
        # A block: the carried window and its context, the block proper and one chunk beyond.
        self._expected_block_samples = (
            self._block_samples
            + (window_frames + 3 * _CONTEXT_FRAMES) * HOP_LENGTH_SAMPLES
            + READ_CHUNK_SAMPLES
        )
        self._pieces: list[FloatArray] = []  # audio kept for the next block, in order
        self._audio_start = 0  # absolute sample of self._pieces[0][0], a multiple of HOP
        self._mel: FloatArray | None = None
        self._mel_start = 0  # absolute frame of self._mel[:, 0]
        self._usable_end = 0  # absolute frame: frames before it are final
        self._final = False
        self.samples = 0  # samples read so far (the whole input once exhausted)
        self.exhausted = False

    def window(self, seek: int) -> tuple[FloatArray, int]:
        """Frames from ``seek``: up to one window, and how many hold content (0 at the end)."""
        if self._mel is None or (not self._final and seek + self._window > self._usable_end):
            self._refill(seek)  # no reference to the old block is held while it runs
        mel = self._mel
        assert mel is not None
        end = min(seek + self._window, self._usable_end)
        if end <= seek:
            return np.zeros((self._n_mels, 0), dtype=np.float32), 0
        local = seek - self._mel_start
        return mel[:, local : local + end - seek], end - seek

    def _read(self) -> FloatArray | None:
        if self.exhausted:
            return None
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.exhausted = True
            return None
        self.samples += chunk.size
        return chunk

    def _refill(self, seek: int) -> FloatArray:
        new_start = (
            max(self._audio_start, (seek - _CONTEXT_FRAMES) * HOP_LENGTH_SAMPLES)
            if seek > _CONTEXT_FRAMES
            else 0
        )
        carried = _audio_from(self._pieces, self._audio_start, new_start)
        self._pieces = []
        self._mel = None  # release the previous block before computing the next
        # Frames are computed as chunks arrive and each chunk is let go once its frames are
        # done, so the block's audio is never held whole: only the spectrogram, and the tail
        # (one window and its context) that the next block starts from.
        builder = LogMelBuilder(self._n_mels, expected_samples=self._expected_block_samples)
        keep = (self._window + 2 * _CONTEXT_FRAMES + 1) * HOP_LENGTH_SAMPLES
        tail: list[FloatArray] = []
        tail_start = new_start  # absolute sample of tail[0][0]
        have = 0

        def take(piece: FloatArray) -> None:
            nonlocal have, tail_start
            builder.add(piece)
            have += piece.size
            tail.append(piece)
            while tail and new_start + have - (tail_start + tail[0].size) >= keep:
                tail_start += tail.pop(0).size

        for piece in carried:
            take(piece)
        del carried
        while have < self._block_samples:
            chunk = self._read()
            if chunk is None:
                break
            take(chunk)
        if not self.exhausted:  # a chunk ending exactly at the block's end: look one ahead
            nxt = self._read()
            if nxt is not None:
                take(nxt)
        base = new_start // HOP_LENGTH_SAMPLES
        if self.exhausted:
            # As Whisper: 160 samples of padding, and the last frame is not content.
            self._mel = builder.finish(padding_samples=HOP_LENGTH_SAMPLES)
            self._usable_end = base + self._mel.shape[1] - 1
            self._final = True
        else:
            self._mel = builder.finish()
            # The last frames' STFT windows reach past the block; the next block redoes them.
            self._usable_end = base + self._mel.shape[1] - _CONTEXT_FRAMES
            # The next block starts at most one window (and its context) before this one's
            # usable end: only that much audio has to be kept.
            self._audio_start = max(
                new_start, (self._usable_end - self._window - _CONTEXT_FRAMES) * HOP_LENGTH_SAMPLES
            )
            assert self._audio_start >= tail_start
            # Copied, so that the chunks they come from are freed.
            self._pieces = [p.copy() for p in _audio_from(tail, tail_start, self._audio_start)]
        self._mel_start = base
        tail.clear()  # the chunks it kept, before the trim below
        if have >= _TRIM_BLOCK_S * SAMPLE_RATE_HZ:
            release_memory()  # a long block's chunks, before the encoder needs the room
        return self._mel


def _audio_from(pieces: list[FloatArray], pieces_start: int, start: int) -> list[FloatArray]:
    """The audio of ``pieces`` (whose first sample is ``pieces_start``) from ``start`` on."""
    out: list[FloatArray] = []
    at = pieces_start
    for piece in pieces:
        end = at + piece.size
        if end > start:
            out.append(piece[max(start - at, 0) :])
        at = end
    return out
