"""What file transcription gives back: segments of text with their times, per input."""

from __future__ import annotations

from dataclasses import dataclass, replace

from audiototext.errors import AudioToTextError
from audiototext.inference.alignment import Word

__all__ = ["FileResult", "Segment", "shifted"]


@dataclass(frozen=True)
class Segment:
    """A stretch of transcribed speech; times are seconds from the start of the input."""

    id: int
    start_s: float
    end_s: float
    text: str
    tokens: tuple[int, ...]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    words: tuple[Word, ...] | None = None


@dataclass(frozen=True)
class FileResult:
    """One input of :meth:`Transcriber.transcribe_each`, transcribed or failed.

    Attributes:
        index: the input's position in the list given.
        segments: its segments (empty when ``error`` is set).
        language: the language decoded in (detected or given).
        audio_s: seconds of audio read.
        wall_s: seconds from the start of this input to its last segment.
        error: why the input could not be transcribed (unreadable audio, ...), or None.
    """

    index: int
    segments: list[Segment]
    language: str | None
    audio_s: float
    wall_s: float
    error: AudioToTextError | None = None


def shifted(segment: Segment, offset_s: float, new_id: int) -> Segment:
    """``segment`` of a part that starts ``offset_s`` into its input, renumbered."""
    words = segment.words
    if words is not None:
        words = tuple(
            replace(w, start_s=w.start_s + offset_s, end_s=w.end_s + offset_s) for w in words
        )
    return replace(
        segment,
        id=new_id,
        start_s=segment.start_s + offset_s,
        end_s=segment.end_s + offset_s,
        words=words,
    )
