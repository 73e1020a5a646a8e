"""Stock phrases tiny Whisper models emit on silence and noise, filtered by file and streaming
transcription alike when the model itself doubts there was speech."""

from __future__ import annotations

__all__ = ["HALLUCINATIONS", "HALLUCINATION_NO_SPEECH", "STREAMING_HALLUCINATIONS"]

# A stock phrase alone in a window is dropped above this no-speech probability (Whisper's own
# no-speech threshold): tiny.en's silence caption scores above it, the same phrases spoken score
# well below it (bench/NOTES.md, "Stock phrases").
HALLUCINATION_NO_SPEECH = 0.6
# Phrases tiny models emit on silence and noise (subtitle credits of their training data).
HALLUCINATIONS = frozenset(
    {
        "thank you.",
        "thank you",
        "thanks for watching!",
        "thanks for watching.",
        "thank you for watching.",
        "thank you for watching!",
        "you",
        "you.",
        "bye.",
        "bye!",
        "please subscribe.",
        "subscribe.",
        "so",
        "so.",
        "okay.",
        "oh.",
        "uh.",
        "um.",
    }
)

# Short fillers tiny models produce for breaths, clicks and tones that slip past the VAD: only
# streaming, which decodes every short utterance alone, meets them often enough to filter.
STREAMING_HALLUCINATIONS = HALLUCINATIONS | frozenset(
    {"thank you very much.", "i'm sorry.", "hmm.", "ah.", "mm."}
)
