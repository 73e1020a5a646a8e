"""The seek loop: Whisper's 30-s windows over one input's features, as faster-whisper runs it.

Encode the 30-s window at ``seek``; decode it, prompted with the previous text; cut the tokens
into segments at timestamp pairs; move ``seek`` to the last complete timestamp (or past the
window); skip windows the model judges silent. Several inputs' loops can run in one batch,
a window of each per round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from audiototext._allocator import release_memory_if_grown
from audiototext.audio.feature_stream import FeatureStream
from audiototext.audio.features import FRAME_S, SAMPLE_RATE_HZ, pad_or_trim
from audiototext.audio.speech_only import TimeMap
from audiototext.inference.alignment import Word, add_word_timestamps
from audiototext.inference.decoding import DecodeResult, decode_with_fallback
from audiototext.inference.options import TranscribeOptions
from audiototext.inference.results import Segment
from audiototext.inference.segments import is_hallucination, original_times, split_at_timestamps
from audiototext.inference.whisper import CrossAttention, WhisperModel

__all__ = [
    "Job",
    "ProgressCallback",
    "RunState",
    "Transcription",
    "Window",
    "detect_language",
    "next_windows",
    "run_windows",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float32]
ProgressCallback = Callable[[float], None]


@dataclass
class Window:
    """One window of an input's features, as the encoder takes it."""

    mel: FloatArray  # padded to a full window
    seek: int
    segment_size: int


@dataclass
class Job:
    """The seek loop of one input, driven one window at a time."""

    index: int
    stream: FeatureStream
    time_map: TimeMap | None
    options: TranscribeOptions
    language: str | None
    all_tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    seek: int = 0
    segment_id: int = 0
    last_speech_s: float = 0.0
    done: bool = False
    window: Window | None = None

    def next_window(self, window_frames: int) -> Window | None:
        if self.done:
            return None
        mel, size = self.stream.window(self.seek)
        if size <= 0:
            self.done = True
            return None
        self.window = Window(
            pad_or_trim(mel, window_frames).astype(np.float32, copy=False), self.seek, size
        )
        return self.window

    @property
    def processed_s(self) -> float:
        return min(self.seek * FRAME_S, self.stream.samples / SAMPLE_RATE_HZ)

    @property
    def audio_s(self) -> float:
        """Seconds of the input read so far (its duration once the job is done)."""
        if self.time_map is not None:  # the stream holds only the speech VAD kept
            return self.time_map.original_samples / SAMPLE_RATE_HZ
        return self.stream.samples / SAMPLE_RATE_HZ

    @property
    def transcribed_s(self) -> float:
        return self.processed_s if not self.done else self.audio_s


class RunState(Protocol):
    """What a transcription in progress knows about its input (a :class:`Job`, or the batched
    path's run)."""

    @property
    def language(self) -> str | None: ...

    @property
    def audio_s(self) -> float: ...

    @property
    def transcribed_s(self) -> float: ...


def next_windows(jobs: list[Job], window_frames: int) -> list[tuple[Job, Window]]:
    """The next window of every job that has one.

    A function of its own so that no local outlives the round: a window left in a local of the
    loop would keep its whole feature block alive while the next block is computed.
    """
    active = []
    for job in jobs:
        window = job.next_window(window_frames)
        if window is not None:
            active.append((job, window))
    return active


class Transcription(Iterator[Segment]):
    """Segments of one input as they are decoded, plus what was learnt about the input."""

    def __init__(self, segments: Iterator[Segment], state: RunState) -> None:
        self._segments = segments
        self._state = state

    def __iter__(self) -> Transcription:
        return self

    def __next__(self) -> Segment:
        return next(self._segments)

    @property
    def language(self) -> str | None:
        return self._state.language

    @property
    def audio_s(self) -> float:
        """Seconds of audio read so far (the input's duration once iteration has finished)."""
        return self._state.audio_s

    @property
    def processed_s(self) -> float:
        """Seconds of audio transcribed so far."""
        return self._state.transcribed_s


