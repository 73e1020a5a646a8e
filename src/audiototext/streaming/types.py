"""Value objects of the streaming engine, shared by the engine and its adapters (gRPC, WebRTC).

The contract between ``audiototext.streaming`` and the server:

* ``StreamingRecognizer`` (one per server, owns the shared model and the scheduler):
  ``open(options: StreamOptions) -> RecognitionStream`` raises :class:`OverloadedError` when
  ``max_sessions`` are open; ``close()`` finalises everything; ``stats() -> EngineStats``.
* ``RecognitionStream`` (one per client stream): ``accept(audio, sample_rate_hz, channels=1)``
  takes float32 samples (any rate 8–48 kHz, interleaved channels) without blocking and raises
  :class:`BufferFullError` when more than ``max_buffered_s`` of audio waits unprocessed;
  ``async for event in session.events()`` yields ``StreamResult`` and ``SpeechEvent`` objects
  in stream order; ``flush()`` forces a final for the audio so far; ``await finish()``
  finalises the rest and ends ``events()``; ``audio_received_s`` / ``audio_processed_s``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from audiototext.errors import AudioToTextError

__all__ = [
    "MAX_PARTIAL_INTERVAL_MS",
    "MAX_PREFIX_PADDING_MS",
    "MAX_PROMPT_CHARS",
    "MIN_PARTIAL_INTERVAL_MS",
    "SPEECH_PAD_MS",
    "BufferFullError",
    "EngineStats",
    "OverloadedError",
    "SpeechEvent",
    "SpeechEventKind",
    "StreamOptions",
    "StreamResult",
    "StreamWord",
]

# The partial interval a stream (or serve --partial-interval-ms) may choose.
MIN_PARTIAL_INTERVAL_MS = 100
MAX_PARTIAL_INTERVAL_MS = 10_000
SPEECH_PAD_MS = 30  # the streaming VAD's margin around each utterance (both ends by default)
MAX_PREFIX_PADDING_MS = 2_000  # audio a stream may keep before speech starts
# A prompt's text, checked before tokenising; its tokens are limited by the model (open()).
MAX_PROMPT_CHARS = 2_000
DEFAULT_VAD_THRESHOLD = 0.5  # Silero's own


class OverloadedError(AudioToTextError):
    """No capacity for another stream, or compute cannot keep up with real time."""


class BufferFullError(AudioToTextError):
    """A stream sent more audio than may wait unprocessed (``max_buffered_s``)."""


@dataclass(frozen=True)
class StreamOptions:
    model: str = "tiny.en"
    language: str | None = None  # None: detected from the first speech (multilingual models)
    task: str = "transcribe"  # or "translate" (to English; multilingual models only)
    interim_results: bool = True
    partial_interval_ms: int = 500  # at most this much new speech between partials
    endpoint_silence_ms: int = 200  # VAD silence that ends an utterance (see bench/NOTES.md)
    max_segment_s: float = 20.0  # an utterance longer than this is finalised anyway
    max_buffered_s: float = 30.0
    # Text (names, spelling, style) decoded as earlier speech (<|startofprev|>) before every
    # utterance, as file transcription's initial prompt; tokenised once when the stream opens.
    prompt: str = ""
    vad_threshold: float = DEFAULT_VAD_THRESHOLD  # speech probability that starts speech
    prefix_padding_ms: int = SPEECH_PAD_MS  # audio before detected speech start kept in it

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be transcribe or translate, not {self.task!r}")
        if not MIN_PARTIAL_INTERVAL_MS <= self.partial_interval_ms <= MAX_PARTIAL_INTERVAL_MS:
            raise ValueError(
                f"partial_interval_ms must be between {MIN_PARTIAL_INTERVAL_MS} and "
                f"{MAX_PARTIAL_INTERVAL_MS}"
            )
        if not 100 <= self.endpoint_silence_ms <= 10_000:
            raise ValueError("endpoint_silence_ms must be between 100 and 10000")
        if not 1.0 <= self.max_segment_s <= 30.0:
            raise ValueError("max_segment_s must be between 1 and 30")
        if not 1.0 <= self.max_buffered_s <= 600.0:
            raise ValueError("max_buffered_s must be between 1 and 600")
        if not isinstance(self.prompt, str) or len(self.prompt) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt must be text of at most {MAX_PROMPT_CHARS} characters")
        if not 0.0 < self.vad_threshold < 1.0:
            raise ValueError("vad_threshold must be between 0 and 1 (exclusive)")
        if not 0 <= self.prefix_padding_ms <= MAX_PREFIX_PADDING_MS:
            raise ValueError(f"prefix_padding_ms must be between 0 and {MAX_PREFIX_PADDING_MS}")


@dataclass(frozen=True)
class StreamWord:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class StreamResult:
    """A partial (``is_final`` False) or final transcript of one utterance.

    ``stable_text`` is a prefix of ``text`` that later partials keep unchanged, and the final
    too when ``final_keeps_committed`` is on (off, the default, the final is its own decoding
    and may differ); ``stability`` (0..1) is the share of ``text`` that is stable. Times are
    stream seconds.
    """

    utterance_id: int
    is_final: bool
    text: str
    stable_text: str
    stability: float
    start_s: float
    end_s: float
    audio_processed_s: float
    words: tuple[StreamWord, ...] = field(default_factory=tuple)


class SpeechEventKind(enum.Enum):
    BEGIN = "begin"
    END = "end"


@dataclass(frozen=True)
class SpeechEvent:
    kind: SpeechEventKind
    time_s: float


@dataclass(frozen=True)
class EngineStats:
    active_sessions: int
    queue_depth: int
    rtf: float  # compute seconds per audio second, recent window
    final_latency_ms_p50: float
    final_latency_ms_p95: float
    overloaded: bool
    # Added after the first version, with defaults so that existing constructors still work:
    partial_interval_scale: float = 1.0  # >1 when partials are spaced out to keep up
    partials_skipped: int = 0  # partial refreshes dropped because newer audio had arrived
    speculative_finals_used: int = 0  # finals decoded in the pause before their endpoint
    speculative_finals_wasted: int = 0  # such decodings the speaker made void by going on
    speculative_finals_cancelled: int = 0  # of those, stopped on their lane before the end
    partial_batches_cancelled: int = 0  # stopped on their lane because finals waited for one
    finals_reduced: int = 0  # finals decoded with the cheaper settings (finals were queuing)
    finals_full: int = 0  # finals decoded with the full settings
    # Thread CPU seconds since start, per phase: vad, finals, speculative, partials, for the
    # scheduler and the partial lane together (all of the engine's work when ONNX Runtime
    # runs one intra-op thread).
    worker_cpu_s: dict[str, float] = field(default_factory=dict)
