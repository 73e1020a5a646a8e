"""Word-level timestamps: dynamic time warping over the alignment heads' cross-attention.

Whisper's method (also faster-whisper's): run the decoder once over the window's text tokens,
take the cross-attention weights of the heads known to follow the audio (the graph's
``alignment_attention`` output), keep the frames that hold audio, standardise each frame over the
tokens, smooth along time with a median filter of width 7, average the heads, and find the
monotonic token-to-frame path of least cost (DTW on the negated weights). A word starts where
the path first reaches its first token.

Then the same clean-ups as Whisper: words at sentence ends or after pauses may not last longer
than twice the median word; leading punctuation joins the next word and trailing punctuation
the previous one; segment bounds and word bounds are reconciled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from audiototext.inference.tokenizer import TIME_PRECISION_S

if TYPE_CHECKING:
    from audiototext.inference.whisper import CrossAttention, WhisperModel

__all__ = [
    "APPEND_PUNCTUATIONS",
    "PREPEND_PUNCTUATIONS",
    "Word",
    "add_word_timestamps",
    "dtw",
    "median_filter",
]

FloatArray = NDArray[np.float32]
MEDIAN_FILTER_WIDTH = 7
# Whisper's: punctuation that joins the next word (opening) or the previous one (closing),
# so that a word's time covers its own sound only.
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
_SENTENCE_END = ".。!！?？"


@dataclass(frozen=True)
class Word:
    """One word and where it is said, in seconds from the start of the input."""

    start_s: float
    end_s: float
    text: str
    probability: float


class _Piece(Protocol):
    start_s: float
    end_s: float
    tokens: list[int]


def median_filter(x: FloatArray, width: int = MEDIAN_FILTER_WIDTH) -> FloatArray:
    """Median over a sliding window along the last axis, reflect-padded (as Whisper)."""
    if width <= 1 or x.shape[-1] <= width // 2:
        return x
    half = width // 2
    pad = [(0, 0)] * (x.ndim - 1) + [(half, half)]
    windows = sliding_window_view(np.pad(x, pad, mode="reflect"), width, axis=-1)
    # partition is several times faster than np.median for a 7-wide window
    return np.partition(windows, half, axis=-1)[..., half].astype(np.float32)


def dtw(cost: NDArray[np.floating]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The least-cost monotonic path through ``cost`` [tokens, frames] (Whisper's recurrence).

    Cells are filled one anti-diagonal at a time: every cell of a diagonal depends only on the
    two before it, so each diagonal is a single vectorised step.
    """
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)
    x = np.asarray(cost, dtype=np.float64)
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        c0 = acc[i - 1, j - 1]
        c1 = acc[i - 1, j]
        c2 = acc[i, j - 1]
        # Whisper's tie-breaking: diagonal only if strictly best, then up, else left.
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        best = np.where(t == 0, c0, np.where(t == 1, c1, c2))
        acc[i, j] = x[i - 1, j - 1] + best
        trace[i, j] = t
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = n, m
    path_i: list[int] = []
    path_j: list[int] = []
    while i > 0 or j > 0:
        path_i.append(i - 1)
        path_j.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.asarray(path_i[::-1], dtype=np.int64), np.asarray(path_j[::-1], dtype=np.int64)


@dataclass
class _Timing:
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