def run_windows(
    model: WhisperModel,
    jobs: list[Job],
    opts: TranscribeOptions,
    progress: ProgressCallback | None,
) -> Iterator[tuple[int, Segment]]:
    """Segments of ``jobs``, tagged with their job's index, as their windows are decoded: each
    round encodes and decodes the next window of every job that has one, as one batch."""
    tok = model.tokenizer
    suppress = (
        tok.default_suppress_tokens()
        if opts.suppress_tokens is None
        else tuple(opts.suppress_tokens)
    )
    dec = opts.decoding(suppress)
    while True:
        active = next_windows(jobs, model.window_frames)
        if not active:
            break
        cross = model.encode_each(np.stack([w.mel for _, w in active]))
        # Loops below go over the jobs, never bind a window: a window left in a local of
        # this frame would keep its whole feature block alive while the next one is made.
        active_jobs = [job for job, _ in active]
        for row, job in enumerate(active_jobs):
            if job.language is None:
                job.language = detect_language(model, cross.take([row]))
        prompts = [_prompt(model, job, opts) for job in active_jobs]
        results = decode_with_fallback(model, cross, prompts, dec)
        segments: list[tuple[Job, list[Segment]]] = [
            (job, _consume(model, job, window, result, cross, row))
            for row, ((job, window), result) in enumerate(zip(active, results, strict=True))
        ]
        # The window's features and encoder output are not needed any more: drop them
        # before the next window is read and encoded. Not trimmed here unconditionally: the
        # next window would fault the pages in again (bench/NOTES.md, round 13).
        for job in active_jobs:
            job.window = None
        del active, cross, results
        release_memory_if_grown()
        for job, found in segments:
            for segment in found:
                yield job.index, segment
            if progress is not None:
                progress(job.processed_s)


def detect_language(model: WhisperModel, cross: CrossAttention) -> str:
    """The most probable of the model's languages after ``<|startoftranscript|>``."""
    tok = model.tokenizer
    kv = model.decoder_for(cross)
    logits, _ = kv.prefill([[tok.sot]])
    codes = sorted(tok.languages, key=lambda c: tok.languages[c])
    ids = np.asarray([tok.languages[c] for c in codes])
    scores = logits[0, -1, ids].astype(np.float64)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    best = int(np.argmax(probs))
    log.info("detected language %s (p=%.2f)", codes[best], probs[best])
    return codes[best]


def _prompt(model: WhisperModel, job: Job, opts: TranscribeOptions) -> list[int]:
    tok = model.tokenizer
    prompt: list[int] = []
    previous = job.all_tokens[job.prompt_reset_since :]
    if previous:
        # Half the text context at most, so that the window's own text has the other half.
        prompt.append(tok.sot_prev)
        prompt.extend(previous[-(model.max_text_tokens // 2 - 1) :])
    prompt.extend(tok.sot_sequence(job.language, opts.task))
    if opts.without_timestamps:
        prompt.append(tok.no_timestamps)
    return prompt


def _consume(
    model: WhisperModel,
    job: Job,
    window: Window,
    result: DecodeResult,
    cross: CrossAttention,
    row: int,
) -> list[Segment]:
    """A decoded window's segments; moves the job's seek past what they cover."""
    opts = job.options
    tok = model.tokenizer
    seek = window.seek
    size = window.segment_size
    if opts.no_speech_threshold is not None:
        silent = result.no_speech_prob > opts.no_speech_threshold
        if opts.log_prob_threshold is not None and result.avg_logprob > opts.log_prob_threshold:
            silent = False  # confident text despite the no-speech score
        if silent:
            job.seek = seek + size
            return []
    time_offset = seek * FRAME_S
    pieces, job.seek, single_ending = split_at_timestamps(
        list(result.tokens), tok.timestamp_begin, time_offset, seek, size
    )
    words_by_piece: list[list[Word]] | None = None
    if opts.word_timestamps:
        words_by_piece, job.last_speech_s = add_word_timestamps(
            model,
            cross.take([row]),
            pieces,
            size,
            job.language,
            opts.prepend_punctuations,
            opts.append_punctuations,
            job.last_speech_s,
            time_offset,
        )
        if not single_ending:
            ends = [w[-1].end_s for w in words_by_piece if w]
            if ends and ends[-1] > time_offset:
                job.seek = round(ends[-1] / FRAME_S)
    if opts.suppress_hallucinations and is_hallucination(pieces, result):
        log.debug("dropping a likely hallucination at %.1f s: %r", time_offset, result.text)
        pieces = []
    out: list[Segment] = []
    for n, piece in enumerate(pieces):
        text = tok.decode(piece.tokens)
        if piece.start_s == piece.end_s or not text.strip():
            continue
        job.all_tokens.extend(piece.tokens)
        job.segment_id += 1
        words = tuple(words_by_piece[n]) if words_by_piece is not None else None
        start, end = piece.start_s, piece.end_s
        if job.time_map is not None:
            start, end, words = original_times(start, end, words, job.time_map)
        out.append(
            Segment(
                id=job.segment_id,
                start_s=round(start, 3),
                end_s=round(end, 3),
                text=text,
                tokens=tuple(piece.tokens),
                avg_logprob=result.avg_logprob,
                no_speech_prob=result.no_speech_prob,
                compression_ratio=result.compression_ratio,
                temperature=result.temperature,
                words=words,
            )
        )
    if not opts.condition_on_previous_text or result.temperature > opts.prompt_reset_on_temperature:
        job.prompt_reset_since = len(job.all_tokens)
    return out
