"""Inference: ONNX Runtime sessions, the Whisper runner, token search and file transcription.

* :mod:`~audiototext.inference.session` — execution providers, threads, CPU fallback.
* :mod:`~audiototext.inference.tokenizer` — Whisper's tokenizer over the cached tokenizer.json.
* :mod:`~audiototext.inference.whisper` — encoder and KV-cached decoder over the ONNX graphs.
* :mod:`~audiototext.inference.decoding` — greedy, sampling and beam search; Whisper's rules.
* :mod:`~audiototext.inference.alignment` — word timestamps (cross-attention DTW).
* :mod:`~audiototext.inference.transcribe` — the window loop, streaming, VAD, batching.
"""

from __future__ import annotations

from audiototext.inference.alignment import Word
from audiototext.inference.session import SessionConfig
from audiototext.inference.transcribe import (
    Segment,
    TranscribeOptions,
    Transcriber,
    Transcription,
)
from audiototext.inference.whisper import WhisperModel

__all__ = [
    "Segment",
    "SessionConfig",
    "TranscribeOptions",
    "Transcriber",
    "Transcription",
    "WhisperModel",
    "Word",
]
