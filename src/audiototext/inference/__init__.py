"""Inference: ONNX Runtime sessions, the Whisper runner, token search and file transcription.

* :mod:`~audiototext.inference.ort_session` — execution providers, threads, CPU fallback.
* :mod:`~audiototext.inference.tokenizer` — Whisper's tokenizer over the cached tokenizer.json.
* :mod:`~audiototext.inference.whisper` — encoder and KV-cached decoder over the ONNX graphs.
* :mod:`~audiototext.inference.decoding` — greedy, sampling and beam search; Whisper's rules.
* :mod:`~audiototext.inference.alignment` — word timestamps (cross-attention DTW).
* :mod:`~audiototext.inference.options` — :class:`TranscribeOptions`.
* :mod:`~audiototext.inference.seek` — Whisper's seek loop over 30-s windows.
* :mod:`~audiototext.inference.segments` — a decoded window cut into timed pieces.
* :mod:`~audiototext.inference.parallel` — inputs side by side, or one input cut at pauses.
* :mod:`~audiototext.inference.batched` — one input's speech chunks decoded N at a time.
* :mod:`~audiototext.inference.results` — :class:`Segment`, :class:`FileResult`.
* :mod:`~audiototext.inference.transcribe` — :class:`Transcriber`, the file transcription API.
"""

from __future__ import annotations

from audiototext.inference.alignment import Word
from audiototext.inference.ort_session import OrtConfig
from audiototext.inference.transcribe import (
    Segment,
    TranscribeOptions,
    Transcriber,
    Transcription,
)
from audiototext.inference.whisper import WhisperModel

__all__ = [
    "OrtConfig",
    "Segment",
    "TranscribeOptions",
    "Transcriber",
    "Transcription",
    "WhisperModel",
    "Word",
]
