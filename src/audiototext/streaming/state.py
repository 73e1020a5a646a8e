"""Per-stream state as plain data: the open utterance, ended ones waiting for finals,
speculations, and what the scheduler keeps per stream.

Owners (one writer per field):

* :class:`OpenUtterance` is created and closed by the stream's VAD (``RecognitionStream.ingest``);
  its partial progress (``agreement``, ``committed_text``, ``shown_text``, ``last_partial_at``)
  is written by the recognizer's worker when it applies a partial.
* :class:`PendingFinal` is made by the VAD when an utterance ends and removed by the worker
  when its final goes out.
* :class:`StreamSchedule` belongs to the recognizer (worker thread); the stream only reads
  ``partial_in_flight`` and ``speculation_in_flight`` to tell whether it is idle.
* :class:`FinalHistory` belongs to the final decoder: ``earlier`` is written by the worker when a
  final goes out, ``decoded`` by whichever thread decodes the stream's finals.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from audiototext.streaming._agreement import AgreementState
from audiototext.streaming.types import StreamWord

__all__ = [
    "DecodedFinal",
    "EarlierFinal",
    "FinalHistory",
    "OpenUtterance",
    "PendingFinal",
    "Speculation",
    "StreamSchedule",
]

# Earlier finals remembered per stream: more never fit in a final's context window.
_HISTORY = 16


@dataclass
class OpenUtterance:
    """The utterance being spoken."""

    utterance_id: int
    start: int  # absolute samples
    agreement: AgreementState = field(default_factory=AgreementState)
    last_partial_at: int = 0  # absolute sample the last partial covered
    committed_text: str = ""
    shown_text: bool = False  # a partial with text went out
    # Words of the last first try held back as unsure (first_partial_agreement).
    unsure_words: tuple[str, ...] = ()


@dataclass
class PendingFinal:
    """An ended utterance waiting for its final result."""

    utterance_id: int
    start: int  # absolute samples, as the VAD reported them
    stop: int
    triggered_at: float  # monotonic time of the audio (or call) that ended it
    committed_tokens: tuple[int, ...]
    committed_text: str
    shown_text: bool  # a partial with text went out: a final must follow, even if empty
    last_partial_at: int  # absolute sample the utterance's last partial covered
    # monotonic time the audio holding ``stop`` (the end of speech) was accepted; None: unknown
    speech_end_at: float | None = None


@dataclass
class Speculation:
    """A final decoded ahead of its endpoint, on the audio of a pause that may end it.

    Valid for the utterance that ends exactly at ``stop`` (the VAD then reports the same end);
    if the speaker goes on, the utterance ends elsewhere and this is never used.
    """

    utterance_id: int
    start: int
    stop: int
    text: str
    audio_start: int
    began_at: int = 0  # the VAD position when its decoding began (samples)
    cpu_s: float = 0.0  # thread CPU of its decoding
    decode_s: float = 0.0  # wall time of its batch's decoding
    batch: int = 1  # speculations decoded in that batch
    reduced: bool = False  # decoded with the cheaper settings of finals under load


@dataclass(frozen=True)
class EarlierFinal:
    """A final: where its audio began and its tokens (context for the next; none for a final
    without text, which ends the context of the next)."""

    audio_start: int
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class DecodedFinal:
    """The final last decoded for a stream, with its word timings."""

    utterance_id: int
    start: int
    stop: int
    text: str
    words: tuple[StreamWord, ...]


@dataclass
class FinalHistory:
    """A stream's earlier finals (context) and its last decoded final (word timings)."""

    earlier: deque[EarlierFinal] = field(default_factory=lambda: deque(maxlen=_HISTORY))
    decoded: DecodedFinal | None = None


@dataclass
class StreamSchedule:
    """What the recognizer's scheduler keeps per stream (worker thread)."""

    partial_in_flight: bool = False  # a partial of this stream is being computed
    final_in_flight: bool = False  # its first pending final is being decoded on a lane
    # (utterance id, stop) of a speculative final being decoded on a lane
    speculation_in_flight: tuple[int, int] | None = None
    # A final decoded during the pause that may end the open utterance.
    speculation: Speculation | None = None
