"""Batched long-form transcription: chunks of speech decoded together, stitched in order.

The seek loop (:mod:`audiototext.inference.seek`) decodes one window after the other, each
prompted with the text before it, so a long file's decoder steps run one row at a time. Here
the input is cut at pauses into chunks of up to 28 s in 30-s windows
(:class:`~audiototext.audio.speech_chunks.SpeechChunker`), and ``batch_size`` chunks at a
time are encoded and then decoded as one batch (greedy or beam search, with Whisper's
timestamp rules and temperature fallback per chunk), as faster-whisper's
``BatchedInferencePipeline`` does. Where the seek loop would start its next window before a
chunk's end (text after the last timestamp pair, or speech the model left for later), that
rest of the chunk joins the next batch. Segments come out in the input's order and times,
numbered from 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from itertools import islice

import numpy as np
from numpy.typing import NDArray

from audiototext._allocator import release_memory_if_grown
from audiototext.audio.features import (
    FRAME_S,
    HOP_LENGTH_SAMPLES,
    SAMPLE_RATE_HZ,
    log_mel_spectrogram,
    pad_or_trim,
)
from audiototext.audio.speech_chunks import SpeechChunk, SpeechChunker
from audiototext.inference.alignment import Word, add_word_timestamps
from audiototext.inference.decoding import DecodeResult, decode_with_fallback
from audiototext.inference.options import TranscribeOptions
from audiototext.inference.results import Segment
from audiototext.inference.seek import ProgressCallback, detect_language
from audiototext.inference.segments import (
    Piece,
    is_hallucination,
    original_times,
    split_at_timestamps,
)
from audiototext.inference.whisper import CrossAttention, WhisperModel

__all__ = ["BatchedRun", "chunk_features", "run_batches"]

FloatArray = NDArray[np.float32]


@dataclass
class BatchedRun:
    """A batched transcription in progress (a :class:`~audiototext.inference.seek.RunState`)."""

    chunker: SpeechChunker
    language: str | None
    prompt_tokens: list[int] = field(default_factory=list)  # the initial prompt's, if any
    done_s: float = 0.0
    done: bool = False
    segment_id: int = 0

    @property
    def audio_s(self) -> float:
        return self.chunker.samples / SAMPLE_RATE_HZ

    @property
    def transcribed_s(self) -> float:
        return self.audio_s if self.done else self.done_s


def chunk_features(audio: FloatArray, n_mels: int, window_frames: int) -> tuple[FloatArray, int]:
    """A chunk's log-mel window and how many of its frames hold audio.

    The window is the log-mel of the chunk followed by digital silence (as Whisper pads audio),
    not the chunk's log-mel padded with zeros (faster-whisper's and the seek loop's last
    window): a log-mel of zero is not silence (silence sits at the floor, max - 8), and tiny.en
    then left a chunk's last sentence undecoded more often (bench/NOTES.md, batched2).
    """
    size = max(1, min(audio.size // HOP_LENGTH_SAMPLES, window_frames))
    pad = max(HOP_LENGTH_SAMPLES, (window_frames + 1) * HOP_LENGTH_SAMPLES - audio.size)
    mel = log_mel_spectrogram(audio, n_mels, padding_samples=pad)
    window = pad_or_trim(mel, window_frames)
    return np.asarray(window, dtype=np.float32), size


def run_batches(
    model: WhisperModel,
    run: BatchedRun,
    opts: TranscribeOptions,
    progress: ProgressCallback | None,
) -> Iterator[Segment]:
    """The segments of ``run``'s input, ``opts.batch_size`` chunks per batch.

    A chunk whose decoding stopped at a timestamp pair before its end (the model moved the
    rest to "the next window", as the seek loop would) has the rest decoded in the next batch,
    ahead of new chunks; segments after it wait, so they come out in order.
    """
    tok = model.tokenizer
    suppress = (
        tok.default_suppress_tokens()
        if opts.suppress_tokens is None
        else tuple(opts.suppress_tokens)
    )
    dec = opts.decoding(suppress)
    fresh = iter(run.chunker)
    rests: list[SpeechChunk] = []
    held: list[tuple[float, int, Segment]] = []  # (chunk start, order in chunk, segment)
    while True:
        batch = rests + list(islice(fresh, opts.batch_size - len(rests)))
        if not batch:
            break
        features = [chunk_features(c.audio, model.n_mels, model.window_frames) for c in batch]
        cross = model.encode_each(np.stack([mel for mel, _ in features]))
        sizes = [size for _, size in features]
        del features
        if run.language is None:
            run.language = detect_language(model, cross.take([0]))
        prompt = _prompt(model, run, opts)
        results = decode_with_fallback(model, cross, [prompt] * len(batch), dec)
        rests = []
        for row, (chunk, size, result) in enumerate(zip(batch, sizes, results, strict=True)):
            segments, seek = _segments(model, run, opts, chunk, size, result, cross, row)
            held.extend((chunk.start_s, n, segment) for n, segment in enumerate(segments))
            if seek < size:
                rests.append(chunk.rest(seek * HOP_LENGTH_SAMPLES))
        run.done_s = rests[0].start_s if rests else batch[-1].end_s
        del cross, results, batch
        release_memory_if_grown()
        held.sort(key=lambda item: item[:2])
        ready = [item for item in held if not rests or item[0] < rests[0].start_s]
        held = held[len(ready) :]
        for _, _, segment in ready:
            run.segment_id += 1
            yield replace(segment, id=run.segment_id)
        if progress is not None:
            progress(run.done_s)
    run.done = True


def _prompt(model: WhisperModel, run: BatchedRun, opts: TranscribeOptions) -> list[int]:
    tok = model.tokenizer
    prompt: list[int] = []
    if run.prompt_tokens:  # every chunk gets the initial prompt: none follows another's text
        prompt.append(tok.sot_prev)
        prompt.extend(run.prompt_tokens[-(model.max_text_tokens // 2 - 1) :])
    prompt.extend(tok.sot_sequence(run.language, opts.task))
    if opts.without_timestamps:
        prompt.append(tok.no_timestamps)
    return prompt


def chunk_pieces(tokens: list[int], ts_begin: int, size: int) -> tuple[list[Piece], int, bool]:
    """A chunk's tokens cut at timestamp pairs (times within the chunk's audio), the frame
    where the next pass should start (``size`` when the chunk is done), and whether the
    tokens ended with a single timestamp."""
    pieces, seek, single_ending = split_at_timestamps(tokens, ts_begin, 0.0, 0, size)
    duration = size * FRAME_S
    for piece in pieces:
        piece.end_s = min(piece.end_s, duration)
        piece.start_s = min(piece.start_s, piece.end_s)
    # No progress (a first pair at 0) would decode the same audio again: the chunk is done.
    return pieces, seek if 0 < seek < size else size, single_ending


def _segments(
    model: WhisperModel,
    run: BatchedRun,
    opts: TranscribeOptions,
    chunk: SpeechChunk,
    size: int,
    result: DecodeResult,
    cross: CrossAttention,
    row: int,
) -> tuple[list[Segment], int]:
    """One decoded chunk's segments, in the input's times (numbered later), and the frame
    where the chunk's next pass should start (``size``: none)."""
    tok = model.tokenizer
    if opts.no_speech_threshold is not None:
        silent = result.no_speech_prob > opts.no_speech_threshold
        if opts.log_prob_threshold is not None and result.avg_logprob > opts.log_prob_threshold:
            silent = False  # confident text despite the no-speech score
        if silent:
            return [], size
    pieces, seek, single_ending = chunk_pieces(list(result.tokens), tok.timestamp_begin, size)
    words_by_piece: list[list[Word]] | None = None
    if opts.word_timestamps and pieces:
        words_by_piece, _ = add_word_timestamps(
            model,
            cross.take([row]),
            pieces,
            size,
            run.language,
            opts.prepend_punctuations,
            opts.append_punctuations,
            0.0,
            0.0,
        )
        ends = [w[-1].end_s for w in words_by_piece if w]
        if not single_ending and ends and 0 < round(ends[-1] / FRAME_S) < seek:
            seek = round(ends[-1] / FRAME_S)  # as the seek loop: after the last word
    if opts.suppress_hallucinations and is_hallucination(pieces, result):
        return [], seek
    out: list[Segment] = []
    for n, piece in enumerate(pieces):
        text = tok.decode(piece.tokens)
        if piece.start_s == piece.end_s or not text.strip():
            continue
        words = tuple(words_by_piece[n]) if words_by_piece is not None else None
        start, end, words = original_times(piece.start_s, piece.end_s, words, chunk.time_map)
        out.append(
            Segment(
                id=0,
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
    return out, seek
