"""The language of a stream that did not name one, on a multilingual model.

Detected once, from the first audio the stream decodes (Whisper's language-token
probabilities after ``<|startoftranscript|>``, as file transcription does), on the lane that
decodes it, right after the encoder; later partials and finals of the stream use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from audiototext.inference.seek import detect_language
from audiototext.inference.whisper import CrossAttention, WhisperModel

__all__ = ["stream_prompt"]


def stream_prompt(
    model: WhisperModel, stream: Any, prompt: Sequence[int], cross: CrossAttention, row: int
) -> list[int]:
    """``prompt``, or for a stream with no language of its own on a multilingual model, the
    prompt of its detected language (detected now from row ``row`` of ``cross`` if it was
    not yet)."""
    tok = model.tokenizer
    options = getattr(stream, "options", None)
    if not tok.multilingual or options is None or options.language is not None:
        return list(prompt)
    language: str | None = getattr(stream, "detected_language", None)
    if language is None:
        language = detect_language(model, cross.take([row]))
        stream.detected_language = language
    return [*tok.sot_sequence(language, options.task), tok.no_timestamps]
