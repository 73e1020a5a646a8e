"""Batched long-form transcription: chunks of speech decoded together, stitched in order.

The seek loop (:mod:`audiototext.inference.seek`) decodes one window after the other, each
prompted with the text before it, so a long file's decoder steps run one row at a time. Here
the input is cut at pauses into chunks of up to 30 s
(:class:`~audiototext.audio.speech_chunks.SpeechChunker`), and ``batch_size`` chunks at a
time are encoded and then decoded as one batch (greedy or beam search, with Whisper's
timestamp rules and temperature fallback per chunk), as faster-whisper's
``BatchedInferencePipeline`` does. Each chunk is decoded once: text after its last timestamp
pair, which the seek loop would decode again in the next window, ends at the chunk's end.
Segments come out in the input's order and times, numbered from 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
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
from audiototext.inference.tokenizer import TIME_PRECISION_S
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
    """A chunk's log-mel window (zero-padded as the seek loop pads a file's last window) and
    how many of its frames hold audio."""
    # 160 samples of padding and the last frame left out, as for a whole file.
    mel = log_mel_spectrogram(audio, n_mels, padding_samples=HOP_LENGTH_SAMPLES)
    size = max(1, min(mel.shape[1] - 1, window_frames))
    window = pad_or_trim(mel[:, :size], window_frames)
    return np.asarray(window, dtype=np.float32), size


def run_batches(
    model: WhisperModel,
    run: BatchedRun,
    opts: TranscribeOptions,
    progress: ProgressCallback | None,
) -> Iterator[Segment]:
    """The segments of ``run``'s input, ``opts.batch_size`` chunks per batch."""
    tok = model.tokenizer
    suppress = (
        tok.default_suppress_tokens()
        if opts.suppress_tokens is None
        else tuple(opts.suppress_tokens)
    )
    dec = opts.decoding(suppress)
    chunks = iter(run.chunker)
    while True:
        batch = list(islice(chunks, opts.batch_size))
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
        found = [
            _segments(model, run, opts, chunk, size, result, cross, row)
            for row, (chunk, size, result) in enumerate(zip(batch, sizes, results, strict=True))
        ]
        run.done_s = batch[-1].end_s
        del cross, results, batch
        release_memory_if_grown()
        for segments in found:
            yield from segments
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


def chunk_pieces(tokens: list[int], ts_begin: int, size: int) -> list[Piece]:
    """A chunk's tokens cut at timestamp pairs (chunk times); text after the last pair, which
    the seek loop would decode again in its next window, is a piece ending with the chunk.
    Times stay within the chunk's audio."""
    pieces, _, _ = split_at_timestamps(tokens, ts_begin, 0.0, 0, size)
    used = sum(len(p.tokens) for p in pieces)
    tail = tokens[used:]
    if any(t < ts_begin for t in tail):
        start = (tail[0] - ts_begin) * TIME_PRECISION_S if tail[0] >= ts_begin else 0.0
        pieces.append(Piece(start, size * FRAME_S, tail))
    duration = size * FRAME_S
    for piece in pieces:
        piece.end_s = min(piece.end_s, duration)
        piece.start_s = min(piece.start_s, piece.end_s)
    return pieces


def _segments(
    model: WhisperModel,
    run: BatchedRun,
    opts: TranscribeOptions,
    chunk: SpeechChunk,
    size: int,
    result: DecodeResult,
    cross: CrossAttention,
    row: int,
) -> list[Segment]:
    """One decoded chunk's segments, in the input's times."""
    tok = model.tokenizer
    if opts.no_speech_threshold is not None:
        silent = result.no_speech_prob > opts.no_speech_threshold
        if opts.log_prob_threshold is not None and result.avg_logprob > opts.log_prob_threshold:
            silent = False  # confident text despite the no-speech score
        if silent:
            return []
    pieces = chunk_pieces(list(result.tokens), tok.timestamp_begin, size)
    if opts.suppress_hallucinations and is_hallucination(pieces, result):
        return []
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
    out: list[Segment] = []
    for n, piece in enumerate(pieces):
        text = tok.decode(piece.tokens)
        if piece.start_s == piece.end_s or not text.strip():
            continue
        words = tuple(words_by_piece[n]) if words_by_piece is not None else None
        start, end, words = original_times(piece.start_s, piece.end_s, words, chunk.time_map)
        run.segment_id += 1
        out.append(
            Segment(
                id=run.segment_id,
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
    return out
