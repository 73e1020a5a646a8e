"""What shapes a file transcription: :class:`TranscribeOptions` (Whisper's defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from audiototext.audio.vad import VadOptions
from audiototext.inference.alignment import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS
from audiototext.inference.decoding import (
    COMPRESSION_RATIO_THRESHOLD,
    LOG_PROB_THRESHOLD,
    NO_SPEECH_THRESHOLD,
    TEMPERATURES,
    DecodingOptions,
)
from audiototext.inference.tokenizer import TASKS

__all__ = ["MAX_BATCH_SIZE", "TranscribeOptions", "language_of"]

# More chunks per batch than this gain nothing on a CPU (the decoder's steps are already wide)
# and hold a window's encoder output per row: about 18 MB each for tiny, 490 MB for large-v3.
MAX_BATCH_SIZE = 64


def language_of(value: str) -> str | None:
    """A request's language: None for empty or "auto" (detected), else the code as given."""
    code = value.strip()
    return None if not code or code.lower() == "auto" else code


@dataclass(frozen=True)
class TranscribeOptions:
    """Everything that shapes a transcription. Defaults are Whisper's.

    Attributes:
        language: spoken language code; ``None`` detects it (multilingual models) or means
            English (English-only models).
        task: ``transcribe``, or ``translate`` (to English, multilingual models only).
        beam_size: 1 is greedy search.
        best_of: samples drawn per window when falling back to a temperature above 0.
        temperatures: tried in order until the output is neither repetitive nor improbable.
        compression_ratio_threshold: gzip ratio above which text counts as repetitive.
        log_prob_threshold: average log-probability below which text counts as improbable.
        no_speech_threshold: a window whose no-speech probability is above this and whose text
            is improbable is dropped as silence.
        condition_on_previous_text: prompt each window with the text before it.
        prompt_reset_on_temperature: drop that prompt after a window needed this temperature.
        initial_prompt: text to prompt the first window with (names, spelling, style).
        without_timestamps: decode text only; each window becomes one segment.
        word_timestamps: align each word to the audio (cross-attention DTW).
        vad: skip what Silero VAD finds to be silence before decoding.
        vad_options: how VAD finds speech; ``None`` uses
            :data:`~audiototext.audio.speech_only.TRANSCRIBE_VAD`.
        batch_size: 1 runs Whisper's seek loop (each window prompted with the text before it).
            Above 1 the input is cut at pauses into chunks of speech of up to 28 s (Silero VAD,
            :data:`~audiototext.audio.speech_chunks.BATCH_VAD` unless ``vad_options`` is given;
            ``vad`` is implied), and ``batch_size`` chunks at a time are decoded together, each
            on its own: faster on long files, but no chunk sees the text before it.
        suppress_hallucinations: drop well-known phrases (e.g. "Thank you.") that stand alone in
            a window the model thinks silent (no-speech probability above
            :data:`~audiototext.inference.hallucinations.HALLUCINATION_NO_SPEECH`), and text
            with no word in it.
    """

    language: str | None = None
    task: str = "transcribe"
    beam_size: int = 5
    best_of: int = 5
    patience: float = 1.0
    length_penalty: float = 1.0
    temperatures: tuple[float, ...] = TEMPERATURES
    compression_ratio_threshold: float | None = COMPRESSION_RATIO_THRESHOLD
    log_prob_threshold: float | None = LOG_PROB_THRESHOLD
    no_speech_threshold: float | None = NO_SPEECH_THRESHOLD
    condition_on_previous_text: bool = True
    prompt_reset_on_temperature: float = 0.5
    initial_prompt: str | None = None
    suppress_blank: bool = True
    suppress_tokens: tuple[int, ...] | None = None  # None: Whisper's non-speech symbols
    without_timestamps: bool = False
    max_initial_timestamp_s: float = 1.0
    max_new_tokens: int | None = None
    word_timestamps: bool = False
    prepend_punctuations: str = PREPEND_PUNCTUATIONS
    append_punctuations: str = APPEND_PUNCTUATIONS
    vad: bool = False
    vad_options: VadOptions | None = None
    suppress_hallucinations: bool = True
    seed: int = 0
    batch_size: int = 1

    def __post_init__(self) -> None:
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
            raise ValueError(
                f"batch_size must be a whole number from 1 (one window after the other) to "
                f"{MAX_BATCH_SIZE}, got {size!r}"
            )
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if not 0.0 <= self.prompt_reset_on_temperature <= 10.0:
            raise ValueError("prompt_reset_on_temperature must be in [0, 10]")
        self.decoding(())  # validates the decoding fields

    def decoding(self, suppress_tokens: tuple[int, ...]) -> DecodingOptions:
        return DecodingOptions(
            beam_size=self.beam_size,
            best_of=self.best_of,
            patience=self.patience,
            length_penalty=self.length_penalty,
            temperatures=tuple(self.temperatures),
            compression_ratio_threshold=self.compression_ratio_threshold,
            log_prob_threshold=self.log_prob_threshold,
            no_speech_threshold=self.no_speech_threshold,
            suppress_blank=self.suppress_blank,
            suppress_tokens=suppress_tokens,
            without_timestamps=self.without_timestamps,
            max_initial_timestamp_s=self.max_initial_timestamp_s,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
        )
