"""Real-time streaming recognition: sessions that turn audio chunks into partial and final text.

* :class:`StreamingRecognizer` — one per process: the shared model, the worker thread and its lanes.
* :class:`StreamSession` — one per client stream: ``accept`` audio, iterate ``events()``.
* :mod:`~audiototext.streaming.types` — the value objects and errors adapters rely on.
"""

from __future__ import annotations

from audiototext.streaming.options import RecognizerOptions
from audiototext.streaming.recognizer import StreamingRecognizer
from audiototext.streaming.session import StreamSession
from audiototext.streaming.types import (
    BufferFullError,
    EngineStats,
    OverloadedError,
    SpeechEvent,
    SpeechEventKind,
    StreamOptions,
    StreamResult,
    StreamWord,
)

__all__ = [
    "BufferFullError",
    "EngineStats",
    "OverloadedError",
    "RecognizerOptions",
    "SpeechEvent",
    "SpeechEventKind",
    "StreamOptions",
    "StreamResult",
    "StreamSession",
    "StreamWord",
    "StreamingRecognizer",
]
