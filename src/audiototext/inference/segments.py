"""A decoded window → pieces of text: cut at timestamp pairs, hallucinations recognised,
times mapped back to the input's when VAD cut the silence out."""

from __future__ import annotations

from dataclasses import dataclass, replace

from audiototext.audio.features import FRAME_S
from audiototext.audio.speech_only import TimeMap
from audiototext.inference.alignment import Word
from audiototext.inference.decoding import DecodeResult
from audiototext.inference.hallucinations import HALLUCINATION_NO_SPEECH, HALLUCINATIONS
from audiototext.inference.tokenizer import TIME_PRECISION_S

__all__ = ["Piece", "is_hallucination", "original_times", "split_at_timestamps"]


@dataclass
class Piece:
    """Tokens between two timestamps of a window, and their times."""

    start_s: float
    end_s: float
    tokens: list[int]


def split_at_timestamps(
    tokens: list[int], ts_begin: int, time_offset: float, seek: int, size: int
) -> tuple[list[Piece], int, bool]:
    """Cut a window's tokens at timestamp pairs; the new seek; whether it ended on one timestamp."""
    single_ending = len(tokens) >= 2 and tokens[-2] < ts_begin <= tokens[-1]
    cuts = [i for i in range(1, len(tokens)) if tokens[i] >= ts_begin and tokens[i - 1] >= ts_begin]
    pieces: list[Piece] = []
    if cuts:
        if single_ending:
            cuts.append(len(tokens))
        last = 0
        for cut in cuts:
            part = tokens[last:cut]
            pieces.append(
                Piece(
                    time_offset + (part[0] - ts_begin) * TIME_PRECISION_S,
                    time_offset + (part[-1] - ts_begin) * TIME_PRECISION_S,
                    part,
                )
            )
            last = cut
        if single_ending:
            seek += size  # nothing is said after the last timestamp
        else:
            # The text after the last pair is unfinished: decode it again in the next window.
            seek += (tokens[last - 1] - ts_begin) * 2
    else:
        duration = size * FRAME_S
        stamps = [t for t in tokens if t >= ts_begin]
        if stamps and stamps[-1] != ts_begin:
            duration = (stamps[-1] - ts_begin) * TIME_PRECISION_S
        pieces.append(Piece(time_offset, time_offset + duration, tokens))
        seek += size
    return pieces, seek, single_ending


def is_hallucination(pieces: list[Piece], result: DecodeResult) -> bool:
    """Whether a window's text is better dropped: no word in it, or a stock caption alone in a
    window the model thinks silent."""
    if not pieces:
        return False
    text = " ".join(result.text.split()).lower()
    # Punctuation alone (" .", " . ." from hum or room noise, often at a raised
    # temperature) has no word in it to keep, whatever the no-speech score.
    if not any(ch.isalnum() for ch in text):
        return True
    # Whisper's stock captions for silence ("You", "Thank you.") come out confidently
    # enough to pass the no-speech test, but alone in a window the model thinks silent.
    return text in HALLUCINATIONS and result.no_speech_prob > HALLUCINATION_NO_SPEECH


def original_times(
    start_s: float, end_s: float, words: tuple[Word, ...] | None, time_map: TimeMap
) -> tuple[float, float, tuple[Word, ...] | None]:
    """A piece's times (and its words') in speech-only audio, mapped back to the input's.

    A word maps through the span holding its middle, so it never straddles the silence that
    was cut; a piece with words then starts and ends with them.
    """
    if words:
        tm = time_map
        words = tuple(
            replace(
                w,
                start_s=round(
                    tm.original_s(w.start_s, span=tm.span_index((w.start_s + w.end_s) / 2)),
                    3,
                ),
                end_s=round(
                    tm.original_s(w.end_s, span=tm.span_index((w.start_s + w.end_s) / 2)),
                    3,
                ),
            )
            for w in words
        )
        return words[0].start_s, words[-1].end_s, words
    return time_map.original_s(start_s), time_map.original_s(end_s, is_end=True), words
