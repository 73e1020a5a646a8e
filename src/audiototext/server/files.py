"""Whole-file transcription for the server (``Transcription.Transcribe``), transport-neutral.

:class:`FileRequest` / :class:`FileTranscript` are what an adapter passes in and gets back;
:class:`FileTranscriber` is the real implementation (tests inject their own
``FileTranscribeFn``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from audiototext.errors import ConfigError

__all__ = [
    "FileRequest",
    "FileTranscribeFn",
    "FileTranscriber",
    "FileTranscript",
    "SegmentFn",
    "SegmentScores",
    "temperatures_from",
]

# Called with each segment (start_s, end_s, text) as it is decoded, from the worker thread.
SegmentFn = Callable[[tuple[float, float, str]], None]


@dataclass(frozen=True)
class FileRequest:
    """A validated ``TranscribeRequest`` (gRPC) or upload (HTTP)."""

    audio: bytes | BinaryIO  # the file's bytes, or the file itself (an upload on disk)
    language: str | None = None
    word_timestamps: bool = False
    beam_size: int = 5
    transport: str = ""  # "grpc", "http", ...: what the history says the file came over
    task: str = "transcribe"  # or "translate" (to English; multilingual models)
    model: str = ""  # the model asked for; empty: the server's default
    # A loaded WhisperModel of the server's model pool to use instead of the transcriber's
    # own model (a request for a model other than the default).
    whisper: object | None = None
    prompt: str | None = None  # text the first window's decoder is prompted with
    temperature: float = 0.0  # the first temperature tried (Whisper's fallback goes up)
    on_segment: SegmentFn | None = None  # segments as they are decoded (streamed answers)


@dataclass(frozen=True)
class SegmentScores:
    """How a segment was decoded (OpenAI's verbose_json shows these)."""

    tokens: tuple[int, ...]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float


@dataclass(frozen=True)
class FileTranscript:
    text: str
    language: str
    duration_s: float
    segments: tuple[tuple[float, float, str], ...]
    words: tuple[tuple[float, float, str], ...]
    scores: tuple[SegmentScores, ...] = ()  # one per segment; empty: not known


def temperatures_from(first: float) -> tuple[float, ...]:
    """Whisper's fallback temperatures starting at ``first`` (0: all of them)."""
    from audiototext.inference.decoding import TEMPERATURES

    return (first, *(t for t in TEMPERATURES if t > first + 1e-6))


FileTranscribeFn = Callable[[FileRequest], Awaitable[FileTranscript]]


class FileTranscriber:
    """Transcribes whole files for ``Transcription.Transcribe``: loads the model on first use,
    runs one file at a time in a worker thread (never on the event loop)."""

    def __init__(
        self,
        model: str,
        precision: str,
        cache_root: Path | None = None,
        *,
        on_load: Callable[[str, float, BaseException | None], None] | None = None,
    ) -> None:
        self._model = model
        self._on_load = on_load  # (model, seconds, error or None): metrics and alerts
        self._precision = precision
        self._cache_root = cache_root
        self._transcriber: object | None = None
        # A thread lock, not an asyncio one: one instance may serve several event loops.
        self._lock = threading.Lock()

    @property
    def model_path(self) -> Path | None:
        """The cache folder of the loaded model (None before the first file)."""
        path = getattr(getattr(self._transcriber, "model", None), "path", None)
        return path if isinstance(path, Path) else None

    async def __call__(self, request: FileRequest) -> FileTranscript:
        return await asyncio.to_thread(self._run_locked, request)

    def _run_locked(self, request: FileRequest) -> FileTranscript:
        with self._lock:
            return self._run(request)

    def _run(self, request: FileRequest) -> FileTranscript:
        from audiototext.inference import TranscribeOptions, Transcriber
        from audiototext.inference.whisper import WhisperModel

        if isinstance(request.whisper, WhisperModel):
            transcriber = Transcriber(request.whisper)
        elif request.model and request.model != self._model:
            raise ConfigError(f"model {request.model} cannot transcribe files on this server")
        else:
            if self._transcriber is None:
                began = time.monotonic()
                try:
                    self._transcriber = Transcriber.load(
                        self._model, precision=self._precision, cache_root=self._cache_root
                    )
                except Exception as exc:
                    if self._on_load is not None:
                        self._on_load(self._model, time.monotonic() - began, exc)
                    raise
                if self._on_load is not None:
                    self._on_load(self._model, time.monotonic() - began, None)
            assert isinstance(self._transcriber, Transcriber)
            transcriber = self._transcriber
        options = TranscribeOptions(
            language=request.language,
            task=request.task,
            word_timestamps=request.word_timestamps,
            beam_size=request.beam_size,
            best_of=request.beam_size,
            temperatures=temperatures_from(request.temperature),
            initial_prompt=request.prompt or None,
            vad=True,
        )
        # An English-only model refuses another language here (transcribe() checks the options
        # before reading audio; ConfigError is a ValueError: the caller's INVALID_ARGUMENT).
        result = transcriber.transcribe(request.audio, options)
        segments = []
        for segment in result:  # decoded lazily, window by window
            segments.append(segment)
            if request.on_segment is not None:
                request.on_segment((segment.start_s, segment.end_s, segment.text.strip()))
        word_list = [(w.start_s, w.end_s, w.text) for s in segments for w in (s.words or ())]
        return FileTranscript(
            text=" ".join(s.text.strip() for s in segments).strip(),
            language=result.language or "",
            duration_s=result.audio_s,
            segments=tuple((s.start_s, s.end_s, s.text.strip()) for s in segments),
            words=tuple(word_list),
            scores=tuple(
                SegmentScores(
                    s.tokens, s.avg_logprob, s.compression_ratio, s.no_speech_prob, s.temperature
                )
                for s in segments
            ),
        )