def _find_alignment(
    model: WhisperModel,
    cross: CrossAttention,
    text_tokens: list[int],
    num_frames: int,
    language: str | None,
) -> list[_Timing]:
    tok = model.tokenizer
    if not text_tokens:
        return []
    sot_seq = list(tok.sot_sequence(language if tok.multilingual else None))
    sequence = [*sot_seq, tok.no_timestamps, *text_tokens, tok.eot]
    logits, attention, _ = model.forward_full(cross, [sequence])
    offset = len(sot_seq)
    # Probability of each text token among text tokens only, as the reference computes it.
    text_logits = logits[0, offset : offset + len(text_tokens), : tok.eot].astype(np.float64)
    text_logits -= text_logits.max(axis=-1, keepdims=True)
    probs = np.exp(text_logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    token_probs = probs[np.arange(len(text_tokens)), text_tokens]

    frames = max(1, num_frames // 2)
    weights = attention[0][:, :, :frames].astype(np.float32)  # [heads, tokens, frames]
    weights /= np.maximum(weights.sum(axis=-1, keepdims=True), np.float32(1e-12))
    mean = weights.mean(axis=-2, keepdims=True)
    std = weights.std(axis=-2, keepdims=True)
    weights = (weights - mean) / np.maximum(std, np.float32(1e-12))
    matrix = median_filter(weights).mean(axis=0)[offset:-1]
    text_idx, time_idx = dtw(-matrix)

    words, word_tokens = tok.split_to_word_tokens([*text_tokens, tok.eot], language)
    if len(word_tokens) <= 1:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    jump_times = time_idx[jumps] * TIME_PRECISION_S
    starts = jump_times[boundaries[:-1]]
    ends = jump_times[boundaries[1:]]
    return [
        _Timing(w, t, float(s), float(e), float(np.mean(token_probs[i:j])) if j > i else 0.0)
        for w, t, s, e, i, j in zip(
            words, word_tokens, starts, ends, boundaries[:-1], boundaries[1:], strict=False
        )
    ]


def _merge_punctuations(alignment: list[_Timing], prepended: str, appended: str) -> None:
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        prev, nxt = alignment[i], alignment[j]
        if prev.word.startswith(" ") and prev.word.strip() in prepended:
            nxt.word = prev.word + nxt.word
            nxt.tokens = prev.tokens + nxt.tokens
            prev.word, prev.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        prev, nxt = alignment[i], alignment[j]
        if not prev.word.endswith(" ") and nxt.word in appended:
            prev.word = prev.word + nxt.word
            prev.tokens = prev.tokens + nxt.tokens
            nxt.word, nxt.tokens = "", []
        else:
            i = j
        j += 1


def add_word_timestamps(
    model: WhisperModel,
    cross: CrossAttention,
    pieces: Sequence[_Piece],
    num_frames: int,
    language: str | None,
    prepend_punctuations: str,
    append_punctuations: str,
    last_speech_s: float,
    time_offset_s: float,
) -> tuple[list[list[Word]], float]:
    """Words of each piece of one window; also moves piece bounds to agree with the words.

    Returns the words per piece and the updated end of the last speech.
    """
    eot = model.tokenizer.eot
    per_piece = [[t for t in p.tokens if t < eot] for p in pieces]
    text_tokens = [t for toks in per_piece for t in toks]
    alignment = _find_alignment(model, cross, text_tokens, num_frames, language)
    durations = np.array([a.end - a.start for a in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    longest = median * 2
    if len(durations):
        for i in range(1, len(alignment)):
            a = alignment[i]
            if a.end - a.start > longest:
                if a.word in _SENTENCE_END:
                    a.end = a.start + longest
                elif alignment[i - 1].word in _SENTENCE_END:
                    a.start = a.end - longest
    _merge_punctuations(alignment, prepend_punctuations, append_punctuations)

    out: list[list[Word]] = []
    index = 0
    for piece, toks in zip(pieces, per_piece, strict=True):
        saved = 0
        raw: list[list[float | str]] = []  # [start, end, word, probability], adjusted below
        while index < len(alignment) and saved < len(toks):
            a = alignment[index]
            if a.word:
                raw.append(
                    [
                        round(time_offset_s + a.start, 2),
                        round(time_offset_s + a.end, 2),
                        a.word,
                        a.probability,
                    ]
                )
            saved += len(a.tokens)
            index += 1
        if raw:
            s0, e0 = float(raw[0][0]), float(raw[0][1])
            # After a pause, the first word(s) tend to absorb the silence: cap them.
            if e0 - last_speech_s > median * 4 and (
                e0 - s0 > longest or (len(raw) > 1 and float(raw[1][1]) - s0 > longest * 2)
            ):
                if len(raw) > 1 and float(raw[1][1]) - float(raw[1][0]) > longest:
                    boundary = max(float(raw[1][1]) / 2, float(raw[1][1]) - longest)
                    raw[0][1] = raw[1][0] = boundary
                raw[0][0] = max(0.0, float(raw[0][1]) - longest)
            if piece.start_s < float(raw[0][1]) and piece.start_s - 0.5 > float(raw[0][0]):
                raw[0][0] = max(0.0, min(float(raw[0][1]) - median, piece.start_s))
            else:
                piece.start_s = float(raw[0][0])
            if piece.end_s > float(raw[-1][0]) and piece.end_s + 0.5 < float(raw[-1][1]):
                raw[-1][1] = max(float(raw[-1][0]) + median, piece.end_s)
            else:
                piece.end_s = float(raw[-1][1])
            last_speech_s = piece.end_s
        out.append(
            [
                Word(round(float(r[0]), 3), round(float(r[1]), 3), str(r[2]), float(r[3]))
                for r in raw
            ]
        )
    return out, last_speech_s
