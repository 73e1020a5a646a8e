"""Real-time streaming recognition: sessions that turn audio chunks into partial and final text.

* :class:`StreamingRecognizer` — one per process: the shared model, the worker thread and its lanes.
* :class:`RecognitionStream` — one per client stream: ``accept`` audio, iterate ``events()``.
* :mod:`~audiototext.streaming.types` — the value objects and errors adapters rely on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Loaded on first use (PEP 562): adapters that only need the value objects in ``types`` must
# not load the recognizer, and with it ONNX Runtime.
_HOMES = {
    "RecognizerOptions": "options",
    "StreamingRecognizer": "recognizer",
    "RecognitionStream": "stream",
    "BufferFullError": "types",
    "EngineStats": "types",
    "OverloadedError": "types",
    "SpeechEvent": "types",
    "SpeechEventKind": "types",
    "StreamOptions": "types",
    "StreamResult": "types",
    "StreamWord": "types",
}

__all__ = [
    "BufferFullError",
    "EngineStats",
    "OverloadedError",
    "RecognitionStream",
    "RecognizerOptions",
    "SpeechEvent",
    "SpeechEventKind",
    "StreamOptions",
    "StreamResult",
    "StreamWord",
    "StreamingRecognizer",
]

if TYPE_CHECKING:
    from audiototext.streaming.options import RecognizerOptions
    from audiototext.streaming.recognizer import StreamingRecognizer
    from audiototext.streaming.stream import RecognitionStream
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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
